//! Human-readable rendering of a check [`Report`] and of the local run's measurements.

use std::fmt::Write;

use serde::Serialize;

use crate::check::Report;

/// Resource use of one agent process, read from `/proc` just before it was stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcStats {
    pub name: String,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
}

/// Throughput of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Throughput {
    pub generated_entries: u64,
    pub generated_bytes: u64,
    pub generate_seconds: f64,
    /// From generator start until the last entry was seen in Loki (or the drain gave up).
    pub end_to_end_seconds: f64,
    pub lines_per_sec: f64,
    pub mb_per_sec: f64,
}

/// Renders the verdict table.
pub fn render(report: &Report, verbose: bool) -> String {
    let mut o = String::new();
    let s = &report.summary;
    let _ = writeln!(o, "run {}  ({} scans)", report.run_id, report.scans);
    let _ = writeln!(
        o,
        "{:<58} {:>9} {:>9} {:>8} {:>5} {:>5} {:>8} {:>9} {:>9}",
        "source", "expected", "received", "missing", "dups", "ooo", "rate%", "lag p50", "lag p99"
    );
    let mut rows: Vec<_> = report.sources.iter().collect();
    if !verbose {
        // Only the interesting rows; the totals line covers the rest.
        rows.retain(|r| {
            r.missing > 0 || r.duplicates > 0 || r.out_of_order > 0 || r.unexpected > 0
        });
    }
    for r in rows.iter().take(if verbose { usize::MAX } else { 30 }) {
        let _ = writeln!(
            o,
            "{:<58} {:>9} {:>9} {:>8} {:>5} {:>5} {:>8.2} {:>7.0}ms {:>7.0}ms",
            truncate(&r.id, 58),
            r.expected,
            r.received,
            r.missing,
            r.duplicates,
            r.out_of_order,
            r.rate_pct,
            r.lag.p50_ms,
            r.lag.p99_ms
        );
        if !r.missing_ranges.is_empty() {
            let ranges: Vec<String> = r
                .missing_ranges
                .iter()
                .take(8)
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            let more = if r.missing_ranges.len() > 8 {
                " ..."
            } else {
                ""
            };
            let _ = writeln!(o, "    missing seq: {}{more}", ranges.join(", "));
        }
    }
    let _ = writeln!(
        o,
        "{:<58} {:>9} {:>9} {:>8} {:>5} {:>5} {:>8.3} {:>7.0}ms {:>7.0}ms",
        format!("TOTAL ({} sources)", s.sources),
        s.expected,
        s.received,
        s.missing,
        s.duplicates,
        s.out_of_order,
        s.rate_pct,
        s.lag.p50_ms,
        s.lag.p99_ms
    );
    let _ = writeln!(
        o,
        "lag max {:.0} ms over {} entries",
        s.lag.max_ms, s.lag.samples
    );
    let _ = writeln!(o);
    for c in &report.checks {
        let _ = writeln!(
            o,
            "  [{}] {:<18} {}",
            if c.pass { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "VERDICT: {}", if report.pass { "PASS" } else { "FAIL" });
    o
}

/// Renders throughput and per-agent resource use.
pub fn render_run(t: &Throughput, agents: &[ProcStats]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "throughput: {} entries, {:.1} MB generated in {:.1}s; end to end {:.0} lines/s, {:.2} MB/s ({:.1}s)",
        t.generated_entries,
        t.generated_bytes as f64 / 1e6,
        t.generate_seconds,
        t.lines_per_sec,
        t.mb_per_sec,
        t.end_to_end_seconds
    );
    for a in agents {
        let _ = writeln!(
            o,
            "agent {:<6} cpu {:>6.2}s  peak rss {:>7.1} MiB",
            a.name,
            a.cpu_seconds,
            a.peak_rss_kib as f64 / 1024.0
        );
    }
    o
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_owned()
    } else {
        format!("...{}", &s[s.len() - (n - 3)..])
    }
}
