//! `remote.kubernetes.secret` / `remote.kubernetes.configmap`: placeholders at `agent check`,
//! and at run time the objects fetched from a Kubernetes API (a local HTTP server standing in
//! for it, reached through a kubeconfig) feeding `loki.write` credentials.

use std::net::SocketAddr;
use std::sync::Arc;

use agent::alloy::components::remote::Fetched;
use agent::alloy::{check_source, load, Scope};
use agent::config::{Auth, Secret};
use parking_lot::Mutex;
use tokio::net::TcpListener;

const CONFIG: &str = r#"remote.kubernetes.secret "creds" {
  namespace = "monitoring"
  name      = "loki-creds"
  client {
    kubeconfig_file = sys.env("TEST_KUBECONFIG")
  }
}

remote.kubernetes.configmap "settings" {
  namespace      = "monitoring"
  name           = "loki-settings"
  poll_frequency = "30s"
  client {
    kubeconfig_file = sys.env("TEST_KUBECONFIG")
  }
}

loki.source.file "pods" {
  targets    = [{"__path__" = "/var/log/pods/*/*/*.log"}]
  forward_to = [loki.write.default.receiver]
}

loki.write "default" {
  endpoint {
    url       = "http://127.0.0.1:3100/loki/api/v1/push"
    tenant_id = remote.kubernetes.configmap.settings.data["tenant"]
    basic_auth {
      username = convert.nonsensitive(remote.kubernetes.secret.creds.data["username"])
      password = remote.kubernetes.secret.creds.data.password
    }
  }
}
"#;

fn scope(kubeconfig: &str) -> Scope {
    let k = kubeconfig.to_string();
    Scope::with_env(move |v| (v == "TEST_KUBECONFIG").then(|| k.clone()))
}

fn basic(plan: &agent::alloy::Plan) -> (String, String, String) {
    let ep = &plan.writers[0].endpoints[0];
    match &ep.auth {
        Auth::Basic {
            username,
            password: Secret::Inline(p),
        } => (username.clone(), p.clone(), ep.tenant.clone()),
        other => panic!("unexpected auth {other:?}"),
    }
}

#[test]
fn check_uses_placeholders_and_says_so() {
    let plan = check_source("r.alloy", CONFIG, scope("/nonexistent/kubeconfig"))
        .unwrap_or_else(|d| panic!("{}", d.render(CONFIG)));
    assert_eq!(
        basic(&plan),
        (
            "placeholder-loki-creds-username".to_string(),
            "placeholder-loki-creds-password".to_string(),
            "placeholder-loki-settings-tenant".to_string()
        )
    );
    let specs: Vec<(&str, &str, &str)> = plan
        .remotes
        .iter()
        .map(|r| (r.id.as_str(), r.namespace.as_str(), r.name.as_str()))
        .collect();
    assert_eq!(
        specs,
        vec![
            (
                "remote.kubernetes.configmap.settings",
                "monitoring",
                "loki-settings"
            ),
            ("remote.kubernetes.secret.creds", "monitoring", "loki-creds"),
        ]
    );
    assert!(
        plan.notes.iter().any(|n| n
            == "remote.kubernetes.configmap.settings, remote.kubernetes.secret.creds: not read from the Kubernetes API by `agent check`; their data values are placeholders"),
        "{:#?}",
        plan.notes
    );
}

/// Requests the fake API server saw (method and path).
type Seen = Arc<Mutex<Vec<String>>>;

/// A Kubernetes API stand-in serving one Secret and one ConfigMap; 404 for anything else.
async fn fake_api() -> (SocketAddr, Seen) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let path = req.uri().path().to_string();
                    s.lock().push(format!("{} {path}", req.method()));
                    // "alice" / "s3cret:x" base64-encoded, as the API returns Secret data.
                    let (status, body) = match path.as_str() {
                        "/api/v1/namespaces/monitoring/secrets/loki-creds" => (
                            200,
                            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"loki-creds","namespace":"monitoring"},"type":"Opaque","data":{"username":"YWxpY2U=","password":"czNjcmV0Ong="}}"#,
                        ),
                        "/api/v1/namespaces/monitoring/configmaps/loki-settings" => (
                            200,
                            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"loki-settings","namespace":"monitoring"},"data":{"tenant":"team-a"}}"#,
                        ),
                        _ => (
                            404,
                            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"not found","reason":"NotFound","code":404}"#,
                        ),
                    };
                    async move {
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                body.as_bytes(),
                            )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn kubeconfig(dir: &std::path::Path, addr: SocketAddr) -> String {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\n    namespace: monitoring\ncurrent-context: fake\nusers:\n- name: u\n  user:\n    token: t\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path.display().to_string()
}

#[tokio::test]
async fn run_time_fetch_fills_the_writer_credentials_from_the_api() {
    let (addr, seen) = fake_api().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = kubeconfig(dir.path(), addr);
    let first = check_source("r.alloy", CONFIG, scope(&kc)).expect("check");
    let fetched: Fetched = agent::k8s::remote::fetch(&first.remotes)
        .await
        .expect("fetch from the fake API");
    let plan = load::load_with("r.alloy", CONFIG, scope(&kc), &fetched)
        .unwrap_or_else(|d| panic!("{}", d.render(CONFIG)));
    assert_eq!(
        basic(&plan),
        (
            "alice".to_string(),
            "s3cret:x".to_string(),
            "team-a".to_string()
        )
    );
    assert!(
        !plan.notes.iter().any(|n| n.contains("placeholders")),
        "{:#?}",
        plan.notes
    );
    let mut got = seen.lock().clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            "GET /api/v1/namespaces/monitoring/configmaps/loki-settings".to_string(),
            "GET /api/v1/namespaces/monitoring/secrets/loki-creds".to_string(),
        ]
    );
}

#[tokio::test]
async fn a_missing_object_is_a_clear_startup_error() {
    let (addr, _seen) = fake_api().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = kubeconfig(dir.path(), addr);
    let src = CONFIG.replace("\"loki-creds\"", "\"gone\"");
    let first = check_source("r.alloy", &src, scope(&kc)).expect("check");
    let err = agent::k8s::remote::fetch(&first.remotes)
        .await
        .expect_err("a missing secret must fail");
    let msg = err.to_string();
    assert!(
        msg.starts_with("Kubernetes client configuration: remote.kubernetes.secret.creds: reading monitoring/gone: "),
        "{msg}"
    );
    assert!(msg.contains("not found"), "{msg}");
}
