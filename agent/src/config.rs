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

/// Authentication sent to Loki.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Basic base64(user:password)`.
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
}

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
    /// Positions file (YAML), on a hostPath in production.
    pub positions_path: PathBuf,
    /// Labels added to every stream (e.g. `cluster`).
    pub external_labels: BTreeMap<String, String>,
    /// Add the pod uid as label `pod_uid` (off: it multiplies streams on every pod restart).
    pub pod_uid_label: bool,
    /// Line format of the files.
    pub format: LineFormat,
    /// Files without a stored position found at startup are read from their end.
    pub tail_from_end: bool,
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
    /// Attempts per batch before it is dropped (0 = retry forever), like Alloy's `max_backoff_retries`.
    pub max_retries: u32,
    /// Retry 429 answers (else drop them as `rate_limited`).
    pub retry_on_429: bool,
    /// Authentication.
    pub auth: Auth,
    /// Extra request headers (never override the ones the agent sets).
    pub headers: BTreeMap<String, String>,
    /// Poll interval of the tailer when no inotify event arrives.
    pub poll_interval: Duration,
    /// Full rescan of the pods root (safety net for lost inotify events).
    pub rescan_interval: Duration,
    /// How long a renamed/deleted file is kept open at EOF before it is considered finished.
    pub rotated_grace: Duration,
    /// How often positions are written to disk.
    pub positions_sync_interval: Duration,
    /// On shutdown, how long pending batches may still be pushed.
    pub drain_timeout: Duration,
    /// HTTP listen address for `/metrics`, `/-/ready`, `/-/healthy`; `None` disables it.
    pub listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            loki_url: "http://127.0.0.1:3100/loki/api/v1/push".into(),
            tenant: String::new(),
            namespace_tenants: BTreeMap::new(),
            pods_root: PathBuf::from("/var/log/pods"),
            positions_path: PathBuf::from("/var/lib/agent/positions.yaml"),
            external_labels: BTreeMap::new(),
            pod_uid_label: false,
            format: LineFormat::Auto,
            tail_from_end: false,
            // Loki's default max_line_size.
            max_line_bytes: 256 * 1024,
            read_bytes: 256 * 1024,
            batch_bytes: 1024 * 1024,
            batch_wait: Duration::from_secs(1),
            queue_chunks: 16,
            request_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            max_retries: 10,
            retry_on_429: true,
            auth: Auth::None,
            headers: BTreeMap::new(),
            poll_interval: Duration::from_millis(250),
            rescan_interval: Duration::from_secs(5),
            rotated_grace: Duration::from_secs(2),
            positions_sync_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(15),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 12345))),
        }
    }
}

impl Settings {
    /// The push URL with Loki's push path added when only a base URL was given.
    pub fn push_url(&self) -> String {
        let u = self.loki_url.trim_end_matches('/');
        let after_scheme = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
        if after_scheme.contains('/') {
            u.to_string()
        } else {
            format!("{u}/loki/api/v1/push")
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
