//! The pod watcher against an in-process mock API server (`tower-test`): list + watch events,
//! a bookmark, failing watches (last known pods kept), `410 Gone` → relist (resync), Alloy
//! discovery enriched by pod uid; under paused time a repeated 403 (growing delays, one WARN)
//! and connect errors then 410 (relist at once); with the whole agent, open files switching to
//! their pod's API labels, with and without a grace period. Every request's User-Agent.
#![cfg(feature = "kube")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::discovery::{Discovery, PodMetadata};
use agent::k8s::PodWatcher;
use http::{Request, Response};
use kube::client::Body;
use parking_lot::Mutex;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const NODE: &str = "node-1";

fn pod(name: &str, uid: &str, app: &str, rv: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv,
            "labels": {"app": app}
        },
        "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "img:1"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"}
    })
}

fn list(rv: &str, items: Vec<serde_json::Value>) -> Response<Body> {
    json_response(
        200,
        &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items}),
    )
}

fn json_response(status: u16, v: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(v).expect("json")))
        .expect("response")
}

fn events(ev: &[serde_json::Value]) -> Response<Body> {
    let mut body = Vec::new();
    for e in ev {
        body.extend(serde_json::to_vec(e).expect("json"));
        body.push(b'\n');
    }
    Response::builder()
        .body(Body::from(body))
        .expect("response")
}

