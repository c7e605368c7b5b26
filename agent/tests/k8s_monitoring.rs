//! The issue's must-show: a config in the k8s-monitoring chart's shape (pod logs + cluster
//! events + a destination whose credentials come from `remote.kubernetes.secret`, each feature
//! a declare) runs in the agent binary on a simulated node against a mocked Kubernetes API and
//! fake-loki behind a basic-auth gateway. Every pod line and every event arrives with the
//! labels the chart's pipelines set, and every push carried the Secret's credentials. When the
//! Secret changes, later pushes carry the new credentials.
#![cfg(feature = "kube")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{AgentProcess, WAIT};
use fake_loki::{Config, FakeLoki};
use k8s_api::{event, FakeApi};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;

mod common;
mod k8s_api;

const CORPUS: &str = "tests/alloy-corpus/k8s-monitoring/modules/pod-logs-events-destination.alloy";
/// The destination URL the chart renders; the test points it at its gateway.
const CHART_URL: &str = "http://loki-gateway.loki.svc:80/loki/api/v1/push";
const NODE: &str = "node-1";
const TENANT: &str = "team-a";

/// What the gateway saw of one push: `Authorization`, `X-Scope-OrgID` and `X-Team`, and
/// its answer.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    authorization: Option<String>,
    org_id: Option<String>,
    team: Option<String>,
    status: u16,
}

/// What the gateway accepts: `Authorization`, `X-Scope-OrgID` and `X-Team` (`None`: absent).
type Accept = (String, Option<String>, Option<String>);

/// A Loki gateway: checks a push's `Authorization`, tenant and team against what it
/// currently accepts (401 otherwise, as a gateway with basic auth and a tenant check does)
/// and passes accepted pushes to fake-loki.
#[derive(Clone)]
struct Gateway {
    addr: SocketAddr,
    accept: Arc<Mutex<Accept>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Gateway {
    async fn start(loki: &FakeLoki, accept: Accept) -> Gateway {
        use http_body_util::BodyExt;
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let gw = Gateway {
            addr,
            accept: Arc::new(Mutex::new(accept)),
            seen: Arc::default(),
        };
        let upstream = format!("{}/loki/api/v1/push", loki.url());
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let g = gw.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let g = g.clone();
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let g = g.clone();
                        let client = client.clone();
                        let upstream = upstream.clone();
                        async move {
                            let h = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string)
                            };
                            let authorization = h("authorization");
                            let org_id = h("x-scope-orgid");
                            let team = h("x-team");
                            let ok = authorization.is_some()
                                && *g.accept.lock()
                                    == (
                                        authorization.clone().unwrap_or_default(),
                                        org_id.clone(),
                                        team.clone(),
                                    );
                            let (status, body) = if ok {
                                let mut fwd = hyper::Request::post(&upstream);
                                for (k, v) in req.headers() {
                                    if k != hyper::header::HOST {
                                        fwd = fwd.header(k, v);
                                    }
                                }
                                let body = req.into_body().collect().await?.to_bytes();
                                let fwd =
                                    fwd.body(http_body_util::Full::new(body)).expect("request");
                                match client.request(fwd).await {
                                    Ok(resp) => {
                                        let status = resp.status().as_u16();
                                        let body = resp.into_body().collect().await?.to_bytes();
                                        (status, body)
                                    }
                                    Err(e) => (502, bytes::Bytes::from(e.to_string())),
                                }
                            } else {
                                (
                                    401,
                                    bytes::Bytes::from_static(b"401 Authorization Required"),
                                )
                            };
                            g.seen.lock().push(Seen {
                                authorization,
                                org_id,
                                team,
                                status,
                            });
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(body))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        gw
    }

    fn url(&self) -> String {
        format!("http://{}/loki/api/v1/push", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

fn pod(ns: &str, name: &str, uid: &str, container: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": uid,
            "labels": {"app.kubernetes.io/name": app, "pod-template-hash": "7d9f"}
        },
        "spec": {"nodeName": NODE, "containers": [{"name": container, "image": format!("{app}:1")}]},
        "status": {
            "phase": "Running", "podIP": "10.0.0.7", "hostIP": "192.168.0.1",
            "containerStatuses": [{
                "name": container, "ready": true, "restartCount": 0, "image": format!("{app}:1"),
                "imageID": "", "containerID": format!("containerd://{uid}-{container}")
            }]
        }
    })
}

