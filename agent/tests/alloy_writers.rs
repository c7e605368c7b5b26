//! Several `loki.write` components in one Alloy config, run in-process on a simulated node
//! against two fake-lokis: each entry reaches exactly the writers its `forward_to` paths
//! lead to, each writer with its own tenant and external labels, and a file position waits
//! until every copy of its lines was acknowledged, also while one Loki fails for a while.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use agent::alloy::{check_source, Plan, Scope, Step};
use common::{until, Running};
use fake_loki::{Config, FakeLoki, FaultRule};

mod common;

/// The brief's two-writer shape on kubelet paths: every line to `main` (tenant ops,
/// cluster="a"), the audit namespace's lines also to `audit` (tenant sec, no cluster).
const CONFIG: &str = r#"discovery.kubernetes "pods" {
  role = "pod"
}

discovery.relabel "pods" {
  targets = discovery.kubernetes.pods.targets
  rule {
    source_labels = ["__meta_kubernetes_namespace"]
    target_label  = "namespace"
  }
  rule {
    source_labels = ["__meta_kubernetes_pod_name"]
    target_label  = "pod"
  }
  rule {
    source_labels = ["__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_container_name"]
    separator     = "/"
    target_label  = "__path__"
    replacement   = "/var/log/pods/*$1/*.log"
  }
}

loki.source.file "pods" {
  targets    = discovery.relabel.pods.output
  forward_to = [loki.process.pods.receiver]
}

loki.process "pods" {
  forward_to = [loki.write.main.receiver, loki.process.audit.receiver]
  stage.cri {}
}

loki.process "audit" {
  forward_to = [loki.write.audit.receiver]
  stage.match {
    selector = "{namespace!=\"audit\"}"
    action   = "drop"
  }
}

loki.write "main" {
  endpoint {
    url                 = sys.env("LOKI_URL")
    tenant_id           = "ops"
    batch_wait          = "50ms"
    min_backoff_period  = "20ms"
    max_backoff_period  = "100ms"
    max_backoff_retries = 0
  }
  external_labels = { cluster = "a" }
}

loki.write "audit" {
  endpoint {
    url                 = sys.env("AUDIT_LOKI_URL")
    tenant_id           = "sec"
    batch_wait          = "50ms"
    min_backoff_period  = "20ms"
    max_backoff_period  = "100ms"
    max_backoff_retries = 0
  }
}
"#;

fn load(src: &str, main: &str, audit: &str) -> Plan {
    let (main, audit) = (main.to_string(), audit.to_string());
    check_source(
        "writers.alloy",
        src,
        Scope::with_env(move |k| match k {
            "LOKI_URL" => Some(main.clone()),
            "AUDIT_LOKI_URL" => Some(audit.clone()),
            _ => None,
        }),
    )
    .unwrap_or_else(|d| panic!("{}", d.render(src)))
}

/// A simulated node: kubelet pod directories plus the positions file.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            // Not tempfile's default ".tmp…": the glob expansion skips hidden directories.
            dir: tempfile::Builder::new().prefix("node").tempdir().unwrap(),
        }
    }

    fn pods(&self) -> PathBuf {
        self.dir.path().join("pods")
    }

    fn log(&self, ns: &str) -> PathBuf {
        self.pods()
            .join(format!("{ns}_app-{ns}_uid-{ns}"))
            .join("app")
            .join("0.log")
    }

    /// Appends CRI records `"<ns> line <i>"` for `i` in `from..from + n`.
    fn append(&self, ns: &str, from: usize, n: usize) {
        let path = self.log(ns);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut s = String::new();
        for i in from..from + n {
            s.push_str(&format!(
                "2024-05-01T10:00:00.{i:09}Z stdout F {ns} line {i}\n"
            ));
        }
        f.write_all(s.as_bytes()).unwrap();
    }

    fn size(&self, ns: &str) -> u64 {
        std::fs::metadata(self.log(ns)).map_or(0, |m| m.len())
    }

    /// The acknowledged offset of a namespace's log file (0 when absent).
    fn acked(&self, ns: &str) -> u64 {
        let Ok(text) = std::fs::read_to_string(self.dir.path().join("positions.yaml")) else {
            return 0;
        };
        let v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let key = self.log(ns).display().to_string();
        v.get("positions")
            .and_then(|p| p.get(key.as_str()))
            .and_then(|o| o.as_str())
            .and_then(|o| o.parse().ok())
            .unwrap_or(0)
    }
}

/// The plan run in-process on `node`.
fn run(plan: Plan, node: &Node) -> Running {
    let pods = node.pods();
    Running::start(plan, node.dir.path().join("positions.yaml"), |s| {
        s.pods_root = pods
    })
}

/// line → count of what `loki` stored for `tenant`.
fn received(loki: &FakeLoki, tenant: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in loki.entries(tenant) {
        *m.entry(e.line).or_default() += 1;
    }
    m
}

