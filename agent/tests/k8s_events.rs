//! `loki.source.kubernetes_events` end to end: the agent binary lists and watches Events on a
//! stand-in API server (through a kubeconfig), ships Alloy's lines with Alloy's labels and
//! timestamps to fake-loki, sends an updated event again, and after a restart sends the
//! events that arrived meanwhile and none of those already delivered.
#![cfg(feature = "kube")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{AgentProcess, WAIT};
use fake_loki::{Config, FakeLoki};
use k8s_api::{event, FakeApi};

mod common;
mod k8s_api;

const CONFIG: &str = r#"loki.source.kubernetes_events "cluster_events" {
  job_name   = "integrations/kubernetes/eventhandler"
  log_format = "logfmt"
  client {
    kubeconfig_file = sys.env("TEST_KUBECONFIG")
  }
  forward_to = [loki.write.default.receiver]
}

loki.write "default" {
  endpoint {
    url       = sys.env("LOKI_URL")
    tenant_id = sys.env("TENANT")
  }
}
"#;

const INSTANCE: &str = "loki.source.kubernetes_events.cluster_events";
const JOB: &str = "integrations/kubernetes/eventhandler";

fn spawn(dir: &Path, kubeconfig: &str, loki: &FakeLoki, run: u32) -> AgentProcess {
    spawn_config(dir, CONFIG, kubeconfig, loki, run)
}

fn spawn_config(
    dir: &Path,
    text: &str,
    kubeconfig: &str,
    loki: &FakeLoki,
    run: u32,
) -> AgentProcess {
    let config = dir.join("events.alloy");
    std::fs::write(&config, text).expect("write config");
    let pods = dir.join("pods");
    std::fs::create_dir_all(&pods).expect("pods");
    let kc = kubeconfig.to_string();
    let url = loki.url();
    AgentProcess::spawn(dir.join(format!("agent-{run}.log")), move |cmd| {
        cmd.arg("run")
            .arg(&config)
            .arg("--pods-root")
            .arg(&pods)
            .arg(format!("--storage.path={}", dir.join("storage").display()))
            .arg("--server.http.listen-addr=127.0.0.1:0")
            .env("TEST_KUBECONFIG", kc)
            .env("LOKI_URL", url)
            // Each run writes to a tenant of its own: what a restart sends is seen apart
            // (fake-loki, like Loki, stores an identical entry only once).
            .env("TENANT", format!("run-{run}"));
    })
}

/// (labels, line) → count, of everything fake-loki stored.
fn got(loki: &FakeLoki, tenant: &str) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for e in loki.entries(tenant) {
        *out.entry((e.labels.to_string(), e.line)).or_default() += 1;
    }
    out
}