fn secret(user: &str, password: &str) -> Value {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "loki-k8s-monitoring", "namespace": "default"},
        "type": "Opaque",
        "data": {"username": b(user), "password": b(password), "tenantId": b(TENANT)},
    })
}

/// A kubelet container log directory with CRI lines.
fn write_log(pods_root: &Path, ns: &str, pod: &str, uid: &str, container: &str, lines: &[&str]) {
    let dir = pods_root.join(format!("{ns}_{pod}_{uid}")).join(container);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut text = String::new();
    for (i, l) in lines.iter().enumerate() {
        text.push_str(&format!(
            "2026-01-02T03:04:{:02}.000000000Z stdout F {l}\n",
            i
        ));
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("0.log"))
        .expect("open log");
    f.write_all(text.as_bytes()).expect("write log");
}

/// (labels, line) → count of what fake-loki stored for the tenant.
fn got(loki: &FakeLoki) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for e in loki.entries(TENANT) {
        *out.entry((e.labels.to_string(), e.line)).or_default() += 1;
    }
    out
}

async fn wait_for(loki: &FakeLoki, agent: &AgentProcess, want: &BTreeMap<(String, String), usize>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let g = got(loki);
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

/// The chart's pod-log labels for a container of this test.
fn pod_labels(pod: &str, container: &str, app: &str) -> String {
    format!(
        r#"{{app_kubernetes_io_name="{app}", cluster="dev", container="{container}", job="shop/{container}", k8s_cluster_name="dev", namespace="shop", pod="{pod}", service_name="{app}"}}"#
    )
}

/// The chart's cluster-event labels.
fn event_labels(level: &str, ns: Option<&str>, node: &str) -> String {
    let ns = ns
        .map(|n| format!(r#"namespace="{n}", "#))
        .unwrap_or_default();
    format!(
        r#"{{cluster="dev", job="integrations/kubernetes/eventhandler", k8s_cluster_name="dev", level="{level}", {ns}node="{node}", source="kubernetes-events"}}"#
    )
}

/// Alloy's logfmt line of an event made by [`k8s_api::event`].
fn event_line(
    name: &str,
    kind: &str,
    rv: u64,
    reason: &str,
    ty: &str,
    count: i32,
    msg: &str,
) -> String {
    let count = if count == 0 {
        String::new()
    } else {
        format!("count={count} ")
    };
    format!("name={name} kind={kind} objectAPIversion=v1 eventRV={rv} sourcecomponent=kubelet sourcehost=node-1 reason={reason} type={ty} {count}msg={msg:?} ")
}

struct Setup {
    loki: FakeLoki,
    api: FakeApi,
    gateway: Gateway,
    dir: tempfile::TempDir,
    kubeconfig: String,
}

async fn setup() -> Setup {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let api = FakeApi::start().await;
    let gateway = Gateway::start(
        &loki,
        (basic("tenant-user", "s3cret"), Some(TENANT.into()), None),
    )
    .await;
    api.put("secrets", secret("tenant-user", "s3cret"));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = api.kubeconfig(dir.path());
    Setup {
        loki,
        api,
        gateway,
        dir,
        kubeconfig,
    }
}

/// The corpus config, destination pointed at the gateway (nothing else changed), run by the
/// agent binary as a node of the chart's DaemonSet would run it.
fn spawn(s: &Setup) -> AgentProcess {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS))
        .expect("corpus config");
    assert!(src.contains(CHART_URL));
    let config = s.dir.path().join("k8s-monitoring.alloy");
    std::fs::write(&config, src.replace(CHART_URL, &s.gateway.url())).expect("write config");
    let pods = s.dir.path().join("pods");
    std::fs::create_dir_all(&pods).expect("pods");
    let storage = s.dir.path().join("storage");
    let kc = s.kubeconfig.clone();
    AgentProcess::spawn(s.dir.path().join("agent.log"), move |cmd| {
        cmd.arg("run")
            .arg(&config)
            .arg("--pods-root")
            .arg(&pods)
            .arg(format!("--storage.path={}", storage.display()))
            .arg("--server.http.listen-addr=127.0.0.1:0")
            .env("KUBECONFIG", kc)
            .env("NODE_NAME", NODE)
            .env("HOSTNAME", NODE);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_monitoring_pod_logs_events_and_secret_credentials_reach_loki() {
    let s = setup().await;
    s.api
        .put("pods", pod("shop", "web-7d9f", "uid-web", "web", "web"));
    s.api
        .put("pods", pod("shop", "db-0", "uid-db", "db", "postgres"));
    let pods = s.dir.path().join("pods");
    write_log(
        &pods,
        "shop",
        "web-7d9f",
        "uid-web",
        "web",
        &["GET / 200", "GET /cart 200"],
    );
    write_log(
        &pods,
        "shop",
        "db-0",
        "uid-db",
        "db",
        &["checkpoint complete"],
    );
    // rv 4, 5, 6 (secret 1, pods 2 and 3).
    s.api.put(
        "events",
        event(
            "shop",
            "web-7d9f.1",
            "e1",
            "Pod",
            "web-7d9f",
            "Pulled",
            "Successfully pulled image \"web:1\"",
            1,
            "2026-01-02T03:04:05Z",
        ),
    );
    let mut warning = event(
        "shop",
        "db-0.1",
        "e2",
        "Pod",
        "db-0",
        "BackOff",
        "Back-off restarting failed container db",
        3,
        "2026-01-02T03:04:06Z",
    );
    warning["type"] = json!("Warning");
    s.api.put("events", warning);
    s.api.put(
        "events",
        event(
            "",
            "node-2.1",
            "e3",
            "Node",
            "node-2",
            "NodeReady",
            "Node node-2 status is now: NodeReady",
            0,
            "2026-01-02T03:04:07Z",
        ),
    );

    let mut want: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (pod, c, app, line) in [
        ("web-7d9f", "web", "web", "GET / 200"),
        ("web-7d9f", "web", "web", "GET /cart 200"),
        ("db-0", "db", "postgres", "checkpoint complete"),
    ] {
        want.insert((pod_labels(pod, c, app), line.to_string()), 1);
    }
    want.insert(
        (
            event_labels("Info", Some("shop"), NODE),
            event_line(
                "web-7d9f",
                "Pod",
                4,
                "Pulled",
                "Normal",
                1,
                "Successfully pulled image \"web:1\"",
            ),
        ),
        1,
    );
    want.insert(
        (
            event_labels("Warning", Some("shop"), NODE),
            event_line(
                "db-0",
                "Pod",
                5,
                "BackOff",
                "Warning",
                3,
                "Back-off restarting failed container db",
            ),
        ),
        1,
    );
    // An event about a node: no namespace, and the chart's stage.match names the node.
    want.insert(
        (
            event_labels("Info", None, "node-2"),
            event_line(
                "node-2",
                "Node",
                6,
                "NodeReady",
                "Normal",
                0,
                "Node node-2 status is now: NodeReady",
            ),
        ),
        1,
    );

    let agent = spawn(&s);
    wait_for(&s.loki, &agent, &want).await;
    // Pod lines keep the runtime's timestamps (stage.cri).
    let mut ts: Vec<i64> = s
        .loki
        .entries(TENANT)
        .iter()
        .filter(|e| e.labels.to_string().contains("container="))
        .map(|e| e.ts)
        .collect();
    ts.sort();
    assert_eq!(
        ts,
        vec![
            1_767_323_040_000_000_000,
            1_767_323_040_000_000_000,
            1_767_323_041_000_000_000
        ]
    );

    // Every push carried the Secret's credentials and tenant; none was refused.
    let seen = s.gateway.seen();
    assert!(!seen.is_empty());
    for p in &seen {
        assert_eq!(
            p,
            &Seen {
                authorization: Some(basic("tenant-user", "s3cret")),
                org_id: Some(TENANT.to_string()),
                team: None,
                status: 204,
            }
        );
    }
    assert_eq!(agent.terminate().await, Some(0));
    // The agent read the Secret, the pods of its node and the events through the API.
    let asked = s.api.seen();
    for want in [
        "/api/v1/namespaces/default/secrets/loki-k8s-monitoring",
        "/api/v1/pods?",
        "/api/v1/events?",
    ] {
        assert!(
            asked.iter().any(|p| p.starts_with(want)),
            "{want} not in {asked:?}"
        );
    }
}

/// Credentials and settings from the API, polled every 200 ms.
const ROTATING: &str = r#"remote.kubernetes.secret "creds" {
  namespace      = "monitoring"
  name           = "loki-creds"
  poll_frequency = "200ms"
}

remote.kubernetes.configmap "settings" {
  namespace      = "monitoring"
  name           = "loki-settings"
  poll_frequency = "200ms"
}

loki.source.file "app" {
  targets    = [{"__path__" = sys.env("LOG_FILE"), "job" = "app"}]
  forward_to = [loki.write.default.receiver]
}

loki.write "default" {
  endpoint {
    url       = sys.env("LOKI_URL")
    tenant_id = remote.kubernetes.configmap.settings.data["tenant"]
    headers   = {"X-Team" = remote.kubernetes.configmap.settings.data["team"]}
    basic_auth {
      username = convert.nonsensitive(remote.kubernetes.secret.creds.data["username"])
      password = remote.kubernetes.secret.creds.data["password"]
    }
  }
}
"#;

fn creds(password: &str) -> Value {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "loki-creds", "namespace": "monitoring"},
        "data": {"username": b("agent"), "password": b(password)},
    })
}

