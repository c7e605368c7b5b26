//! Runtime settings: one plain serde struct with units in the names and defaults in one place.
//!
//! The CLI (and later an Alloy config file) maps onto [`Settings`]; nothing here knows about clap.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How lines in a file are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// Per line: CRI if it looks like CRI, docker json-file if it starts with `{`, else plain.
    #[default]
    Auto,
    /// `<RFC3339Nano> <stdout|stderr> <P|F> <msg>` (containerd, CRI-O).
    Cri,
    /// Docker json-file `{"log":…,"stream":…,"time":…}`.
    Docker,
    /// The raw line, timestamped at read time.
    Plain,
}

/// A credential given inline or as a file. Files are read again on every request, like
/// Alloy (Prometheus' `FileSecret`), so a rotated token takes effect without a restart;
/// surrounding whitespace of a file's content is trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Default for Secret {
    fn default() -> Self {
        Secret::Inline(String::new())
    }
}

impl Secret {
    /// The current value (a file is read now).
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => Ok(std::fs::read_to_string(p)?.trim().to_string()),
        }
    }

    /// The raw bytes (PEM material: a file is read now and not trimmed).
    pub fn bytes(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Secret::Inline(s) => Ok(s.as_bytes().to_vec()),
            Secret::File(p) => std::fs::read(p),
        }
    }

    /// The file, when the secret is one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Secret::Inline(_) => None,
            Secret::File(p) => Some(p),
        }
    }
}

/// Authentication sent to Loki. A request header `Authorization` from `headers` wins over
/// it, as in Alloy (its auth round trippers skip requests that already carry one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Basic base64(user:password)` (`basic_auth`).
    Basic { username: String, password: Secret },
    /// `Authorization: <scheme> <credentials>`: `bearer_token`, `bearer_token_file` (scheme
    /// `Bearer`) and the `authorization` block.
    Credentials { scheme: String, credentials: Secret },
}

/// Lowest TLS version offered. rustls speaks only 1.2 and 1.3, so Alloy's `TLS10`/`TLS11`
/// minimums behave as `TLS12` (Go's client default minimum is 1.2 as well).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

/// `tls_config`: how https endpoints are verified and how the agent identifies itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Tls {
    /// CA certificates (PEM). When set they replace the system roots, as in Alloy
    /// (Prometheus builds a fresh pool from `ca_pem`/`ca_file`).
    pub ca: Option<Secret>,
    /// Client certificate chain (PEM), with `key`, for mutual TLS.
    pub cert: Option<Secret>,
    /// Client private key (PEM).
    pub key: Option<Secret>,
    /// Name to verify the server certificate against instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept any server certificate (still an encrypted connection).
    pub insecure_skip_verify: bool,
    pub min_version: TlsVersion,
}

impl Tls {
    /// Files whose change makes the client rebuild its TLS setup (Alloy re-reads them).
    pub fn files(&self) -> Vec<&std::path::Path> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .filter_map(|s| s.as_ref().and_then(Secret::file))
            .collect()
    }
}

/// Default `queue_config.capacity`: Alloy's 10 MiB.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10 << 20;

/// One Loki endpoint (`loki.write`'s `endpoint` block): where and how to push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    /// `name`, for logs.
    pub name: String,
    /// Full push URL.
    pub url: String,
    /// Tenant sent as `X-Scope-OrgID` when no stage chose one; empty sends none.
    pub tenant: String,
    pub headers: BTreeMap<String, String>,
    pub auth: Auth,
    pub tls: Tls,
    pub batch_bytes: usize,
    pub batch_wait: Duration,
    pub request_timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts per batch before it is dropped (0 = forever).
    pub max_retries: u32,
    pub retry_on_429: bool,
    /// Streams per batch; entries of further streams are dropped as `stream_limited`
    /// (Alloy's `max_streams`; 0 = no limit).
    pub max_streams: usize,
    /// Bytes of line data buffered for this endpoint ahead of its batcher when a
    /// `loki.write` has several endpoints (`queue_config.capacity`).
    pub queue_capacity: usize,
    /// When the buffer is full: wait (back-pressure, the default) or drop the data for this
    /// endpoint as `queue_is_full` (`queue_config.block_on_overflow = false`).
    pub block_on_overflow: bool,
    /// Follow 307/308 redirects (method and body kept), up to 10 hops.
    pub follow_redirects: bool,
}

impl Default for Endpoint {
    fn default() -> Self {
        Settings::default().endpoint_from_flat()
    }
}

