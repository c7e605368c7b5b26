//! Shared helpers: a temp pods root per test, fake-loki, an in-process agent, CRI writers
//! and the exactly-once assertion.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::config::Settings;
use agent::discovery::PodLogs;
use fake_loki::{Config, FakeLoki, StoredEntry};
use tokio::sync::oneshot;

pub const TENANT: &str = "team-a";
pub const WAIT: Duration = Duration::from_secs(30);

/// One test's world: temp dir, pods root, positions file and a fake Loki.
pub struct World {
    pub dir: tempfile::TempDir,
    pub loki: FakeLoki,
}

impl World {
    pub async fn new() -> World {
        Self::with_config(Config::for_tests()).await
    }

    pub async fn with_config(config: Config) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pods")).expect("pods root");
        let loki = FakeLoki::start(config).await.expect("fake-loki");
        World { dir, loki }
    }

    pub fn pods_root(&self) -> PathBuf {
        self.dir.path().join("pods")
    }

    pub fn positions(&self) -> PathBuf {
        self.dir.path().join("state").join("positions.yaml")
    }

    /// Fast settings for tests: short waits and backoffs.
    pub fn settings(&self) -> Settings {
        settings_for(&self.loki.url(), &self.pods_root(), &self.positions())
    }

    /// A container log directory `<ns>_<pod>_uid-<pod>/<container>/`.
    pub fn container(&self, ns: &str, pod: &str, container: &str) -> Container {
        let dir = self
            .pods_root()
            .join(format!("{ns}_{pod}_uid-{pod}"))
            .join(container);
        std::fs::create_dir_all(&dir).expect("container dir");
        Container {
            dir,
            labels: format!(
                r#"{{cluster="test", container="{container}", namespace="{ns}", pod="{pod}", stream="stdout"}}"#
            ),
        }
    }

    pub fn entries(&self) -> Vec<StoredEntry> {
        self.loki.entries(TENANT)
    }

    /// Polls until `n` entries are stored (or panics after [`WAIT`]).
    pub async fn wait_entries(&self, n: usize) -> Vec<StoredEntry> {
        let deadline = Instant::now() + WAIT;
        loop {
            let e = self.entries();
            if e.len() >= n {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "timed out: {} of {n} entries arrived",
                e.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn settings_for(url: &str, pods_root: &Path, positions: &Path) -> Settings {
    Settings {
        loki_url: url.to_string(),
        tenant: TENANT.into(),
        pods_root: pods_root.to_path_buf(),
        positions_path: positions.to_path_buf(),
        external_labels: BTreeMap::from([("cluster".to_string(), "test".to_string())]),
        batch_wait: Duration::from_millis(50),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retries: 0,
        poll_interval: Duration::from_millis(20),
        rescan_interval: Duration::from_millis(100),
        rotated_grace: Duration::from_millis(300),
        positions_sync_interval: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(10),
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Settings::default()
    }
}

/// A container's log directory and the label string its stdout stream gets.
pub struct Container {
    pub dir: PathBuf,
    pub labels: String,
}

impl Container {
    pub fn log(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{n}.log"))
    }

    pub fn append(&self, n: u32, data: &[u8]) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(n))
            .expect("open log");
        f.write_all(data).expect("append");
    }
}

/// A CRI line whose timestamp is derived from `i` (so re-sent lines de-duplicate).
pub fn cri(i: u64, stream: &str, tag: &str, msg: &str) -> String {
    format!(
        "2024-05-01T10:{:02}:{:02}.{:09}Z {stream} {tag} {msg}\n",
        (i / 1_000_000_000 / 60) % 60,
        (i / 1_000_000_000) % 60,
        i % 1_000_000_000
    )
}

/// `count` CRI stdout lines `line-<i>` starting at index `from`.
pub fn cri_lines(from: u64, count: u64) -> String {
    let mut s = String::new();
    for i in from..from + count {
        s.push_str(&cri(i, "stdout", "F", &format!("line-{i}")));
    }
    s
}

pub fn expected_lines(from: u64, count: u64) -> Vec<String> {
    (from..from + count).map(|i| format!("line-{i}")).collect()
}

/// Asserts the stored entries are exactly `want` (labels → lines in order): every line
/// once, nothing else, in order per stream.
pub fn assert_exactly(got: &[StoredEntry], want: &[(&str, Vec<String>)]) {
    let mut by_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in got {
        by_stream
            .entry(e.labels.to_string())
            .or_default()
            .push(e.line.clone());
    }
    let want: BTreeMap<String, Vec<String>> = want
        .iter()
        .map(|(l, v)| (l.to_string(), v.clone()))
        .collect();
    assert_eq!(
        by_stream.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "streams differ"
    );
    for (labels, lines) in &want {
        let g = &by_stream[labels];
        if g != lines {
            let missing = lines.iter().filter(|l| !g.contains(l)).count();
            let mut seen = std::collections::HashSet::new();
            let dups = g.iter().filter(|l| !seen.insert(*l)).count();
            panic!(
                "stream {labels}: got {} lines, want {} ({missing} missing, {dups} duplicated); first got {:?}",
                g.len(),
                lines.len(),
                g.iter().take(3).collect::<Vec<_>>()
            );
        }
    }
}

/// An agent running in-process.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
    pub http: SocketAddr,
}

impl Running {
    pub async fn start(settings: Settings) -> Running {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = oneshot::channel();
        let discovery = Box::new(PodLogs::new(
            settings.pods_root.clone(),
            settings.pod_uid_label,
        ));
        let task = tokio::spawn(agent::run_with(
            settings,
            discovery,
            Some(bound_tx),
            async {
                let _ = stop_rx.await;
            },
        ));
        let http = bound_rx.await.expect("agent http listener");
        Running {
            stop: Some(stop_tx),
            task,
            http,
        }
    }

    /// Graceful stop (the SIGTERM path).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = (&mut self.task).await.expect("agent task");
        r.expect("agent run");
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await
    }
}

/// A tiny HTTP/1.0 GET (keeps the tests free of client plumbing).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// The value of a metric line starting with `prefix` (summed over matches).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Gzips `src` to `dst` and removes `src`, like the kubelet.
pub fn gzip_and_remove(src: &Path, dst: &Path) {
    let data = std::fs::read(src).expect("read rotated");
    let f = File::create(dst).expect("create gz");
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    enc.write_all(&data).expect("gz write");
    enc.finish()
        .expect("gz finish")
        .sync_all()
        .expect("sync gz");
    std::fs::remove_file(src).expect("remove rotated");
}