fn status(code: u16, reason: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn app_of(w: &PodWatcher, uid: &str) -> Option<String> {
    w.snapshot()
        .container(uid, "main")
        .and_then(|l| l.get("__meta_kubernetes_pod_label_app").cloned())
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the mock API server was asked, in order.
#[derive(Default, Clone)]
struct Log(Arc<Mutex<Vec<String>>>);

fn mkdir_log(root: &Path, dir: &str) {
    let c = root.join(dir).join("main");
    std::fs::create_dir_all(&c).expect("mkdir");
    std::fs::write(c.join("0.log"), "").expect("write");
}

#[tokio::test]
async fn watch_list_bookmark_outage_gone_relist_and_enrichment() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let log = Log::default();
    // The mock API: answers requests in the order the watcher makes them.
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(0u32);
    let server = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            let mut held = Vec::new();
            let mut gate = gate_rx;
            let mut n = 0;
            while let Some((req, send)) = handle.next_request().await {
                let uri = req.uri().to_string();
                log.0.lock().push(uri.clone());
                let watch = uri.contains("watch=true");
                n += 1;
                match (n, watch) {
                    (1, false) => send.send_response(list("10", vec![pod("a", "ua", "v1", "10")])),
                    (2, true) => send.send_response(events(&[
                        json!({"type": "ADDED", "object": pod("b", "ub", "web", "11")}),
                        json!({"type": "BOOKMARK", "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"resourceVersion": "12"}}}),
                        json!({"type": "MODIFIED", "object": pod("a", "ua", "v2", "13")}),
                    ])),
                    // The API server is away for a while: the watch fails.
                    (3, true) => {
                        // Answer only once the test has looked at the store.
                        let _ = gate.wait_for(|g| *g >= 1).await;
                        send.send_response(json_response(503, &status(503, "ServiceUnavailable")))
                    }
                    // Back, but our resource version is too old: 410 Gone → relist.
                    (4, true) => send.send_response(events(&[json!({"type": "ERROR", "object": status(410, "Expired")})])),
                    // a was deleted while we were away.
                    (5, false) => send.send_response(list("20", vec![pod("b", "ub", "web", "20")])),
                    // Then the watch stays open and quiet.
                    (_, true) => held.push(send),
                    (_, false) => send.send_response(list("20", vec![pod("b", "ub", "web", "20")])),
                }
            }
        })
    };

    let w = PodWatcher::start(client, NODE);
    assert!(w.wait_synced(WAIT).await, "first list");
    until("watch events applied", || {
        app_of(&w, "ub").as_deref() == Some("web") && app_of(&w, "ua").as_deref() == Some("v2")
    })
    .await;
    {
        let reqs = log.0.lock().clone();
        assert!(
            reqs[0].contains("fieldSelector=spec.nodeName%3Dnode-1"),
            "{reqs:?}"
        );
        assert!(
            reqs[1].contains("allowWatchBookmarks=true") && reqs[1].contains("resourceVersion=10"),
            "{reqs:?}"
        );
    }

    // Enrichment: a container directory of a known pod gets the API labels through the
    // config's relabel rules; one of an unknown pod keeps its path labels.
    let dir = tempfile::tempdir().expect("tempdir");
    mkdir_log(dir.path(), "shop_b_ub");
    mkdir_log(dir.path(), "shop_ghost_ux");
    let cfg = r#"
discovery.kubernetes "pods" {
  role = "pod"
}
discovery.relabel "pods" {
  targets = discovery.kubernetes.pods.targets
  rule {
    source_labels = ["__meta_kubernetes_pod_label_app"]
    target_label  = "app"
  }
}
loki.source.kubernetes "pods" {
  targets    = discovery.relabel.pods.output
  forward_to = [loki.write.default.receiver]
}
loki.write "default" {
  endpoint {
    url = "http://127.0.0.1:9/loki/api/v1/push"
  }
}
"#;
    let mut plan =
        agent::alloy::check_source("t.alloy", cfg, agent::alloy::system_scope()).expect("config");
    plan.settings.pods_root = dir.path().to_path_buf();
    let mut d = plan.discovery().with_pod_metadata(Arc::new(w.clone()));
    let targets = d.scan();
    // loki.source.kubernetes' own labels (job, instance = ns/pod:container) name the target.
    let labels_of = |pod: &str| {
        let instance = format!("shop/{pod}:main");
        targets
            .iter()
            .find(|t| t.labels.contains(&("instance".into(), instance.clone())))
            .map(|t| t.labels.clone())
            .unwrap_or_else(|| panic!("no target for {pod}: {targets:?}"))
    };
    assert!(labels_of("b").contains(&("app".into(), "web".into())));
    let ghost = labels_of("ghost");
    assert!(ghost.contains(&("job".into(), "loki.source.kubernetes.pods".into())));
    assert!(!ghost.iter().any(|(k, _)| k == "app"));

    // The API server is away: the last known pods stay.
    until("the failing watch", || log.0.lock().len() >= 3).await;
    assert_eq!(app_of(&w, "ua").as_deref(), Some("v2"));
    assert_eq!(app_of(&w, "ub").as_deref(), Some("web"));
    let _ = gate_tx.send(1);

    // 410 Gone → relist: a is gone, b stays.
    until("the relist after 410 Gone", || {
        app_of(&w, "ua").is_none() && app_of(&w, "ub").is_some()
    })
    .await;
    let reqs = log.0.lock().clone();
    assert!(!reqs[4].contains("watch=true"), "{reqs:?}");
    assert!(w.synced());
    server.abort();
}

/// Log lines written while a test runs (on its own thread: tokio's current-thread runtime),
/// filtered like the agent binary filters them by default.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,kube_runtime::watcher=error",
            ))
            .with_ansi(false)
            .with_writer(move || me.clone())
            .finish();
        tracing::subscriber::set_default(sub)
    }

    fn lines(&self, level: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock())
            .lines()
            .filter(|l| l.contains(&format!(" {level} ")))
            .map(str::to_string)
            .collect()
    }
}

/// Requests the mock API server got: virtual time since the test started, URI, User-Agent.
#[derive(Default, Clone)]
struct Timed(Arc<Mutex<Vec<(Duration, String, String)>>>);

impl Timed {
    fn record(&self, t0: tokio::time::Instant, req: &Request<Body>) {
        let ua = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.0
            .lock()
            .push((t0.elapsed(), req.uri().to_string(), ua));
    }
    fn get(&self) -> Vec<(Duration, String, String)> {
        self.0.lock().clone()
    }
}

/// Whether `gap` is the `n`-th backoff delay: the plan minus at most the jitter (plus the
/// millisecond paused time may add).
fn is_backoff(gap: Duration, n: u32) -> bool {
    let plan = agent::k8s::backoff::Backoff::default().planned(n);
    gap >= plan.mul_f64(1.0 - agent::k8s::backoff::JITTER) && gap <= plan + Duration::from_millis(5)
}