/// The `cluster` label of every stored entry of `tenant`.
fn clusters(loki: &FakeLoki, tenant: &str) -> Vec<Option<String>> {
    let mut v: Vec<Option<String>> = loki
        .entries(tenant)
        .iter()
        .map(|e| e.labels.get("cluster").map(str::to_string))
        .collect();
    v.dedup();
    v
}

fn lines(ns: &str, from: usize, n: usize) -> BTreeMap<String, usize> {
    (from..from + n)
        .map(|i| (format!("{ns} line {i}"), 1))
        .collect()
}

fn union(a: BTreeMap<String, usize>, b: BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    a.into_iter().chain(b).collect()
}

fn push_url(loki: &FakeLoki) -> String {
    format!("{}/loki/api/v1/push", loki.url())
}

/// Sum of fake-loki's `loki_fake_faults_applied*` counters.
fn faults_applied(loki: &FakeLoki) -> u64 {
    loki.state()
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("loki_fake_faults_applied"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn each_source_route_names_the_writer_its_forward_to_path_ends_at() {
    let plan = load(CONFIG, "http://127.0.0.1:1", "http://127.0.0.1:2");
    let ids: Vec<&str> = plan.writers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["loki.write.audit", "loki.write.main"]);
    let ext: Vec<Vec<(&str, &str)>> = plan
        .writers
        .iter()
        .map(|w| {
            w.external_labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    assert_eq!(ext, [vec![], vec![("cluster", "a")]]);
    let tenants: Vec<&str> = plan
        .writers
        .iter()
        .map(|w| w.endpoints[0].tenant.as_str())
        .collect();
    assert_eq!(tenants, ["sec", "ops"]);
    // forward_to order: main first, then through loki.process.audit to audit.
    let routes: Vec<(Vec<&str>, usize)> = plan.sources[0]
        .routes
        .iter()
        .map(|r| {
            let ids = r
                .steps
                .iter()
                .map(|s| match s {
                    Step::Process { id, .. } | Step::Relabel { id, .. } => id.as_str(),
                })
                .collect();
            (ids, r.writer)
        })
        .collect();
    assert_eq!(
        routes,
        [
            (vec!["loki.process.pods"], 1),
            (vec!["loki.process.pods", "loki.process.audit"], 0),
        ]
    );
    assert_eq!(plan.settings.format, agent::config::LineFormat::Cri);
    assert!(
        plan.notes.iter().any(|n| n.starts_with("2 loki.write")),
        "{:?}",
        plan.notes
    );
}

/// One row per graph shape: the config's components between source and writers, and the
/// writer (by id) of each resulting route in order.
#[test]
fn forward_to_fan_out_gives_one_route_per_path_to_a_writer() {
    let head = r#"loki.source.file "f" {
  targets    = [{"__path__" = "/x/*.log"}]
  forward_to = FWD
}
loki.write "a" {
  endpoint { url = "http://127.0.0.1:1" }
}
loki.write "b" {
  endpoint { url = "http://127.0.0.1:2" }
}
"#;
    let cases: &[(&str, &str, &[&str])] = &[
        ("[loki.write.a.receiver]", "", &["loki.write.a"]),
        (
            "[loki.write.b.receiver, loki.write.a.receiver]",
            "",
            &["loki.write.b", "loki.write.a"],
        ),
        // The same writer along two paths: each path is a copy, sent twice as in Alloy.
        (
            "[loki.write.a.receiver, loki.relabel.r.receiver]",
            "loki.relabel \"r\" {\n  forward_to = [loki.write.a.receiver]\n}\n",
            &["loki.write.a", "loki.write.a"],
        ),
        // A diamond: p fans out to q and r, both end at b.
        (
            "[loki.process.p.receiver]",
            "loki.process \"p\" {\n  forward_to = [loki.process.q.receiver, loki.relabel.r.receiver]\n}\nloki.process \"q\" {\n  forward_to = [loki.write.b.receiver]\n}\nloki.relabel \"r\" {\n  forward_to = [loki.write.b.receiver]\n}\n",
            &["loki.write.b", "loki.write.b"],
        ),
        // A path that ends nowhere sends nothing.
        (
            "[loki.process.p.receiver, loki.write.b.receiver]",
            "loki.process \"p\" {\n  forward_to = []\n}\n",
            &["loki.write.b"],
        ),
    ];
    for (fwd, extra, want) in cases {
        let src = format!("{}{extra}", head.replace("FWD", fwd));
        let plan = load(&src, "", "");
        let got: Vec<&str> = plan.sources[0]
            .routes
            .iter()
            .map(|r| plan.writers[r.writer].id.as_str())
            .collect();
        assert_eq!(got, *want, "{fwd} {extra}");
    }
}

#[test]
fn a_config_whose_sources_reach_no_writer_is_reported() {
    let src = r#"loki.source.file "f" {
  targets    = [{"__path__" = "/x/*.log"}]
  forward_to = [loki.process.p.receiver]
}
loki.process "p" {
  forward_to = []
}
loki.write "a" {
  endpoint { url = "http://127.0.0.1:1" }
}
"#;
    let d = check_source("n.alloy", src, agent::alloy::system_scope()).unwrap_err();
    assert_eq!(
        d.render(src).lines().next(),
        Some("Error: n.alloy:1:1: no loki.write receives entries: forward_to of a source must lead to a loki.write receiver")
    );
}

#[tokio::test]
async fn two_writers_each_get_their_lines_and_positions_wait_for_the_failing_one() {
    let main = FakeLoki::start(Config::for_tests()).await.unwrap();
    let audit = FakeLoki::start(Config::for_tests()).await.unwrap();
    let node = Node::new();
    let plan = load(CONFIG, &push_url(&main), &push_url(&audit));
    let agent = run(plan, &node);

    // Both Lokis up: the shop lines reach main only, the audit lines both.
    node.append("shop", 0, 200);
    node.append("audit", 0, 50);
    let all = || union(lines("shop", 0, 200), lines("audit", 0, 50));
    until("main has every line", || received(&main, "ops") == all()).await;
    until("audit has the audit lines", || {
        received(&audit, "sec") == lines("audit", 0, 50)
    })
    .await;
    until("positions at the end of both files", || {
        node.acked("shop") == node.size("shop") && node.acked("audit") == node.size("audit")
    })
    .await;

    // The audit Loki fails: main keeps receiving, the audit file's position stays put.
    audit.faults().add(FaultRule::status(503)).unwrap();
    let audit_acked = node.acked("audit");
    node.append("audit", 50, 30);
    until("main has the new audit lines", || {
        received(&main, "ops") == union(all(), lines("audit", 50, 30))
    })
    .await;
    let before = faults_applied(&audit);
    until("audit retried three more times", || {
        faults_applied(&audit) >= before + 3
    })
    .await;
    assert_eq!(
        node.acked("audit"),
        audit_acked,
        "the audit Loki has not acknowledged: the position must not move"
    );
    assert_eq!(received(&audit, "sec"), lines("audit", 0, 50));

    // Recovery: both end complete, exactly once each.
    audit.faults().clear();
    node.append("shop", 200, 100);
    node.append("audit", 80, 20);
    until("audit caught up", || {
        received(&audit, "sec") == lines("audit", 0, 100)
    })
    .await;
    let want_main = union(lines("shop", 0, 300), lines("audit", 0, 100));
    until("main has everything", || {
        received(&main, "ops") == want_main
    })
    .await;
    until("positions at the end of both files", || {
        node.acked("shop") == node.size("shop") && node.acked("audit") == node.size("audit")
    })
    .await;
    agent.stop().await;

    assert_eq!(received(&main, "ops"), want_main);
    assert_eq!(received(&audit, "sec"), lines("audit", 0, 100));
    assert_eq!(clusters(&main, "ops"), [Some("a".to_string())]);
    assert_eq!(clusters(&audit, "sec"), [None]);
    assert!(main.entries("sec").is_empty(), "main got the audit tenant");
    assert!(audit.entries("ops").is_empty(), "audit got the main tenant");
    let ns: Vec<String> = audit
        .entries("sec")
        .iter()
        .filter_map(|e| e.labels.get("namespace").map(str::to_string))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ns, ["audit"]);
}