impl Endpoint {
    /// The tenant for a batch queued under `tenant`: [`ENDPOINT_TENANT`] means "this
    /// endpoint's own `tenant_id`".
    pub fn tenant_for<'a>(&'a self, tenant: &'a str) -> &'a str {
        if tenant == ENDPOINT_TENANT {
            &self.tenant
        } else {
            tenant
        }
    }

    /// `host:port` of the URL (Alloy's `host` metric label).
    pub fn host(&self) -> String {
        let after = self.url.split_once("://").map_or(&*self.url, |(_, r)| r);
        let authority = after.split(['/', '?', '#']).next().unwrap_or("");
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, h)| h)
            .to_string()
    }
}

/// Tenant of queues whose entries carry no tenant of their own when a `loki.write` has
/// endpoints with different `tenant_id`s: each endpoint then sends its own. Loki tenant ids
/// cannot contain control characters, so no real tenant collides with it.
pub const ENDPOINT_TENANT: &str = "\u{1}endpoint";

/// Everything the agent needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Full push URL, e.g. `http://loki:3100/loki/api/v1/push`. A URL without a path gets
    /// `/loki/api/v1/push` appended.
    pub loki_url: String,
    /// Tenant sent as `X-Scope-OrgID`; empty sends no header.
    pub tenant: String,
    /// Optional per-namespace tenant override.
    pub namespace_tenants: BTreeMap<String, String>,
    /// Root of the kubelet pod log tree (`/var/log/pods`).
    pub pods_root: PathBuf,
    /// Docker's containers directory: on docker-runtime nodes kubelet's `N.log` files are
    /// symlinks to `<dir>/<id>/<id>-json.log`, so those may be read; `None` allows only
    /// files inside the pods root.
    pub docker_containers_dir: Option<PathBuf>,
    /// Positions file (YAML), on a hostPath in production.
    pub positions_path: PathBuf,
    /// Labels added to every stream (e.g. `cluster`).
    pub external_labels: BTreeMap<String, String>,
    /// Add the pod uid as label `pod_uid` (off: it multiplies streams on every pod restart).
    pub pod_uid_label: bool,
    /// Line format of the files.
    pub format: LineFormat,
    /// Docker records keep the `\n` that ends their `log` (Alloy's `stage.docker` does; the
    /// agent's own CLI mode strips it).
    pub docker_keep_newline: bool,
    /// Files without a stored position found at startup are read from their end.
    pub tail_from_end: bool,
    /// Promtail positions files (`legacy_positions_file`): on the first start (no positions
    /// file yet) a file they name starts at their offset (see `tail::legacy`).
    pub legacy_positions_files: Vec<PathBuf>,
    /// Longer lines (after CRI/docker joining) are truncated to this and counted.
    pub max_line_bytes: usize,
    /// Bytes read from one file in one read call (and the largest chunk handed downstream).
    pub read_bytes: usize,
    /// A batch is sent when adding the next chunk would exceed this many line bytes.
    pub batch_bytes: usize,
    /// …or when its oldest data is this old.
    pub batch_wait: Duration,
    /// Chunks queued per tenant between the tailer and the batcher (back-pressure bound).
    pub queue_chunks: usize,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Retry delay cap.
    pub max_backoff: Duration,
    /// Attempts per batch before it is dropped (0, the default = retry forever, positions
    /// held); set it only to accept loss, as Alloy's `max_backoff_retries`.
    pub max_retries: u32,
    /// Retry 429 answers (else drop them as `rate_limited`).
    pub retry_on_429: bool,
    /// Authentication.
    pub auth: Auth,
    /// Extra request headers (never override the ones the agent sets).
    pub headers: BTreeMap<String, String>,
    /// Poll interval of the tailer when no inotify event arrives.
    pub poll_interval: Duration,
    /// After a file event, the tailer waits until this long after its previous pass before
    /// reading, so the writes of that time are read in one pass (not one wake-up per write).
    pub min_read_interval: Duration,
    /// Log files kept open at once; idle ones are closed and reopened by identity
    /// (0: the soft fd limit minus a reserve, see [`crate::tail::fdlimit`]).
    pub max_open_files: usize,
    /// Full rescan of the pods root (safety net for lost inotify events).
    pub rescan_interval: Duration,
    /// How long a renamed/deleted file is kept open at EOF before it is considered finished.
    pub rotated_grace: Duration,
    /// Group commit of the positions file: a change (an acknowledgement) is written within
    /// this interval, and writes are at least this far apart. A crash re-sends at most
    /// about one interval of acknowledged data.
    pub positions_sync_interval: Duration,
    /// A positions file that does not parse is set aside (`<file>.corrupt`) and the agent
    /// starts as on a first start, instead of refusing to start.
    pub positions_reset_on_corrupt: bool,
    /// On shutdown, how long pending batches may still be pushed.
    pub drain_timeout: Duration,
    /// HTTP listen address for `/metrics`, `/-/ready`, `/-/healthy`; `None` disables it.
    pub listen: Option<SocketAddr>,
    /// TLS for an https `loki_url`.
    pub tls: Tls,
    /// Every endpoint entries go to (Alloy: `loki.write`'s `endpoint` blocks). Empty means
    /// the single endpoint described by the flat fields above (`loki_url`, `tenant`, …).
    pub endpoints: Vec<Endpoint>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            loki_url: "http://127.0.0.1:3100/loki/api/v1/push".into(),
            tenant: String::new(),
            namespace_tenants: BTreeMap::new(),
            pods_root: PathBuf::from("/var/log/pods"),
            docker_containers_dir: Some(PathBuf::from("/var/lib/docker/containers")),
            positions_path: PathBuf::from("/var/lib/agent/positions.yaml"),
            external_labels: BTreeMap::new(),
            pod_uid_label: false,
            format: LineFormat::Auto,
            docker_keep_newline: false,
            tail_from_end: false,
            legacy_positions_files: Vec::new(),
            // Loki's default max_line_size.
            max_line_bytes: 256 * 1024,
            read_bytes: 256 * 1024,
            batch_bytes: 1024 * 1024,
            batch_wait: Duration::from_secs(1),
            queue_chunks: 16,
            request_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            // No loss by default: retry until Loki takes the batch (Alloy's default is 10).
            max_retries: 0,
            retry_on_429: true,
            auth: Auth::None,
            headers: BTreeMap::new(),
            poll_interval: Duration::from_millis(250),
            min_read_interval: Duration::from_millis(100),
            max_open_files: 0,
            rescan_interval: Duration::from_secs(5),
            rotated_grace: Duration::from_secs(2),
            positions_sync_interval: Duration::from_millis(100),
            positions_reset_on_corrupt: false,
            drain_timeout: Duration::from_secs(15),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 12345))),
            tls: Tls::default(),
            endpoints: Vec::new(),
        }
    }
}

