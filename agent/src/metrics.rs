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
    /// Discovered files not read (symlinks out of the allowed directories, FIFOs, …), once
    /// per path, by reason.
    pub files_refused: Family<Labels, Counter>,
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
            files_refused: Family::default(),
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
        registry.register(
            "agent_files_refused",
            "Discovered files not read because they are not regular files inside the allowed directories, once per path.",
            m.files_refused.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Metrics { registry, ..m }
    }

    /// The `host` label of the first endpoint (given to [`Metrics::new`]).
    pub fn host(&self) -> &str {
        &self.host
    }

    fn tenant_labels(&self, host: &str, tenant: &str) -> Labels {
        vec![("host", host.to_string()), ("tenant", tenant.to_string())]
    }

    /// A tenant appeared at endpoint `host`: initialise its counters to zero like Alloy does.
    pub fn tenant_started(&self, host: &str, tenant: &str) {
        let l = self.tenant_labels(host, tenant);
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
        host: &str,
        tenant: &str,
        status: Option<u16>,
        took: Duration,
        body_bytes: usize,
    ) {
        let code = status.map_or("-1".to_string(), |s| s.to_string());
        let mut l = vec![("status_code", code)];
        l.extend(self.tenant_labels(host, tenant));
        self.request_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        self.request_size
            .get_or_create(&self.tenant_labels(host, tenant))
            .observe(body_bytes as f64);
    }

    /// A batch was accepted.
    pub fn batch_sent(&self, host: &str, tenant: &str, entries: usize, bytes: usize) {
        let l = self.tenant_labels(host, tenant);
        self.sent_entries.get_or_create(&l).inc_by(entries as u64);
        self.sent_bytes.get_or_create(&l).inc_by(bytes as u64);
    }

    /// A batch was dropped.
    pub fn batch_dropped(
        &self,
        host: &str,
        tenant: &str,
        reason: &str,
        entries: usize,
        bytes: usize,
    ) {
        let mut l = self.tenant_labels(host, tenant);
        l.push(("reason", reason.to_string()));
        self.dropped_entries
            .get_or_create(&l)
            .inc_by(entries as u64);
        self.dropped_bytes.get_or_create(&l).inc_by(bytes as u64);
    }

    /// A batch is retried.
    pub fn batch_retried(&self, host: &str, tenant: &str) {
        self.retries
            .get_or_create(&self.tenant_labels(host, tenant))
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

/// The standard `process_*` metrics (CPU, memory, start time, open fds), read from
/// `/proc/self` at scrape time so cost reports can price the agent's own usage.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of `/proc/<pid>/stat` times. Linux reports in USER_HZ, which is
/// 100 on every architecture Kubernetes nodes run (reading it needs an unsafe sysconf).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says about this process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub max_resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
}

/// Parses `/proc/<pid>/stat` (utime, stime, starttime), `/proc/<pid>/status` (VmRSS,
/// VmHWM, VmSize) and the boot time from `/proc/stat`.
pub fn parse_process_stats(stat: &str, status: &str, proc_stat: &str) -> Option<ProcessStats> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the first field is the state (field 3), so field N is f[N - 3].
    let ticks = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu_seconds = (ticks(14)? + ticks(15)?) / USER_HZ;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v * 1024)
    };
    let btime = proc_stat
        .lines()
        .find(|l| l.starts_with("btime "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: kb("VmRSS:").unwrap_or(0),
        max_resident_bytes: kb("VmHWM:").unwrap_or(0),
        virtual_bytes: kb("VmSize:").unwrap_or(0),
        start_time_seconds: btime + ticks(22).unwrap_or(0.0) / USER_HZ,
        open_fds: 0,
    })
}

fn read_process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let proc_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut s = parse_process_stats(&stat, &status, &proc_stat)?;
    s.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Some(s)
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        // Not on Linux (or /proc unreadable): export nothing rather than zeros.
        let Some(s) = read_process_stats() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes as f64,
            ),
            (
                "process_max_resident_memory_bytes",
                "Peak resident memory size in bytes (VmHWM).",
                s.max_resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_bytes as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                s.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds as f64,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod process_tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 12345 1000000 2000 18446744073709551615";
        let status =
            "Name:\tagent\nVmHWM:\t   30000 kB\nVmRSS:\t   25000 kB\nVmSize:\t  100000 kB\n";
        let s = parse_process_stats(stat, status, "cpu 1 2 3\nbtime 1700000000\n").unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.resident_bytes, 25_000 * 1024);
        assert_eq!(s.max_resident_bytes, 30_000 * 1024);
        assert_eq!(s.virtual_bytes, 100_000 * 1024);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 123.45);
    }

    #[test]
    fn render_includes_process_metrics() {
        let m = Metrics::new("loki:3100");
        let text = m.render();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_max_resident_memory_bytes",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }
}