fn settings(tenant: &str, team: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "loki-settings", "namespace": "monitoring"},
        "data": {"tenant": tenant, "team": team},
    })
}

fn lines_of(loki: &FakeLoki, tenant: &str) -> Vec<String> {
    loki.entries(tenant).into_iter().map(|e| e.line).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secret_and_configmap_reach_later_pushes_without_a_restart() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let api = FakeApi::start().await;
    let gateway = Gateway::start(
        &loki,
        (
            basic("agent", "first"),
            Some("t1".into()),
            Some("red".into()),
        ),
    )
    .await;
    api.put("secrets", creds("first"));
    api.put("configmaps", settings("t1", "red"));
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = api.kubeconfig(dir.path());
    let config = dir.path().join("rotating.alloy");
    std::fs::write(&config, ROTATING).expect("write config");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "before\n").expect("write log");
    let (url, storage) = (gateway.url(), dir.path().join("storage"));
    let log_env = log.clone();
    let agent = AgentProcess::spawn(dir.path().join("agent.log"), move |cmd| {
        cmd.arg("run")
            .arg(&config)
            .arg(format!("--storage.path={}", storage.display()))
            .arg("--server.http.listen-addr=127.0.0.1:0")
            .env("KUBECONFIG", kc)
            .env("LOKI_URL", url)
            .env("LOG_FILE", log_env);
    });
    let deadline = Instant::now() + WAIT;
    while lines_of(&loki, "t1") != ["before"] {
        assert!(Instant::now() < deadline, "agent log:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The operator rotates the password and moves the agent to another tenant and team;
    // the gateway takes only the new values from now on (a push with some old ones gets a
    // 401 and is retried).
    *gateway.accept.lock() = (
        basic("agent", "second"),
        Some("t2".into()),
        Some("blue".into()),
    );
    api.put("secrets", creds("second"));
    api.put("configmaps", settings("t2", "blue"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"after\n"))
        .expect("append");
    let deadline = Instant::now() + WAIT;
    while lines_of(&loki, "t2") != ["after"] {
        assert!(
            Instant::now() < deadline,
            "seen {:#?}\nagent log:\n{}",
            gateway.seen(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines_of(&loki, "t1"), ["before"]);
    // One push with the old values, one with the new.
    let accepted: Vec<Seen> = gateway
        .seen()
        .into_iter()
        .filter(|s| s.status == 204)
        .collect();
    let old = Seen {
        authorization: Some(basic("agent", "first")),
        org_id: Some("t1".into()),
        team: Some("red".into()),
        status: 204,
    };
    let new = Seen {
        authorization: Some(basic("agent", "second")),
        org_id: Some("t2".into()),
        team: Some("blue".into()),
        status: 204,
    };
    assert_eq!(accepted, vec![old, new], "{:#?}", gateway.seen());
    assert_eq!(agent.terminate().await, Some(0));
}
