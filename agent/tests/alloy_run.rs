//! `agent run agent/examples/design-doc.alloy` against an in-process fake-loki on a simulated
//! node: every line of the selected namespaces arrives exactly once with the config's labels
//! and tenant, lines of other namespaces do not, and SIGTERM ends the agent with exit 0.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{AgentProcess, WAIT};
use fake_loki::{Config, FakeLoki};

mod common;

const CLUSTER: &str = "ops";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/design-doc.alloy")
}

fn cri_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Appends CRI records to `<root>/<ns>_<pod>_uid-<pod>/<container>/0.log`.
fn append(root: &Path, ns: &str, pod: &str, container: &str, records: &[String]) {
    let dir = root.join(format!("{ns}_{pod}_uid-{pod}")).join(container);
    std::fs::create_dir_all(&dir).expect("container dir");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("0.log"))
        .expect("open log");
    let mut buf = String::new();
    for r in records {
        buf.push_str(r);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).expect("write log");
}

fn lines(ns: &str, pod: &str, stream: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("{} {stream} F {ns}/{pod} line {i}", cri_ts()))
        .collect()
}

/// The stream of a container, as Alloy labels it: the relabelled pod labels, loki.source.kubernetes'
/// `instance` and `job` defaults and the writer's `cluster`; no `stream` (lines read through
/// the API have none), so stdout and stderr share it.
fn labels(ns: &str, pod: &str, container: &str) -> String {
    format!(
        r#"{{cluster="{CLUSTER}", container="{container}", instance="{ns}/{pod}:{container}", job="loki.source.kubernetes.pods", namespace="{ns}", pod="{pod}"}}"#
    )
}

/// `agent run` on the example config, with the simulated node and the test's tenant.
fn start_agent(loki_url: &str, pods: &Path, storage: &Path, log: PathBuf) -> AgentProcess {
    AgentProcess::spawn(log, |cmd| {
        cmd.arg("run")
            .arg(example())
            .arg("--pods-root")
            .arg(pods)
            .arg(format!("--storage.path={}", storage.display()))
            .arg("--server.http.listen-addr=127.0.0.1:0")
            .env("LOKI_URL", loki_url)
            .env("CLUSTER_NAME", CLUSTER);
    })
}

/// (labels, line) → count over everything the tenant received.
fn received(loki: &FakeLoki) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for e in loki.entries(CLUSTER) {
        *m.entry((e.labels.to_string(), e.line)).or_default() += 1;
    }
    m
}

fn expect(
    want: &mut BTreeMap<(String, String), usize>,
    ns: &str,
    pod: &str,
    container: &str,
    from: usize,
    n: usize,
) {
    for i in from..from + n {
        want.insert(
            (labels(ns, pod, container), format!("{ns}/{pod} line {i}")),
            1,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn design_doc_config_ships_every_line_once() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = dir.path().join("pods");
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&pods).expect("pods");

    // `agent check` accepts the example.
    let check = Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("check")
        .arg(example())
        .env("CLUSTER_NAME", CLUSTER)
        .output()
        .expect("agent check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut want = BTreeMap::new();
    append(
        &pods,
        "default",
        "web",
        "app",
        &lines("default", "web", "stdout", 0, 50),
    );
    expect(&mut want, "default", "web", "app", 0, 50);
    append(
        &pods,
        "default",
        "web",
        "app",
        &lines("default", "web", "stderr", 50, 5),
    );
    expect(&mut want, "default", "web", "app", 50, 5);
    // A CRI record split in two parts is joined.
    let ts = cri_ts();
    append(
        &pods,
        "default",
        "web",
        "app",
        &[
            format!("{ts} stdout P default/web "),
            format!("{ts} stdout F line 55"),
        ],
    );
    expect(&mut want, "default", "web", "app", 55, 1);
    append(
        &pods,
        "kube-system",
        "dns",
        "coredns",
        &lines("kube-system", "dns", "stdout", 0, 20),
    );
    expect(&mut want, "kube-system", "dns", "coredns", 0, 20);
    // Not in the config's namespaces: never shipped.
    append(
        &pods,
        "other",
        "x",
        "c",
        &lines("other", "x", "stdout", 0, 10),
    );

    let agent = start_agent(&loki.url(), &pods, &storage, dir.path().join("agent.log"));

    // Lines written while running, including a pod that appears later.
    let deadline = Instant::now() + WAIT;
    while received(&loki).len() < 10 {
        assert!(
            Instant::now() < deadline,
            "nothing arrived; agent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    append(
        &pods,
        "default",
        "web",
        "app",
        &lines("default", "web", "stdout", 56, 30),
    );
    expect(&mut want, "default", "web", "app", 56, 30);
    append(
        &pods,
        "production",
        "api",
        "server",
        &lines("production", "api", "stdout", 0, 15),
    );
    expect(&mut want, "production", "api", "server", 0, 15);

    let deadline = Instant::now() + WAIT;
    loop {
        let got = received(&loki);
        if got == want {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, n)| want.get(*k) != Some(*n))
                .collect();
            panic!(
                "missing {missing:?}\nunexpected or duplicated {extra:?}\nagent log:\n{}",
                agent.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = agent.log();
    assert!(
        log.contains("kubelet paths"),
        "the agent says where targets come from:\n{log}"
    );
    assert!(loki.entries("other").is_empty());

    let code = agent.terminate().await;
    assert_eq!(code, Some(0));
    // Positions were written under --storage.path and cover every file fully.
    let positions = std::fs::read_to_string(storage.join("positions.yaml")).expect("positions");
    for (ns, pod, c) in [
        ("default", "web", "app"),
        ("kube-system", "dns", "coredns"),
        ("production", "api", "server"),
    ] {
        let path = pods
            .join(format!("{ns}_{pod}_uid-{pod}"))
            .join(c)
            .join("0.log");
        let size = std::fs::metadata(&path).expect("log").len();
        assert!(
            positions.contains(&format!("{}: '{size}'", path.display())),
            "{} acknowledged to its end ({size}):\n{positions}",
            path.display()
        );
    }
    assert_eq!(received(&loki), want, "nothing re-sent at shutdown");
}
