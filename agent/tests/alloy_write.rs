//! `loki.write` beyond one plain-HTTP endpoint, run in-process from Alloy configs: https
//! through a TLS-terminating proxy in front of fake-loki (CA, wrong CA, mutual TLS), every
//! auth form against a header recorder, and two endpoints where positions advance only
//! after both acknowledged.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::alloy::{check_source, Plan, Scope};
use common::{until, Running};
use fake_loki::{Config, FakeLoki, FaultRule};
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod common;

const TENANT: &str = "t";

/// A CA and a certificate it issued for 127.0.0.1 (server or client alike).
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS-terminating TCP proxy to `backend`; counts handshakes that failed and succeeded.
struct TlsProxy {
    addr: SocketAddr,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_proxy(server: &Pki, client_ca: Option<&str>, backend: SocketAddr) -> TlsProxy {
    let chain = vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
                .unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(v)
        }
    };
    let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (ok2, failed2) = (ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let (ok, failed) = (ok2.clone(), failed2.clone());
            tokio::spawn(async move {
                match acceptor.accept(sock).await {
                    Ok(mut tls) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut b) = TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut b).await;
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    TlsProxy {
        addr,
        ok,
        failed,
        task,
    }
}

/// A temp dir with one plain log file the config tails.
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

    fn log(&self) -> PathBuf {
        self.dir.path().join("logs").join("app.log")
    }

    fn positions(&self) -> PathBuf {
        self.dir.path().join("positions.yaml")
    }

    fn append(&self, from: usize, n: usize) {
        std::fs::create_dir_all(self.log().parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut s = String::new();
        for i in from..from + n {
            s.push_str(&format!("line {i}\n"));
        }
        f.write_all(s.as_bytes()).unwrap();
    }

    fn size(&self) -> u64 {
        std::fs::metadata(self.log()).map_or(0, |m| m.len())
    }

    /// The acknowledged offset of the log file in the positions file (0 when absent).
    fn acked(&self) -> u64 {
        let Ok(text) = std::fs::read_to_string(self.positions()) else {
            return 0;
        };
        let v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let key = self.log().display().to_string();
        v.get("positions")
            .and_then(|p| p.get(key.as_str()))
            .and_then(|o| o.as_str())
            .and_then(|o| o.parse().ok())
            .unwrap_or(0)
    }

    /// The config: this node's log file → `loki.write "w" { <write_body> }`.
    fn config(&self, write_body: &str) -> String {
        format!(
            r#"loki.source.file "f" {{
  targets    = [{{"__path__" = "{}/*.log", job = "app"}}]
  forward_to = [loki.write.w.receiver]
}}
loki.write "w" {{
{write_body}
}}
"#,
            self.log().parent().unwrap().display()
        )
    }
}

/// An endpoint block with fast test timings; `extra` goes inside it.
fn endpoint(url: &str, extra: &str) -> String {
    format!(
        r#"  endpoint {{
    url                 = "{url}"
    tenant_id           = "{TENANT}"
    batch_wait          = "50ms"
    min_backoff_period  = "20ms"
    max_backoff_period  = "200ms"
    max_backoff_retries = 0
{extra}
  }}"#
    )
}

fn load(src: &str) -> Plan {
    check_source("w.alloy", src, Scope::with_env(|_| None))
        .unwrap_or_else(|d| panic!("{}", d.render(src)))
}

/// The plan run in-process on `node`, with `drain` to deliver what is pending at stop.
fn run(plan: Plan, node: &Node, drain: Duration) -> Running {
    Running::start(plan, node.positions(), |s| s.drain_timeout = drain)
}

/// line → count of what `loki` stored for the tenant.
fn received(loki: &FakeLoki) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in loki.entries(TENANT) {
        *m.entry(e.line).or_default() += 1;
    }
    m
}

fn lines(from: usize, n: usize) -> BTreeMap<String, usize> {
    (from..from + n).map(|i| (format!("line {i}"), 1)).collect()
}