/// Stopped during the outage, restarted when it is over: the audit Loki ends complete.
#[tokio::test]
async fn stopped_during_an_outage_and_restarted_the_audit_loki_ends_complete_once() {
    let main = FakeLoki::start(Config::for_tests()).await.unwrap();
    let audit = FakeLoki::start(Config::for_tests()).await.unwrap();
    audit.faults().add(FaultRule::status(503)).unwrap();
    let node = Node::new();
    node.append("audit", 0, 40);
    let plan = load(CONFIG, &push_url(&main), &push_url(&audit));
    let agent = run(plan.clone(), &node);
    until("main has the audit lines", || {
        received(&main, "ops") == lines("audit", 0, 40)
    })
    .await;
    let before = faults_applied(&audit);
    until("audit failed twice more", || {
        faults_applied(&audit) >= before + 2
    })
    .await;
    // Stopping during the outage: the drain gives up, nothing is acknowledged.
    agent.stop().await;
    assert_eq!(node.acked("audit"), 0);

    // On restart the lines are read again: main gets its copy a second time (at least
    // once, as with Alloy) and stores it once (Loki drops exact duplicates); audit gets its
    // lines exactly once.
    audit.faults().clear();
    let agent = run(plan, &node);
    until("audit has the lines", || {
        received(&audit, "sec") == lines("audit", 0, 40)
    })
    .await;
    until("position at the end", || {
        node.acked("audit") == node.size("audit")
    })
    .await;
    agent.stop().await;
    assert_eq!(received(&audit, "sec"), lines("audit", 0, 40));
    assert_eq!(received(&main, "ops"), lines("audit", 0, 40));
}
