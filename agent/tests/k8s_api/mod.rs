//! A Kubernetes API stand-in for integration tests: a real HTTP server on 127.0.0.1:0 (reached
//! through a kubeconfig file, so the agent's real client path runs) holding core/v1 objects of
//! any resource, answering get, list (with the current resource version) and watch (the
//! changes after the requested version, then the response ends and the client watches again).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// How long a watch request waits for a change before answering with none.
const WATCH_WAIT: Duration = Duration::from_millis(300);

#[derive(Default)]
struct Inner {
    rv: u64,
    /// resource ("events") → "namespace/name" → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// resource → (resource version, watch type, object), in order.
    history: BTreeMap<String, Vec<(u64, &'static str, Value)>>,
}

#[derive(Default)]
struct State {
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
    seen: Mutex<Vec<String>>,
}

/// The running stand-in.
#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state: Arc<State> = Arc::default();
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let (status, body) = answer(&s, req.uri()).await;
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        FakeApi { addr, state }
    }

    /// Adds or replaces an object of `resource` ("events", "pods", "secrets"); it gets the
    /// next resource version. Returns that version.
    pub fn put(&self, resource: &str, mut obj: Value) -> u64 {
        let mut g = self.state.inner.lock();
        g.rv += 1;
        let rv = g.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = format!(
            "{}/{}",
            obj["metadata"]["namespace"].as_str().unwrap_or(""),
            obj["metadata"]["name"].as_str().unwrap_or("")
        );
        let existed = g
            .objects
            .entry(resource.to_string())
            .or_default()
            .insert(key, obj.clone())
            .is_some();
        let ty = if existed { "MODIFIED" } else { "ADDED" };
        g.history
            .entry(resource.to_string())
            .or_default()
            .push((rv, ty, obj));
        drop(g);
        self.state.changed.notify_waiters();
        rv
    }

    /// Request paths with their queries, in order.
    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().clone()
    }

    /// A kubeconfig file pointing at the stand-in (token auth, as a service account has).
    pub fn kubeconfig(&self, dir: &Path) -> String {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\ncurrent-context: fake\nusers:\n- name: u\n  user:\n    token: t\n",
            self.addr
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path.display().to_string()
    }
}

fn not_found() -> (u16, Vec<u8>) {
    (
        404,
        br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"not found","reason":"NotFound","code":404}"#.to_vec(),
    )
}

fn kind_of(resource: &str) -> &'static str {
    match resource {
        "events" => "Event",
        "pods" => "Pod",
        "secrets" => "Secret",
        "configmaps" => "ConfigMap",
        _ => "Object",
    }
}

async fn answer(s: &State, uri: &hyper::Uri) -> (u16, Vec<u8>) {
    s.seen.lock().push(uri.to_string());
    let path = uri.path();
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let parts: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    // [resource] | [namespaces, ns, resource] | [namespaces, ns, resource, name]
    let (ns, resource, name) = match parts.as_slice() {
        [r] => (None, *r, None),
        ["namespaces", ns, r] => (Some(*ns), *r, None),
        ["namespaces", ns, r, n] => (Some(*ns), *r, Some(*n)),
        _ => return not_found(),
    };
    let in_ns = |o: &Value| ns.is_none_or(|n| o["metadata"]["namespace"] == n);
    if let Some(name) = name {
        let g = s.inner.lock();
        let key = format!("{}/{name}", ns.unwrap_or(""));
        return match g.objects.get(resource).and_then(|m| m.get(&key)) {
            Some(o) => (200, serde_json::to_vec(o).expect("json")),
            None => not_found(),
        };
    }
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let changes = || {
            let g = s.inner.lock();
            g.history
                .get(resource)
                .map(|h| {
                    h.iter()
                        .filter(|(rv, _, o)| *rv > from && in_ns(o))
                        .map(|(_, ty, o)| json!({"type": ty, "object": o}))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let notified = s.changed.notified();
        let mut got = changes();
        if got.is_empty() {
            let _ = tokio::time::timeout(WATCH_WAIT, notified).await;
            got = changes();
        }
        let mut body = Vec::new();
        for c in got {
            body.extend(serde_json::to_vec(&c).expect("json"));
            body.push(b'\n');
        }
        return (200, body);
    }
    let g = s.inner.lock();
    let items: Vec<Value> = g
        .objects
        .get(resource)
        .map(|m| m.values().filter(|o| in_ns(o)).cloned().collect())
        .unwrap_or_default();
    let list = json!({
        "apiVersion": "v1",
        "kind": format!("{}List", kind_of(resource)),
        "metadata": {"resourceVersion": g.rv.to_string()},
        "items": items,
    });
    (200, serde_json::to_vec(&list).expect("json"))
}

/// A core/v1 Event about `kind`/`name` in `ns` ("" for cluster-scoped objects).
#[allow(clippy::too_many_arguments)]
pub fn event(
    ns: &str,
    name: &str,
    uid: &str,
    kind: &str,
    object: &str,
    reason: &str,
    message: &str,
    count: i32,
    last: &str,
) -> Value {
    let mut obj = json!({"kind": kind, "name": object, "apiVersion": "v1"});
    if !ns.is_empty() {
        obj["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": if ns.is_empty() { "default" } else { ns }, "uid": uid},
        "involvedObject": obj,
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": "node-1"},
        "type": "Normal",
        "count": count,
        "firstTimestamp": last,
        "lastTimestamp": last,
    })
}