fn raw(s: &str) -> String {
    format!("`{s}`")
}

#[tokio::test]
async fn https_endpoint_with_ca_pem_ships_every_line_through_a_tls_proxy() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let server = pki();
    let proxy = tls_proxy(&server, None, loki.addr()).await;
    let node = Node::new();
    node.append(0, 200);
    let url = format!("https://127.0.0.1:{}/loki/api/v1/push", proxy.addr.port());
    let tls = format!(
        "    tls_config {{\n      ca_pem = {}\n    }}",
        raw(&server.ca_pem)
    );
    let plan = load(&node.config(&endpoint(&url, &tls)));
    let agent = run(plan, &node, Duration::from_secs(5));
    until("200 lines over https", || received(&loki).len() == 200).await;
    until("positions at the end of the file", || {
        node.acked() == node.size()
    })
    .await;
    agent.stop().await;
    assert_eq!(received(&loki), lines(0, 200));
    assert!(proxy.ok.load(Ordering::SeqCst) >= 1);
    assert_eq!(proxy.failed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wrong_ca_fails_to_connect_retries_and_keeps_positions_until_the_right_ca_is_used() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let server = pki();
    let other = pki();
    let proxy = tls_proxy(&server, None, loki.addr()).await;
    let node = Node::new();
    node.append(0, 50);
    let url = format!("https://127.0.0.1:{}/loki/api/v1/push", proxy.addr.port());
    let with_ca = |ca: &str| {
        let tls = format!("    tls_config {{\n      ca_pem = {}\n    }}", raw(ca));
        load(&node.config(&endpoint(&url, &tls)))
    };

    let agent = run(with_ca(&other.ca_pem), &node, Duration::from_millis(300));
    until("three refused handshakes (retries)", || {
        proxy.failed.load(Ordering::SeqCst) >= 3
    })
    .await;
    agent.stop().await;
    assert_eq!(proxy.ok.load(Ordering::SeqCst), 0);
    assert!(received(&loki).is_empty());
    assert_eq!(node.acked(), 0, "nothing acknowledged, nothing skipped");

    // The same node with the right CA: every line arrives once.
    node.append(50, 10);
    let agent = run(with_ca(&server.ca_pem), &node, Duration::from_secs(5));
    until("60 lines", || received(&loki).len() == 60).await;
    until("positions at the end", || node.acked() == node.size()).await;
    agent.stop().await;
    assert_eq!(received(&loki), lines(0, 60));
}

#[tokio::test]
async fn mutual_tls_sends_the_client_certificate_and_fails_without_it() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let server = pki();
    let client = pki();
    let proxy = tls_proxy(&server, Some(&client.ca_pem), loki.addr()).await;
    let node = Node::new();
    node.append(0, 20);
    let url = format!("https://127.0.0.1:{}/loki/api/v1/push", proxy.addr.port());

    // Without a client certificate the server refuses the handshake.
    let tls = format!(
        "    tls_config {{\n      ca_pem = {}\n    }}",
        raw(&server.ca_pem)
    );
    let agent = run(
        load(&node.config(&endpoint(&url, &tls))),
        &node,
        Duration::from_millis(300),
    );
    until("a refused handshake", || {
        proxy.failed.load(Ordering::SeqCst) >= 2
    })
    .await;
    agent.stop().await;
    assert!(received(&loki).is_empty());

    // With it (files this time, as Kubernetes secrets are mounted).
    let dir = node.dir.path();
    for (f, pem) in [
        ("ca.pem", &server.ca_pem),
        ("tls.crt", &client.cert_pem),
        ("tls.key", &client.key_pem),
    ] {
        std::fs::write(dir.join(f), pem).unwrap();
    }
    let tls = format!(
        "    tls_config {{\n      ca_file = \"{}\"\n      cert_file = \"{}\"\n      key_file = \"{}\"\n      min_version = \"TLS13\"\n    }}",
        dir.join("ca.pem").display(),
        dir.join("tls.crt").display(),
        dir.join("tls.key").display()
    );
    let agent = run(
        load(&node.config(&endpoint(&url, &tls))),
        &node,
        Duration::from_secs(5),
    );
    until("20 lines over mTLS", || received(&loki).len() == 20).await;
    agent.stop().await;
    assert_eq!(received(&loki), lines(0, 20));
}