#[tokio::test(start_paused = true)]
async fn forbidden_list_is_retried_with_growing_delays_and_logged_once() {
    let logs = Captured::default();
    let _guard = logs.install();
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let t0 = tokio::time::Instant::now();
    let reqs = Timed::default();
    let server = {
        let reqs = reqs.clone();
        tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            while let Some((req, send)) = handle.next_request().await {
                reqs.record(t0, &req);
                send.send_response(json_response(403, &json!({
                    "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                    "message": "pods is forbidden: User \"system:serviceaccount:logs:agent\" cannot list resource \"pods\" in API group \"\" at the cluster scope",
                    "reason": "Forbidden", "code": 403
                })));
            }
        })
    };
    let w = PodWatcher::start(agent::k8s::client_over(service), NODE);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let reqs = reqs.get();
    // 0.8 s doubling to 30 s, jitter only shortens: requests at about 0, 0.8, 2.4, 5.6, 12,
    // 24.8 and 50.4 s, the next not before 64 s. (kube-runtime's own backoff: ~60.)
    assert_eq!(reqs.len(), 7, "{reqs:?}");
    for (n, pair) in reqs.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        assert!(is_backoff(gap, n as u32), "delay {n} = {gap:?}: {reqs:?}");
    }
    for (_, uri, ua) in &reqs {
        assert!(!uri.contains("watch=true"), "only lists: {uri}");
        assert_eq!(ua, agent::k8s::USER_AGENT);
    }
    assert!(agent::k8s::USER_AGENT.starts_with("agent/"));
    let warns = logs.lines("WARN");
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(
        warns[0].contains("403 Forbidden")
            && warns[0].contains(r#"verb "list" on resource "pods""#),
        "{warns:?}"
    );
    assert!(!w.synced());
    assert!(w
        .last_error()
        .is_some_and(|e| e.contains("may not list pods")));
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn connect_errors_then_gone_relists_without_waiting_and_logs_once_each_way() {
    let logs = Captured::default();
    let _guard = logs.install();
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let t0 = tokio::time::Instant::now();
    let reqs = Timed::default();
    let server = {
        let reqs = reqs.clone();
        tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            let mut held = Vec::new();
            let mut n = 0;
            while let Some((req, send)) = handle.next_request().await {
                reqs.record(t0, &req);
                n += 1;
                match n {
                    1 => send.send_response(list("10", vec![pod("a", "ua", "v1", "10")])),
                    // The API server restarts: connections refused, four times.
                    2..=5 => send.send_error(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "connection refused",
                    )),
                    // Back with a new watch cache: our resource version is gone.
                    6 => send.send_response(events(&[
                        json!({"type": "ERROR", "object": status(410, "Expired")}),
                    ])),
                    7 => send.send_response(list("20", vec![pod("a", "ua", "v2", "20")])),
                    _ => held.push(send),
                }
            }
        })
    };
    let w = PodWatcher::start(agent::k8s::client_over(service), NODE);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let reqs = reqs.get();
    assert_eq!(reqs.len(), 8, "{reqs:?}");
    let watch = |i: usize| reqs[i].1.contains("watch=true");
    assert!(
        !watch(0) && (1..=5).all(watch) && !watch(6) && watch(7),
        "{reqs:?}"
    );
    // The connect errors back off: 0.8, 1.6, 3.2, 6.4 s (within jitter).
    for n in 0..4 {
        let gap = reqs[n + 2].0 - reqs[n + 1].0;
        assert!(is_backoff(gap, n as u32), "delay {n} = {gap:?}: {reqs:?}");
    }
    // The relist follows the 410 at once (the grown backoff would be 12.8 s).
    assert!(reqs[6].0 - reqs[5].0 < Duration::from_millis(5), "{reqs:?}");
    assert_eq!(app_of(&w, "ua").as_deref(), Some("v2"));
    let warns = logs.lines("WARN");
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].contains("API server not reachable"), "{warns:?}");
    let recovered: Vec<String> = logs
        .lines("INFO")
        .into_iter()
        .filter(|l| l.contains("recovered"))
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(recovered[0].contains("failures=5"), "{recovered:?}");
    assert!(reqs.iter().all(|r| r.2 == agent::k8s::USER_AGENT));
    server.abort();
}