async fn wait_for(
    loki: &FakeLoki,
    tenant: &str,
    agent: &AgentProcess,
    want: &BTreeMap<(String, String), usize>,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let g = got(loki, tenant);
        if &g == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "got {g:#?}\nwant {want:#?}\nagent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn labels(ns: Option<&str>) -> String {
    match ns {
        Some(ns) => format!(r#"{{instance="{INSTANCE}", job="{JOB}", namespace="{ns}"}}"#),
        None => format!(r#"{{instance="{INSTANCE}", job="{JOB}"}}"#),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_ship_as_alloy_lines_and_a_restart_resends_nothing_and_skips_nothing() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = api.kubeconfig(dir.path());

    api.put(
        "events",
        event(
            "shop",
            "web.1",
            "u1",
            "Pod",
            "web",
            "Pulled",
            "Pulled image \"web:1\"",
            1,
            "2026-01-02T03:04:05Z",
        ),
    );
    api.put(
        "events",
        event(
            "",
            "node-1.1",
            "u2",
            "Node",
            "node-1",
            "NodeReady",
            "Node node-1 status is now: NodeReady",
            0,
            "2026-01-02T03:04:06Z",
        ),
    );
    let mut want: BTreeMap<(String, String), usize> = BTreeMap::new();
    let line = |name: &str, kind: &str, rv: u64, reason: &str, count: i32, msg: &str| {
        let count = if count == 0 {
            String::new()
        } else {
            format!("count={count} ")
        };
        format!("name={name} kind={kind} objectAPIversion=v1 eventRV={rv} sourcecomponent=kubelet sourcehost=node-1 reason={reason} type=Normal {count}msg={msg:?} ")
    };
    want.insert(
        (
            labels(Some("shop")),
            line("web", "Pod", 1, "Pulled", 1, "Pulled image \"web:1\""),
        ),
        1,
    );
    want.insert(
        (
            labels(None),
            line(
                "node-1",
                "Node",
                2,
                "NodeReady",
                0,
                "Node node-1 status is now: NodeReady",
            ),
        ),
        1,
    );

    let agent = spawn(dir.path(), &kc, &loki, 1);
    wait_for(&loki, "run-1", &agent, &want).await;
    // Alloy's timestamp: lastTimestamp.
    let ts: Vec<i64> = loki.entries("run-1").iter().map(|e| e.ts).collect();
    assert!(ts.contains(&1_767_323_045_000_000_000), "{ts:?}");

    // A new event and an update of the first (a new resource version) arrive by watch.
    api.put(
        "events",
        event(
            "shop",
            "web.2",
            "u3",
            "Pod",
            "web",
            "Started",
            "Started container web",
            1,
            "2026-01-02T03:05:00Z",
        ),
    );
    api.put(
        "events",
        event(
            "shop",
            "web.1",
            "u1",
            "Pod",
            "web",
            "Pulled",
            "Pulled image \"web:1\"",
            2,
            "2026-01-02T03:06:00Z",
        ),
    );
    want.insert(
        (
            labels(Some("shop")),
            line("web", "Pod", 3, "Started", 1, "Started container web"),
        ),
        1,
    );
    want.insert(
        (
            labels(Some("shop")),
            line("web", "Pod", 4, "Pulled", 2, "Pulled image \"web:1\""),
        ),
        1,
    );
    wait_for(&loki, "run-1", &agent, &want).await;
    assert_eq!(agent.terminate().await, Some(0));
    assert!(
        dir.path()
            .join("storage")
            .join(format!("kubernetes_events.{INSTANCE}.json"))
            .exists(),
        "no delivered-events record"
    );

    // While the agent is down one more event happens; the restarted agent sends it alone.
    api.put(
        "events",
        event(
            "ops",
            "db.1",
            "u4",
            "Pod",
            "db",
            "Killing",
            "Stopping container db",
            1,
            "2026-01-02T03:07:00Z",
        ),
    );
    let agent = spawn(dir.path(), &kc, &loki, 2);
    want.clear();
    want.insert(
        (
            labels(Some("ops")),
            line("db", "Pod", 5, "Killing", 1, "Stopping container db"),
        ),
        1,
    );
    wait_for(&loki, "run-2", &agent, &want).await;
    // One more by watch: whatever the restart could have sent again came before it.
    api.put(
        "events",
        event(
            "ops",
            "db.2",
            "u5",
            "Pod",
            "db",
            "Created",
            "Created container db",
            1,
            "2026-01-02T03:08:00Z",
        ),
    );
    want.insert(
        (
            labels(Some("ops")),
            line("db", "Pod", 6, "Created", 1, "Created container db"),
        ),
        1,
    );
    wait_for(&loki, "run-2", &agent, &want).await;
    assert_eq!(agent.terminate().await, Some(0));
    assert!(
        api.seen()
            .iter()
            .any(|p| p.starts_with("/api/v1/events?") && p.contains("watch=true")),
        "{:?}",
        api.seen()
    );
}

const NAMESPACED: &str = r#"loki.source.kubernetes_events "ns_events" {
  namespaces = ["shop", "ops"]
  log_format = "json"
  client {
    kubeconfig_file = sys.env("TEST_KUBECONFIG")
  }
  forward_to = [loki.write.default.receiver]
}

loki.write "default" {
  endpoint {
    url       = sys.env("LOKI_URL")
    tenant_id = sys.env("TENANT")
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_namespaces_are_watched_one_by_one_and_json_lines_are_go_marshal() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = api.kubeconfig(dir.path());
    api.put(
        "events",
        event(
            "shop",
            "web.1",
            "u1",
            "Pod",
            "web",
            "Pulled",
            "Pulled <web:1> & ran",
            1,
            "2026-01-02T03:04:05Z",
        ),
    );
    api.put(
        "events",
        event(
            "ops",
            "db.1",
            "u2",
            "Pod",
            "db",
            "Killing",
            "Stopping db",
            2,
            "2026-01-02T03:04:06Z",
        ),
    );
    // Not a listed namespace: never shipped.
    api.put(
        "events",
        event(
            "kube-system",
            "dns.1",
            "u3",
            "Pod",
            "dns",
            "Started",
            "Started dns",
            1,
            "2026-01-02T03:04:07Z",
        ),
    );
    let agent = spawn_config(dir.path(), NAMESPACED, &kc, &loki, 1);
    let labels = |ns: &str| {
        format!(
            r#"{{instance="loki.source.kubernetes_events.ns_events", job="loki.source.kubernetes_events", namespace="{ns}"}}"#
        )
    };
    let mut want: BTreeMap<(String, String), usize> = BTreeMap::new();
    want.insert(
        (
            labels("shop"),
            r#"{"count":1,"eventRV":"1","kind":"Pod","msg":"Pulled \u003cweb:1\u003e \u0026 ran","name":"web","objectAPIversion":"v1","reason":"Pulled","sourcecomponent":"kubelet","sourcehost":"node-1","type":"Normal"}"#.to_string(),
        ),
        1,
    );
    want.insert(
        (
            labels("ops"),
            r#"{"count":2,"eventRV":"2","kind":"Pod","msg":"Stopping db","name":"db","objectAPIversion":"v1","reason":"Killing","sourcecomponent":"kubelet","sourcehost":"node-1","type":"Normal"}"#.to_string(),
        ),
        1,
    );
    wait_for(&loki, "run-1", &agent, &want).await;
    // A later event of an unlisted namespace stays out too; one of a listed one arrives.
    api.put(
        "events",
        event(
            "kube-system",
            "dns.2",
            "u4",
            "Pod",
            "dns",
            "Killing",
            "Stopping dns",
            1,
            "2026-01-02T03:05:00Z",
        ),
    );
    api.put(
        "events",
        event(
            "ops",
            "db.2",
            "u5",
            "Pod",
            "db",
            "Started",
            "Started db",
            1,
            "2026-01-02T03:05:01Z",
        ),
    );
    want.insert(
        (
            labels("ops"),
            r#"{"count":1,"eventRV":"5","kind":"Pod","msg":"Started db","name":"db","objectAPIversion":"v1","reason":"Started","sourcecomponent":"kubelet","sourcehost":"node-1","type":"Normal"}"#.to_string(),
        ),
        1,
    );
    wait_for(&loki, "run-1", &agent, &want).await;
    assert_eq!(agent.terminate().await, Some(0));
    let seen = api.seen();
    for ns in ["shop", "ops"] {
        let path = format!("/api/v1/namespaces/{ns}/events?");
        assert!(
            seen.iter().any(|p| p.starts_with(&path)),
            "{path} not in {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|p| p.starts_with("/api/v1/events")),
        "a cluster-wide request: {seen:?}"
    );
}