/// Push requests seen by [`recorder`]: (path, Authorization, X-Scope-OrgID).
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// A tiny HTTP server that records the auth headers of every request and answers 204.
async fn recorder() -> (SocketAddr, Seen, JoinHandle<()>) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    s.lock().push((
                        req.uri().path().to_string(),
                        h("authorization"),
                        h("x-scope-orgid"),
                    ));
                    async {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(204)
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (addr, seen, task)
}

#[tokio::test]
async fn every_auth_form_sends_alloys_header_and_files_are_read_per_request() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug,hyper=info,h2=info")
        .with_test_writer()
        .try_init();
    let (addr, seen, _server) = recorder().await;
    let node = Node::new();
    let dir = node.dir.path();
    std::fs::write(dir.join("token"), "one\n").unwrap();
    std::fs::write(dir.join("password"), "s3cret").unwrap();
    std::fs::write(dir.join("creds"), "abc").unwrap();
    let u = |p: &str| format!("http://{addr}/{p}");
    let d = |f: &str| dir.join(f).display().to_string();
    let body = [
        endpoint(&u("token-file"), &format!("    bearer_token_file = \"{}\"", d("token"))),
        endpoint(&u("token"), "    bearer_token = \"tok\""),
        endpoint(
            &u("basic-file"),
            &format!("    basic_auth {{\n      username = \"u\"\n      password_file = \"{}\"\n    }}", d("password")),
        ),
        endpoint(
            &u("authz"),
            &format!("    authorization {{\n      type = \"Custom\"\n      credentials_file = \"{}\"\n    }}", d("creds")),
        ),
        endpoint(&u("authz-default"), "    authorization {\n      credentials = \"xyz\"\n    }"),
        // A user Authorization header wins over configured auth (Alloy's round trippers
        // skip requests that carry one); X-Scope-OrgID never overrides the tenant.
        endpoint(
            &u("header"),
            "    bearer_token = \"ignored\"\n    headers = { \"Authorization\" = \"Raw 1\", \"X-Scope-OrgID\" = \"evil\" }",
        ),
        // Without a tenant_id the header is the tenant (Alloy adds custom headers whose key
        // the client left unset).
        endpoint(
            &u("header-tenant"),
            "    headers = { \"X-Scope-OrgID\" = \"from-header\" }",
        )
        .replace(&format!("    tenant_id           = \"{TENANT}\"\n"), ""),
    ]
    .join("\n");
    let plan = load(&node.config(&body));
    node.append(0, 1);
    let agent = run(plan, &node, Duration::from_secs(5));
    let by_path = |p: &str| -> Vec<(Option<String>, Option<String>)> {
        seen.lock()
            .iter()
            .filter(|(path, _, _)| path == p)
            .map(|(_, a, t)| (a.clone(), t.clone()))
            .collect()
    };
    until("one push per endpoint", || {
        [
            "/token-file",
            "/token",
            "/basic-file",
            "/authz",
            "/authz-default",
            "/header",
            "/header-tenant",
        ]
        .iter()
        .all(|p| !by_path(p).is_empty())
    })
    .await;
    let t = Some(TENANT.to_string());
    let s = |v: &str| Some(v.to_string());
    let table = [
        ("/token-file", s("Bearer one")),
        ("/token", s("Bearer tok")),
        // base64("u:s3cret")
        ("/basic-file", s("Basic dTpzM2NyZXQ=")),
        ("/authz", s("Custom abc")),
        ("/authz-default", s("Bearer xyz")),
        ("/header", s("Raw 1")),
    ];
    for (path, auth) in &table {
        assert_eq!(by_path(path), vec![(auth.clone(), t.clone())], "{path}");
    }
    assert_eq!(by_path("/header-tenant"), vec![(None, s("from-header"))]);
    // A rotated token is used by the next request without a restart.
    std::fs::write(dir.join("token"), "two").unwrap();
    node.append(1, 1);
    until("a second push with the new token", || {
        by_path("/token-file").len() == 2
    })
    .await;
    assert_eq!(by_path("/token-file")[1], (s("Bearer two"), t.clone()));
    agent.stop().await;
}