/// `loki.source.kubernetes` (no `stream`, no `filename`) or `loki.source.file` over
/// `discovery.kubernetes`, both copying the pod label `app` through `discovery.relabel`.
fn label_config(loki_url: &str, file_source: bool) -> String {
    let source = if file_source {
        r#"
loki.source.file "pods" {
  targets    = discovery.relabel.pods.output
  forward_to = [loki.write.default.receiver]
  file_match { enabled = true }
}"#
    } else {
        r#"
loki.source.kubernetes "pods" {
  targets    = discovery.relabel.pods.output
  forward_to = [loki.write.default.receiver]
}"#
    };
    format!(
        r#"
discovery.kubernetes "pods" {{
  role = "pod"
}}
discovery.relabel "pods" {{
  targets = discovery.kubernetes.pods.targets
  rule {{
    source_labels = ["__meta_kubernetes_pod_label_app"]
    target_label  = "app"
  }}
  rule {{
    source_labels = ["__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_container_name"]
    separator     = "/"
    target_label  = "__path__"
    replacement   = "/var/log/pods/*$1/*.log"
  }}
}}
{source}
loki.write "default" {{
  endpoint {{
    url       = "{loki_url}"
    tenant_id = "t1"
  }}
}}
"#
    )
}

fn append_lines(root: &Path, dir: &str, lines: &[&str]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join(dir).join("main").join("0.log"))
        .expect("open log");
    for l in lines {
        writeln!(f, "2026-12-03T10:00:00.000000000Z stdout F {l}").expect("write");
    }
}

/// The agent running `cfg` in-process with the pod watcher as its metadata source.
struct LabelRun {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
}

fn start_labelled(cfg: &str, pods: &Path, positions: &Path, w: PodWatcher) -> LabelRun {
    let mut plan = agent::alloy::check_source("t.alloy", cfg, agent::alloy::system_scope())
        .unwrap_or_else(|d| panic!("{}", d.render(cfg)));
    let s = &mut plan.settings;
    s.pods_root = pods.to_path_buf();
    s.positions_path = positions.to_path_buf();
    s.listen = None;
    s.poll_interval = Duration::from_millis(20);
    s.rescan_interval = Duration::from_millis(100);
    s.positions_sync_interval = Duration::from_millis(20);
    s.batch_wait = Duration::from_millis(50);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let discovery = plan.discovery().with_pod_metadata(Arc::new(w));
        agent::run_plan(&plan, Box::new(discovery), None, async {
            let _ = rx.await;
        })
        .await
    });
    LabelRun { stop, task }
}

impl LabelRun {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("agent task").expect("agent run");
    }
}

/// A mock API whose first list is empty and whose first watch answers only when `release`
/// says so, with pod `b` (uid `ub`, app `web`) added; later watches stay open and quiet.
fn api_adding_b_on_release() -> (
    kube::Client,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (release, mut gate) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        let mut held = Vec::new();
        let mut watches = 0;
        while let Some((req, send)) = handle.next_request().await {
            if !req.uri().to_string().contains("watch=true") {
                send.send_response(list("10", vec![]));
                continue;
            }
            watches += 1;
            if watches > 1 {
                held.push(send);
                continue;
            }
            let _ = gate.wait_for(|r| *r).await;
            send.send_response(events(&[
                json!({"type": "ADDED", "object": pod("b", "ub", "web", "11")}),
            ]));
        }
    });
    (agent::k8s::client_over(service), release, server)
}

fn entries_by_line(loki: &fake_loki::FakeLoki) -> Vec<(String, Option<String>)> {
    loki.entries("t1")
        .into_iter()
        .map(|e| {
            let app = e
                .labels
                .iter()
                .find(|(k, _)| *k == "app")
                .map(|(_, v)| v.to_string());
            // loki.source.file without stage.cri ships the CRI record whole: its last word.
            let text = e.line.rsplit(' ').next().unwrap_or_default().to_string();
            (text, app)
        })
        .collect()
}

