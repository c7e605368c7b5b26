//! Observable events: Prometheus metrics with Alloy's names, one method per event.
//!
//! Alloy's `component_id`/`component_path` labels are not added (there is one pipeline).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Alloy's drop reasons, all initialised to zero per tenant.
pub const DROP_REASONS: [&str; 5] = [
    "ingester_error",
    "rate_limited",
    "stream_limited",
    "line_too_long",
    "queue_is_full",
];

fn request_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn request_size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 2.0, 15))
}

/// Every metric the agent exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    host: String,
    pub read_lines: Family<Labels, Counter>,
    pub read_bytes: Family<Labels, Gauge>,
    pub file_bytes: Family<Labels, Gauge>,
    pub files_active: Gauge,
    pub lag_bytes: Family<Labels, Gauge>,
    pub truncated_lines: Counter,
    pub invalid_utf8_lines: Counter,
    pub parse_errors: Counter,
    pub sent_entries: Family<Labels, Counter>,
    pub sent_bytes: Family<Labels, Counter>,
    pub dropped_entries: Family<Labels, Counter>,
    pub dropped_bytes: Family<Labels, Counter>,
    pub retries: Family<Labels, Counter>,
    pub request_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub request_size: Family<Labels, Histogram, fn() -> Histogram>,
    pub positions_saves_failed: Counter<u64, AtomicU64>,
    /// Lines dropped by Alloy `loki.process` stages, by reason.
    pub process_dropped: Family<Labels, Counter>,
}

impl Metrics {
    /// Registers all metrics; `host` is the Loki host:port label.
    pub fn new(host: &str) -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            host: host.to_string(),
            read_lines: Family::default(),
            read_bytes: Family::default(),
            file_bytes: Family::default(),
            files_active: Gauge::default(),
            lag_bytes: Family::default(),
            truncated_lines: Counter::default(),
            invalid_utf8_lines: Counter::default(),
            parse_errors: Counter::default(),
            sent_entries: Family::default(),
            sent_bytes: Family::default(),
            dropped_entries: Family::default(),
            dropped_bytes: Family::default(),
            retries: Family::default(),
            request_duration: Family::new_with_constructor(request_duration_histogram),
            request_size: Family::new_with_constructor(request_size_histogram),
            positions_saves_failed: Counter::default(),
            process_dropped: Family::default(),
        };
        registry.register(
            "loki_source_file_read_lines",
            "Lines read, per file.",
            m.read_lines.clone(),
        );
        registry.register(
            "loki_source_file_read_bytes_total",
            "Read offset, per file.",
            m.read_bytes.clone(),
        );
        registry.register(
            "loki_source_file_file_bytes_total",
            "File size, per file.",
            m.file_bytes.clone(),
        );
        registry.register(
            "loki_source_file_files_active_total",
            "Files being tailed.",
            m.files_active.clone(),
        );
        registry.register(
            "agent_positions_lag_bytes",
            "File size minus the offset Loki acknowledged, per file.",
            m.lag_bytes.clone(),
        );
        registry.register(
            "agent_lines_truncated",
            "Lines cut at max_line_bytes.",
            m.truncated_lines.clone(),
        );
        registry.register(
            "agent_lines_invalid_utf8",
            "Lines whose invalid UTF-8 was replaced.",
            m.invalid_utf8_lines.clone(),
        );
        registry.register(
            "agent_parse_errors",
            "CRI/docker records that did not parse and were kept as plain lines.",
            m.parse_errors.clone(),
        );
        registry.register(
            "loki_write_sent_entries",
            "Entries sent to Loki.",
            m.sent_entries.clone(),
        );
        registry.register(
            "loki_write_sent_bytes",
            "Line bytes sent to Loki.",
            m.sent_bytes.clone(),
        );
        registry.register(
            "loki_write_dropped_entries",
            "Entries dropped, by reason.",
            m.dropped_entries.clone(),
        );
        registry.register(
            "loki_write_dropped_bytes",
            "Line bytes dropped, by reason.",
            m.dropped_bytes.clone(),
        );
        registry.register(
            "loki_write_batch_retries",
            "Batch retries.",
            m.retries.clone(),
        );
        registry.register(
            "loki_write_request_duration_seconds",
            "Push request duration; status_code -1 is a connection error.",
            m.request_duration.clone(),
        );
        registry.register(
            "loki_write_request_size_bytes",
            "Compressed push body size.",
            m.request_size.clone(),
        );
        registry.register(
            "agent_positions_save_failures",
            "Failed writes of the positions file.",
            m.positions_saves_failed.clone(),
        );
        registry.register(
            "loki_process_dropped_lines",
            "Lines dropped by loki.process stages, by reason.",
            m.process_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    fn tenant_labels(&self, tenant: &str) -> Labels {
        vec![("host", self.host.clone()), ("tenant", tenant.to_string())]
    }

    /// A tenant appeared: initialise its counters to zero like Alloy does.
    pub fn tenant_started(&self, tenant: &str) {
        let l = self.tenant_labels(tenant);
        drop(self.sent_entries.get_or_create(&l));
        drop(self.sent_bytes.get_or_create(&l));
        drop(self.retries.get_or_create(&l));
        for r in DROP_REASONS {
            let mut l = l.clone();
            l.push(("reason", r.to_string()));
            drop(self.dropped_entries.get_or_create(&l));
            drop(self.dropped_bytes.get_or_create(&l));
        }
    }

    /// One push attempt finished (`status` None = connection error).
    pub fn request_done(
        &self,
        tenant: &str,
        status: Option<u16>,
        took: Duration,
        body_bytes: usize,
    ) {
        let code = status.map_or("-1".to_string(), |s| s.to_string());
        let mut l = vec![("status_code", code)];
        l.extend(self.tenant_labels(tenant));
        self.request_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        self.request_size
            .get_or_create(&self.tenant_labels(tenant))
            .observe(body_bytes as f64);
    }

    /// A batch was accepted.
    pub fn batch_sent(&self, tenant: &str, entries: usize, bytes: usize) {
        let l = self.tenant_labels(tenant);
        self.sent_entries.get_or_create(&l).inc_by(entries as u64);
        self.sent_bytes.get_or_create(&l).inc_by(bytes as u64);
    }

    /// A batch was dropped.
    pub fn batch_dropped(&self, tenant: &str, reason: &str, entries: usize, bytes: usize) {
        let mut l = self.tenant_labels(tenant);
        l.push(("reason", reason.to_string()));
        self.dropped_entries
            .get_or_create(&l)
            .inc_by(entries as u64);
        self.dropped_bytes.get_or_create(&l).inc_by(bytes as u64);
    }

    /// A batch is retried.
    pub fn batch_retried(&self, tenant: &str) {
        self.retries
            .get_or_create(&self.tenant_labels(tenant))
            .inc();
    }

    /// Replaces the lag gauges with the current per-file lags.
    pub fn set_lags(&self, lags: &[(String, u64)]) {
        self.lag_bytes.clear();
        for (path, lag) in lags {
            self.lag_bytes
                .get_or_create(&vec![("path", path.clone())])
                .set(i64::try_from(*lag).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition of all metrics.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}
