//! The pod watcher against an in-process mock API server (`tower-test`): list + watch events,
//! a bookmark, failing watches (last known pods kept), `410 Gone` → relist (resync), and
//! Alloy discovery enriched by pod uid while unknown pods keep their path labels.
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