impl Settings {
    /// The push URL with Loki's push path added when only a base URL was given.
    pub fn push_url(&self) -> String {
        push_url(&self.loki_url)
    }

    /// The endpoints to push to: [`Settings::endpoints`], or the flat fields as one.
    pub fn endpoint_list(&self) -> Vec<Endpoint> {
        if self.endpoints.is_empty() {
            vec![self.endpoint_from_flat()]
        } else {
            self.endpoints.clone()
        }
    }

    fn endpoint_from_flat(&self) -> Endpoint {
        Endpoint {
            name: String::new(),
            url: self.push_url(),
            tenant: self.tenant.clone(),
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            batch_bytes: self.batch_bytes,
            batch_wait: self.batch_wait,
            request_timeout: self.request_timeout,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            max_retries: self.max_retries,
            retry_on_429: self.retry_on_429,
            max_streams: 0,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            block_on_overflow: true,
            follow_redirects: true,
        }
    }

    /// The tenant for a namespace.
    pub fn tenant_for(&self, namespace: &str) -> &str {
        self.namespace_tenants
            .get(namespace)
            .map(String::as_str)
            .unwrap_or(&self.tenant)
    }
}

/// `url` with Loki's push path added when only a base URL (no path) was given.
pub fn push_url(url: &str) -> String {
    let u = url.trim_end_matches('/');
    let after_scheme = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
    if after_scheme.contains('/') {
        u.to_string()
    } else {
        format!("{u}/loki/api/v1/push")
    }
}

/// Parses durations like `250ms`, `1s`, `5m`, `1h`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Parses byte sizes like `1MiB`, `512KiB`, `1MB`, `1048576` (base-2 for the `i` forms and
/// for bare `K`/`M`/`G`, like Alloy).
pub fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "Ki" | "k" => 1 << 10,
        "MiB" | "M" | "Mi" => 1 << 20,
        "GiB" | "G" | "Gi" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_go_style_units() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn sizes_parse_base_two() {
        assert_eq!(parse_bytes("1MiB"), Some(1 << 20));
        assert_eq!(parse_bytes("512KiB"), Some(512 << 10));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("1MB"), Some(1_000_000));
        assert_eq!(parse_bytes("1XB"), None);
    }

    #[test]
    fn push_url_appends_path_to_bare_base_url() {
        let mut s = Settings {
            loki_url: "http://127.0.0.1:3100".into(),
            ..Settings::default()
        };
        assert_eq!(s.push_url(), "http://127.0.0.1:3100/loki/api/v1/push");
        s.loki_url = "http://h:1/custom/push".into();
        assert_eq!(s.push_url(), "http://h:1/custom/push");
    }
}