#[tokio::test]
async fn two_endpoints_each_get_every_line_and_positions_wait_for_the_failing_one() {
    let a = FakeLoki::start(Config::for_tests()).await.unwrap();
    let b = FakeLoki::start(Config::for_tests()).await.unwrap();
    b.faults().add(FaultRule::status(503)).unwrap();
    let faults_b = || -> u64 {
        b.state()
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("loki_fake_faults_applied"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let node = Node::new();
    node.append(0, 300);
    let body = [
        endpoint(&format!("{}/loki/api/v1/push", a.url()), "    name = \"a\""),
        endpoint(&format!("{}/loki/api/v1/push", b.url()), "    name = \"b\""),
    ]
    .join("\n");
    let plan = load(&node.config(&body));
    assert_eq!(plan.settings.endpoints.len(), 2);
    let agent = run(plan, &node, Duration::from_secs(5));
    until("a has every line while b fails", || {
        received(&a).len() == 300
    })
    .await;
    let before = faults_b();
    until("b retried three more times", || faults_b() >= before + 3).await;
    assert_eq!(
        node.acked(),
        0,
        "b has not acknowledged: the position must not move"
    );
    assert!(received(&b).is_empty());

    b.faults().clear();
    node.append(300, 100);
    until("b caught up", || received(&b).len() == 400).await;
    until("a has the new lines too", || received(&a).len() == 400).await;
    until("positions at the end", || node.acked() == node.size()).await;
    agent.stop().await;
    assert_eq!(received(&a), lines(0, 400));
    assert_eq!(received(&b), lines(0, 400));
}

/// One config problem per row: the endpoint's extra lines and the expected message at
/// `line:col` of the generated config.
#[test]
fn endpoint_validation_matches_alloys_messages() {
    let node = Node::new();
    let missing = node.dir.path().join("nope.pem").display().to_string();
    let rows: &[(&str, &str)] = &[
        (
            "    bearer_token = \"a\"\n    basic_auth {\n      username = \"u\"\n    }",
            "6:3 at most one of basic_auth, authorization, oauth2, bearer_token & bearer_token_file must be configured",
        ),
        (
            "    basic_auth {\n      password = \"p\"\n      password_file = \"/f\"\n    }",
            "15:7 at most one of basic_auth password & password_file must be configured",
        ),
        (
            "    authorization {\n      type = \"Basic\"\n    }",
            "14:7 authorization type cannot be set to \"basic\", use \"basic_auth\" block instead",
        ),
        (
            "    authorization {\n      credentials = \"c\"\n      credentials_file = \"/f\"\n    }",
            "15:7 at most one of authorization credentials & credentials_file must be configured",
        ),
        (
            "    tls_config {\n      min_version = \"TLS14\"\n    }",
            "14:7 unknown TLS version: TLS14",
        ),
    ];
    for (extra, want) in rows {
        let src = node.config(&endpoint("https://127.0.0.1:1/loki/api/v1/push", extra));
        let d = check_source("w.alloy", &src, Scope::with_env(|_| None)).expect_err(want);
        let got: Vec<String> = d
            .iter()
            .map(|d| format!("{}:{} {}", d.pos.line, d.pos.col, d.message))
            .collect();
        assert!(
            got.iter().any(|g| g == want),
            "want {want:?}\ngot {got:#?}\n{src}"
        );
    }
    // Files are read at load: a missing CA names the attribute's position and the path.
    let src = node.config(&endpoint(
        "https://127.0.0.1:1/loki/api/v1/push",
        &format!("    tls_config {{\n      ca_file = \"{missing}\"\n    }}"),
    ));
    let d = check_source("w.alloy", &src, Scope::with_env(|_| None)).expect_err("missing CA");
    assert!(
        d.iter()
            .any(|d| d.pos.line == 14 && d.pos.col == 7 && d.message.contains(&missing)),
        "{:#?}",
        d.iter().map(|d| &d.message).collect::<Vec<_>>()
    );
    // Duplicate names.
    let two = [
        endpoint("http://127.0.0.1:1/a", "    name = \"x\""),
        endpoint("http://127.0.0.1:1/b", "    name = \"x\""),
    ]
    .join("\n");
    let d = check_source("w.alloy", &node.config(&two), Scope::with_env(|_| None))
        .expect_err("duplicate");
    assert!(d
        .iter()
        .any(|d| d.message == "duplicate endpoint name \"x\""));
}

#[test]
fn wal_queue_config_and_max_streams_are_accepted_with_notes() {
    let node = Node::new();
    let mut body = endpoint(
        "http://127.0.0.1:1/loki/api/v1/push",
        "    enable_http2 = false\n    follow_redirects = false\n    queue_config {\n      capacity = \"1MiB\"\n      min_shards = 4\n      drain_timeout = \"30s\"\n      block_on_overflow = false\n    }",
    );
    body.push_str("\n  max_streams = 2\n  wal {\n    enabled = true\n  }");
    let plan = load(&node.config(&body));
    let ep = &plan.settings.endpoints[0];
    assert_eq!(ep.max_streams, 2);
    assert_eq!(ep.queue_capacity, 1 << 20);
    assert!(!ep.block_on_overflow);
    assert!(!ep.follow_redirects);
    assert_eq!(plan.settings.drain_timeout, Duration::from_secs(30));
    assert!(
        plan.notes.iter().any(|n| n.contains("wal is accepted")),
        "{:?}",
        plan.notes
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("min_shards = 4")),
        "{:?}",
        plan.notes
    );
    let bad_wal =
        endpoint("http://127.0.0.1:1/p", "") + "\n  wal {\n    min_read_frequency = \"2s\"\n  }";
    let d = check_source("w.alloy", &node.config(&bad_wal), Scope::with_env(|_| None))
        .expect_err("wal frequencies");
    assert!(d
        .iter()
        .any(|d| d.message == "WAL min read frequency should be lower than max read frequency"));
}

/// CLI mode: `--loki-url https://…` with a CA file (the same Settings the flags build).
#[tokio::test]
async fn cli_settings_push_over_https_with_a_ca_file() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let server = pki();
    let proxy = tls_proxy(&server, None, loki.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let pods = dir.path().join("pods");
    let c = pods.join("ns_pod_uid-1").join("c");
    std::fs::create_dir_all(&c).unwrap();
    let mut log = String::new();
    for i in 0..10 {
        log.push_str(&format!(
            "2024-01-01T00:00:0{i}.000000000Z stdout F line {i}\n"
        ));
    }
    std::fs::write(c.join("0.log"), log).unwrap();
    let settings = agent::Settings {
        loki_url: format!("https://127.0.0.1:{}", proxy.addr.port()),
        tenant: TENANT.into(),
        pods_root: pods.clone(),
        positions_path: dir.path().join("positions.yaml"),
        tls: agent::config::Tls {
            ca: Some(agent::config::Secret::File(ca)),
            ..Default::default()
        },
        batch_wait: Duration::from_millis(50),
        poll_interval: Duration::from_millis(20),
        listen: None,
        ..agent::Settings::default()
    };
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(agent::run_with(
        settings,
        Box::new(agent::discovery::PodLogs::new(pods, false)),
        None,
        async {
            let _ = rx.await;
        },
    ));
    until("10 lines over https", || received(&loki).len() == 10).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(received(&loki), lines(0, 10));
}
