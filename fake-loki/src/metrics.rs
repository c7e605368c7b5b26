//! fake-loki's `/metrics`, with Loki's metric names so dashboards and alerts written
//! for Loki work unchanged. One function per observable event.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The registry and the metric families.
pub struct Metrics {
    registry: Registry,
    lines_received: Family<Labels, Counter>,
    bytes_received: Family<Labels, Counter>,
    structured_metadata_bytes_received: Family<Labels, Counter>,
    discarded_samples: Family<Labels, Counter>,
    discarded_bytes: Family<Labels, Counter>,
    mutated_samples: Family<Labels, Counter>,
    mutated_bytes: Family<Labels, Counter>,
    memory_streams: Family<Labels, Gauge>,
    streams_created: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    faults_applied: Family<Labels, Counter>,
    stream_last_push_age: Family<Labels, Gauge<f64, AtomicU64>>,
    tenant_last_push_age: Family<Labels, Gauge<f64, AtomicU64>>,
    data_dir_corrupt_bytes: Family<Labels, Counter>,
    data_dir_truncated_bytes: Family<Labels, Counter>,
    retention_expired_entries: Family<Labels, Counter>,
    retention_expired_bytes: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn tenant(t: &str) -> Labels {
    vec![("tenant".into(), t.into())]
}

impl Metrics {
    /// What replaying `tenant`'s data-dir log skipped and cut.
    pub fn data_dir_replayed(&self, t: &str, corrupt_bytes: u64, truncated_bytes: u64) {
        self.data_dir_corrupt_bytes
            .get_or_create(&tenant(t))
            .inc_by(corrupt_bytes);
        self.data_dir_truncated_bytes
            .get_or_create(&tenant(t))
            .inc_by(truncated_bytes);
    }

    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            lines_received: Family::default(),
            bytes_received: Family::default(),
            structured_metadata_bytes_received: Family::default(),
            discarded_samples: Family::default(),
            discarded_bytes: Family::default(),
            mutated_samples: Family::default(),
            mutated_bytes: Family::default(),
            memory_streams: Family::default(),
            streams_created: Family::default(),
            requests: Family::default(),
            faults_applied: Family::default(),
            stream_last_push_age: Family::default(),
            tenant_last_push_age: Family::default(),
            data_dir_corrupt_bytes: Family::default(),
            data_dir_truncated_bytes: Family::default(),
            retention_expired_entries: Family::default(),
            retention_expired_bytes: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "fake_loki_retention_expired_entries",
            "Entries deleted by the retention sweep.",
            m.retention_expired_entries.clone(),
        );
        registry.register(
            "fake_loki_retention_expired_bytes",
            "Line bytes deleted by the retention sweep.",
            m.retention_expired_bytes.clone(),
        );
        registry.register(
            "fake_loki_data_dir_corrupt_bytes",
            "Bytes of damaged records skipped while replaying the data dir (intact records after them kept).",
            m.data_dir_corrupt_bytes.clone(),
        );
        registry.register(
            "fake_loki_data_dir_truncated_bytes",
            "Bytes cut from torn tails of the data-dir logs at start.",
            m.data_dir_truncated_bytes.clone(),
        );
        registry.register(
            "loki_distributor_lines_received",
            "The total number of lines received per tenant.",
            m.lines_received.clone(),
        );
        registry.register(
            "loki_distributor_bytes_received",
            "The total number of uncompressed bytes received per tenant (line and structured metadata).",
            m.bytes_received.clone(),
        );
        registry.register(
            "loki_distributor_structured_metadata_bytes_received",
            "The total number of structured metadata bytes received per tenant.",
            m.structured_metadata_bytes_received.clone(),
        );
        registry.register(
            "loki_discarded_samples",
            "The total number of samples that were discarded.",
            m.discarded_samples.clone(),
        );
        registry.register(
            "loki_discarded_bytes",
            "The total number of bytes that were discarded.",
            m.discarded_bytes.clone(),
        );
        registry.register(
            "loki_mutated_samples",
            "The total number of samples that have been mutated.",
            m.mutated_samples.clone(),
        );
        registry.register(
            "loki_mutated_bytes",
            "The total number of bytes that have been mutated.",
            m.mutated_bytes.clone(),
        );
        registry.register(
            "loki_ingester_memory_streams",
            "The total number of streams in memory per tenant.",
            m.memory_streams.clone(),
        );
        registry.register(
            "loki_ingester_streams_created",
            "The total number of streams created per tenant.",
            m.streams_created.clone(),
        );
        registry.register(
            "loki_fake_requests",
            "HTTP requests served by fake-loki, by route and status code.",
            m.requests.clone(),
        );
        registry.register(
            "loki_fake_faults_applied",
            "Push requests answered by an injected fault, by action.",
            m.faults_applied.clone(),
        );
        registry.register(
            "loki_fake_stream_last_push_age_seconds",
            "Seconds since each stream last stored an entry (freshness).",
            m.stream_last_push_age.clone(),
        );
        registry.register(
            "loki_fake_tenant_last_push_age_seconds",
            "Seconds since each tenant last stored an entry (freshness).",
            m.tenant_last_push_age.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A push arrived with `lines` lines (counted before validation, as Loki does).
    pub fn received(&self, t: &str, lines: u64, bytes: u64, sm_bytes: u64) {
        self.lines_received.get_or_create(&tenant(t)).inc_by(lines);
        self.bytes_received.get_or_create(&tenant(t)).inc_by(bytes);
        self.structured_metadata_bytes_received
            .get_or_create(&tenant(t))
            .inc_by(sm_bytes);
    }

    /// Entries were refused for `reason`.
    pub fn discarded(&self, t: &str, reason: &str, samples: u64, bytes: u64) {
        let l = vec![
            ("reason".into(), reason.into()),
            ("tenant".into(), t.into()),
        ];
        if samples > 0 {
            self.discarded_samples.get_or_create(&l).inc_by(samples);
        }
        self.discarded_bytes.get_or_create(&l).inc_by(bytes);
    }

    /// Lines were truncated (`max_line_size_truncate`).
    pub fn mutated(&self, t: &str, reason: &str, samples: u64, bytes: u64) {
        let l = vec![
            ("reason".into(), reason.into()),
            ("tenant".into(), t.into()),
        ];
        self.mutated_samples.get_or_create(&l).inc_by(samples);
        self.mutated_bytes.get_or_create(&l).inc_by(bytes);
    }

    /// The retention sweep deleted `entries` entries (`bytes` line bytes) of `t`.
    pub fn retention_expired(&self, t: &str, entries: u64, bytes: u64) {
        self.retention_expired_entries
            .get_or_create(&tenant(t))
            .inc_by(entries);
        self.retention_expired_bytes
            .get_or_create(&tenant(t))
            .inc_by(bytes);
    }

    /// A new stream was created.
    pub fn stream_created(&self, t: &str, total_streams: usize) {
        self.streams_created.get_or_create(&tenant(t)).inc();
        self.memory_streams
            .get_or_create(&tenant(t))
            .set(total_streams as i64);
    }

    /// An HTTP request finished.
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&vec![
                ("route".into(), route.into()),
                ("status_code".into(), status.to_string()),
            ])
            .inc();
    }

    /// A fault rule answered a push.
    pub fn fault_applied(&self, action: &str) {
        self.faults_applied
            .get_or_create(&vec![("action".into(), action.into())])
            .inc();
    }

    /// Sets the freshness gauges from `(tenant, stream labels, last push ns)` triples;
    /// the per-stream gauge only when `per_stream`.
    pub fn set_freshness<'a>(
        &self,
        now_ns: i64,
        per_stream: bool,
        streams: impl Iterator<Item = (&'a str, &'a str, i64)>,
    ) {
        self.stream_last_push_age.clear();
        self.tenant_last_push_age.clear();
        let mut newest: std::collections::BTreeMap<&str, i64> = Default::default();
        for (t, stream, at) in streams {
            let age = now_ns.saturating_sub(at) as f64 / 1e9;
            if per_stream {
                self.stream_last_push_age
                    .get_or_create(&vec![
                        ("tenant".into(), t.into()),
                        ("stream".into(), stream.into()),
                    ])
                    .set(age);
            }
            let n = newest.entry(t).or_insert(at);
            *n = (*n).max(at);
        }
        for (t, at) in newest {
            self.tenant_last_push_age
                .get_or_create(&tenant(t))
                .set((now_ns - at) as f64 / 1e9);
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