/// No grace: lines read before the pod is known carry the path's labels only; every line
/// read after it is known carries its API labels, in both source kinds.
#[tokio::test]
async fn open_files_switch_to_api_labels_when_their_pod_becomes_known() {
    for file_source in [false, true] {
        let loki = fake_loki::FakeLoki::start(fake_loki::Config::for_tests())
            .await
            .expect("fake-loki");
        let dir = tempfile::tempdir().expect("tempdir");
        let pods = dir.path().join("pods");
        mkdir_log(&pods, "shop_b_ub");
        append_lines(&pods, "shop_b_ub", &["before-1", "before-2"]);
        let (client, release, server) = api_adding_b_on_release();
        let w = PodWatcher::start(client, NODE);
        assert!(w.wait_synced(WAIT).await);
        let run = start_labelled(
            &label_config(&format!("{}/loki/api/v1/push", loki.url()), file_source),
            &pods,
            &dir.path().join("positions.yaml"),
            w.clone(),
        );
        until("the lines read while the pod is unknown", || {
            loki.entries("t1").len() == 2
        })
        .await;
        let _ = release.send(true);
        until("the pod known", || app_of(&w, "ub").is_some()).await;
        append_lines(&pods, "shop_b_ub", &["after-1", "after-2", "after-3"]);
        until("every line", || loki.entries("t1").len() == 5).await;
        let mut got = entries_by_line(&loki);
        got.sort();
        let web = Some("web".to_string());
        assert_eq!(
            got,
            vec![
                ("after-1".into(), web.clone()),
                ("after-2".into(), web.clone()),
                ("after-3".into(), web),
                ("before-1".into(), None),
                ("before-2".into(), None),
            ],
            "file source: {file_source}"
        );
        run.stop().await;
        server.abort();
        loki.shutdown().await;
    }
}

/// With a grace period: a pod whose event arrives within it has no unlabelled line, and a
/// file whose pod never becomes known is shipped with path labels once the grace is over.
#[tokio::test]
async fn a_pod_known_within_the_grace_period_has_no_unlabelled_line() {
    let loki = fake_loki::FakeLoki::start(fake_loki::Config::for_tests())
        .await
        .expect("fake-loki");
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = dir.path().join("pods");
    let positions = dir.path().join("positions.yaml");
    mkdir_log(&pods, "shop_b_ub");
    mkdir_log(&pods, "shop_ghost_ux");
    append_lines(&pods, "shop_b_ub", &["first-1", "first-2"]);
    append_lines(&pods, "shop_ghost_ux", &["ghost-1"]);
    let (client, release, server) = api_adding_b_on_release();
    let grace = Duration::from_secs(8);
    let w = PodWatcher::start(client, NODE).with_grace(grace);
    assert!(w.wait_synced(WAIT).await);
    let started = Instant::now();
    let run = start_labelled(
        &label_config(&format!("{}/loki/api/v1/push", loki.url()), false),
        &pods,
        &positions,
        w.clone(),
    );
    // The tailer has seen both files (its first scan is saved before anything is read)
    // while the API does not know their pods.
    until("the first scan", || {
        std::fs::read_to_string(&positions)
            .is_ok_and(|p| p.contains("shop_b_ub") && p.contains("shop_ghost_ux"))
    })
    .await;
    assert!(app_of(&w, "ub").is_none());
    let _ = release.send(true);
    until("the pod known", || app_of(&w, "ub").is_some()).await;
    append_lines(&pods, "shop_b_ub", &["then-1"]);
    until("every line", || loki.entries("t1").len() == 4).await;
    let mut got = entries_by_line(&loki);
    got.sort();
    let web = Some("web".to_string());
    assert_eq!(
        got,
        vec![
            ("first-1".into(), web.clone()),
            ("first-2".into(), web.clone()),
            ("ghost-1".into(), None),
            ("then-1".into(), web),
        ]
    );
    // The ghost's line waited for the grace period, no longer than a generous bound.
    assert!(started.elapsed() >= grace, "{:?}", started.elapsed());
    run.stop().await;
    server.abort();
    loki.shutdown().await;
}
