//! The completeness checker: observes what Loki holds for a run and compares it with the manifest.
//!
//! **What is measured.** Each scan reads every entry of the run from every tenant through the
//! public query API (see [`crate::loki`]) and parses the marker back. Per source it reports
//! expected, received, missing sequence ranges, duplicates (copies of a sequence number beyond the
//! first; Loki itself drops identical (ts, line) repeats, so these are copies that differ), entries
//! out of order (timestamp order disagrees with sequence order), and whether the stream labels
//! (`namespace`, `pod`, `container`, `cluster`, and `stream` when present) match the source.
//! Labels beyond those are ignored, so folded structured metadata such as `detected_level` is fine.
//! An entry found in a tenant other than its cluster's is a cross-tenant leak.
//!
//! **Lag** is `first seen - write time`: the write time is the entry's timestamp (the CRI timestamp
//! the generator wrote, which the agent keeps), and "first seen" is the wall-clock time of the
//! first scan that returned the entry. Its resolution is the poll interval plus the scan time, so
//! it is an upper bound; run the checker while the load runs (as `e2e local` does, or `e2e check
//! --watch`) for a meaningful number, since a one-shot check after the fact measures check time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::fresh::{freshness, render_label_set, Freshness, PushTime};
use crate::gen::now_ns;
use crate::loki::{fetch_all, QueryApi, MAX_LIMIT};
use crate::manifest::{ClusterInfo, Manifest, SourceRecord};
use crate::marker::{self, SourceId};
use crate::Error;

/// One entry of the run as a scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub tenant: String,
    pub src: String,
    pub seq: u64,
    pub ts_ns: i64,
    /// The stream labels agree with the source named in the marker.
    pub labels_ok: bool,
    /// The stream's labels as Loki returned them, rendered as a label set (freshness per stream).
    pub stream: String,
}

/// Accumulates what repeated scans of Loki saw for one run.
pub struct Observer {
    run_id: String,
    tenants: Vec<String>,
    tenant_of: HashMap<String, String>,
    query: String,
    page_limit: usize,
    window_start_ns: i64,
    /// When each (source, seq) was first returned from its own tenant (wall-clock ns).
    first_seen: HashMap<(String, u64), i64>,
    /// The last complete scan.
    last_scan: Vec<Hit>,
    scans: u64,
    failed_scans: u64,
    /// Last push per stream, from fake-loki's gauges (empty against a real Loki).
    pushes: Vec<PushTime>,
}

impl Observer {
    /// `window_start_ns`: no entry of the run is older than this (the generator's start).
    pub fn new(run_id: &str, clusters: &[ClusterInfo], window_start_ns: i64) -> Observer {
        let mut tenants: Vec<String> = Vec::new();
        for c in clusters {
            if !tenants.contains(&c.tenant) {
                tenants.push(c.tenant.clone());
            }
        }
        Observer {
            run_id: run_id.to_owned(),
            tenants,
            tenant_of: clusters
                .iter()
                .map(|c| (c.name.clone(), c.tenant.clone()))
                .collect(),
            // `namespace` is on every stream the agent ships; the line filter keeps other runs'
            // data off the wire.
            query: format!("{{namespace=~\".+\"}} |= \"run={run_id} \""),
            page_limit: MAX_LIMIT,
            window_start_ns,
            first_seen: HashMap::new(),
            last_scan: Vec::new(),
            scans: 0,
            failed_scans: 0,
            pushes: Vec::new(),
        }
    }

    /// Overrides the page size (tests use small pages to exercise pagination).
    pub fn with_page_limit(mut self, limit: usize) -> Observer {
        self.page_limit = limit.clamp(1, MAX_LIMIT);
        self
    }

    /// Also scans these tenants (e.g. one that should stay empty), to catch leaks into them.
    pub fn with_extra_tenants(mut self, extra: &[String]) -> Observer {
        for t in extra {
            if !self.tenants.contains(t) {
                self.tenants.push(t.clone());
            }
        }
        self
    }

    /// One full scan of every tenant. On error the previous scan stays the current one.
    pub async fn scan<Q: QueryApi>(&mut self, api: &Q) -> Result<usize, Error> {
        // Entries may carry timestamps up to now; allow for small clock differences.
        let end = now_ns() + 60_000_000_000;
        let start = self.window_start_ns - 60_000_000_000;
        let mut hits = Vec::new();
        for tenant in &self.tenants {
            let run_id = &self.run_id;
            let res = fetch_all(
                api,
                Some(tenant),
                &self.query,
                start,
                end,
                self.page_limit,
                |labels, ts, line| {
                    let Some(m) = marker::parse(line) else { return };
                    if m.run != run_id {
                        return;
                    }
                    hits.push(Hit {
                        tenant: tenant.clone(),
                        src: m.src.to_owned(),
                        seq: m.seq,
                        ts_ns: ts,
                        labels_ok: labels_match(labels, m.src),
                        stream: render_label_set(labels),
                    });
                },
            )
            .await;
            if let Err(e) = res {
                self.failed_scans += 1;
                return Err(e);
            }
        }
        let seen_at = now_ns();
        for h in &hits {
            let cluster = h.src.split('/').next().unwrap_or("");
            if self.tenant_of.get(cluster) == Some(&h.tenant) {
                self.first_seen
                    .entry((h.src.clone(), h.seq))
                    .or_insert(seen_at);
            }
        }
        self.scans += 1;
        let n = hits.len();
        self.last_scan = hits;
        Ok(n)
    }

    /// How many of the manifest's entries have been seen in their own tenant so far.
    pub fn seen_expected(&self, manifest: &Manifest) -> u64 {
        let by_src: HashMap<&str, &SourceRecord> = manifest
            .sources
            .iter()
            .map(|s| (s.id.as_str(), s))
            .collect();
        self.first_seen
            .keys()
            .filter(|(src, seq)| {
                by_src
                    .get(src.as_str())
                    .is_some_and(|r| (r.first_seq..=r.last_seq).contains(seq))
            })
            .count() as u64
    }

    pub fn scans(&self) -> u64 {
        self.scans
    }

    /// Sets the last push time per stream (from fake-loki's `/metrics`) for the freshness check.
    pub fn set_push_times(&mut self, pushes: Vec<PushTime>) {
        self.pushes = pushes;
    }

    /// Compares the last scan with the manifest; with `max_lag_ms`, also judges freshness
    /// against the wall clock now.
    pub fn report(&self, manifest: &Manifest, thresholds: &Thresholds) -> Report {
        let mut r = analyze(
            manifest,
            &self.last_scan,
            &self.first_seen,
            thresholds,
            self.scans,
        );
        if let Some(max) = thresholds.max_lag_ms {
            let f = freshness(manifest, &self.last_scan, &self.pushes, now_ns(), max);
            add_freshness(&mut r, f);
        }
        r
    }
}

/// Whether the labels Loki returned agree with the source in the marker. Only the labels we care
/// about are compared; anything else (folded metadata, `service_name`, uid) is ignored.
fn labels_match(labels: &BTreeMap<String, String>, src: &str) -> bool {
    let Some(s) = SourceId::parse(src) else {
        return false;
    };
    let eq = |k: &str, v: &str| labels.get(k).is_some_and(|x| x == v);
    eq("namespace", &s.namespace)
        && eq("pod", &s.pod)
        && eq("container", &s.container)
        && eq("cluster", &s.cluster)
        && labels.get("stream").is_none_or(|x| *x == s.stream)
}

/// Pass/fail thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    /// Minimum collection rate per source and overall, in percent.
    pub min_rate_pct: f64,
    /// Maximum p99 ingestion lag in ms (`None`: lag is reported, never alerted on).
    pub max_lag_p99_ms: Option<u64>,
    /// Duplicates fail the check unless allowed.
    pub allow_duplicates: bool,
    /// Freshness: a source whose newest entry is older than this (ms) is late (`None`: not
    /// judged).
    pub max_lag_ms: Option<u64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_rate_pct: 95.0,
            max_lag_p99_ms: Some(60_000),
            allow_duplicates: false,
            max_lag_ms: None,
        }
    }
}

/// Lag percentiles in ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Lag {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The verdict for one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceReport {
    pub id: String,
    pub tenant: String,
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    /// Inclusive ranges of missing sequence numbers (at most [`MAX_RANGES`] listed).
    pub missing_ranges: Vec<(u64, u64)>,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Entries of this source with a sequence number the generator never wrote.
    pub unexpected: u64,
    pub rate_pct: f64,
    pub lag: Lag,
}

/// An entry found in a tenant it does not belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leak {
    pub src: String,
    pub expected_tenant: String,
    pub found_in: String,
    pub entries: u64,
}

/// One named check and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
}

/// Run-wide numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub sources: u64,
    pub sources_without_data: u64,
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    pub leaked: u64,
    pub label_mismatches: u64,
    pub rate_pct: f64,
    pub lag: Lag,
}

/// The checker's output (`--json` prints it as is).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub run_id: String,
    pub scans: u64,
    pub thresholds: Thresholds,
    pub summary: Summary,
    pub checks: Vec<CheckResult>,
    pub pass: bool,
    /// Sources under the rate threshold, worst first.
    pub failing_sources: Vec<String>,
    pub no_data_sources: Vec<String>,
    pub leaks: Vec<Leak>,
    pub sources: Vec<SourceReport>,
    /// With a freshness threshold: late and silent sources, per source and per stream.
    pub freshness: Option<Freshness>,
}

/// At most this many missing ranges are listed per source (the count is always exact).
pub const MAX_RANGES: usize = 50;

/// Inclusive ranges of `first..=last` absent from `got`.
pub fn missing_ranges(first: u64, last: u64, got: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = first;
    for &s in got.range(first..=last) {
        if s > next {
            out.push((next, s - 1));
        }
        next = s + 1;
    }
    if next <= last && first <= last {
        out.push((next, last));
    }
    out
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100).
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn lag_of(mut lags_ns: Vec<i64>) -> Lag {
    lags_ns.sort_unstable();
    let ms = |ns: i64| ns as f64 / 1e6;
    Lag {
        samples: lags_ns.len() as u64,
        p50_ms: ms(percentile(&lags_ns, 50.0)),
        p99_ms: ms(percentile(&lags_ns, 99.0)),
        max_ms: ms(lags_ns.last().copied().unwrap_or(0)),
    }
}

/// Counts entries whose sequence number is lower than one seen earlier in timestamp order.
/// `hits` are (ts, seq) of one source without duplicates.
pub fn out_of_order(hits: &mut [(i64, u64)]) -> u64 {
    hits.sort_unstable();
    let mut max = 0;
    let mut n = 0;
    for &(_, seq) in hits.iter() {
        if seq < max {
            n += 1;
        }
        max = max.max(seq);
    }
    n
}

fn pct(num: u64, den: u64) -> f64 {
    if den == 0 {
        100.0
    } else {
        num as f64 * 100.0 / den as f64
    }
}

/// The pure comparison of one scan with the manifest.
pub fn analyze(
    manifest: &Manifest,
    hits: &[Hit],
    first_seen: &HashMap<(String, u64), i64>,
    th: &Thresholds,
    scans: u64,
) -> Report {
    let mut by_src: BTreeMap<&str, Vec<&Hit>> = BTreeMap::new();
    let mut leaks: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut label_mismatches = 0;
    let mut unknown = 0;
    for h in hits {
        let cluster = h.src.split('/').next().unwrap_or("");
        let want_tenant = manifest.tenant_of(cluster).unwrap_or("?");
        if want_tenant != h.tenant {
            *leaks
                .entry((h.src.clone(), want_tenant.to_owned(), h.tenant.clone()))
                .or_default() += 1;
            continue;
        }
        if !h.labels_ok {
            label_mismatches += 1;
        }
        by_src.entry(h.src.as_str()).or_default().push(h);
    }
    let known: BTreeSet<&str> = manifest.sources.iter().map(|s| s.id.as_str()).collect();
    for (src, hs) in &by_src {
        if !known.contains(src) {
            unknown += hs.len() as u64;
        }
    }
    let mut sources = Vec::with_capacity(manifest.sources.len());
    let mut all_lags = Vec::new();
    let mut sum = Summary::default();
    for rec in &manifest.sources {
        let hs = by_src
            .get(rec.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut uniq: BTreeMap<u64, i64> = BTreeMap::new();
        let mut dups = 0;
        let mut unexpected = 0;
        for h in hs {
            if !(rec.first_seq..=rec.last_seq).contains(&h.seq) {
                unexpected += 1;
            } else if uniq.insert(h.seq, h.ts_ns).is_some() {
                dups += 1;
            }
        }
        let got: BTreeSet<u64> = uniq.keys().copied().collect();
        let ranges = missing_ranges(rec.first_seq, rec.last_seq, &got);
        let missing: u64 = ranges.iter().map(|(a, b)| b - a + 1).sum();
        let mut order: Vec<(i64, u64)> = uniq.iter().map(|(s, t)| (*t, *s)).collect();
        let ooo = out_of_order(&mut order);
        let lags: Vec<i64> = uniq
            .iter()
            .filter_map(|(seq, ts)| {
                first_seen
                    .get(&(rec.id.clone(), *seq))
                    .map(|seen| (seen - ts).max(0))
            })
            .collect();
        all_lags.extend_from_slice(&lags);
        let received = got.len() as u64;
        sum.expected += rec.count;
        sum.received += received;
        sum.missing += missing;
        sum.duplicates += dups;
        sum.out_of_order += ooo;
        sum.unexpected += unexpected;
        sources.push(SourceReport {
            id: rec.id.clone(),
            tenant: rec.tenant.clone(),
            expected: rec.count,
            received,
            missing,
            missing_ranges: ranges.into_iter().take(MAX_RANGES).collect(),
            duplicates: dups,
            out_of_order: ooo,
            unexpected,
            rate_pct: pct(received, rec.count),
            lag: lag_of(lags),
        });
    }
    sum.sources = sources.len() as u64;
    sum.unexpected += unknown;
    sum.label_mismatches = label_mismatches;
    sum.rate_pct = pct(sum.received, sum.expected);
    sum.lag = lag_of(all_lags);
    let leaks: Vec<Leak> = leaks
        .into_iter()
        .map(|((src, expected_tenant, found_in), entries)| Leak {
            src,
            expected_tenant,
            found_in,
            entries,
        })
        .collect();
    sum.leaked = leaks.iter().map(|l| l.entries).sum();
    let no_data: Vec<String> = sources
        .iter()
        .filter(|s| s.received == 0)
        .map(|s| s.id.clone())
        .collect();
    sum.sources_without_data = no_data.len() as u64;
    let mut under: Vec<&SourceReport> = sources
        .iter()
        .filter(|s| s.rate_pct < th.min_rate_pct)
        .collect();
    under.sort_by(|a, b| {
        a.rate_pct
            .total_cmp(&b.rate_pct)
            .then_with(|| a.id.cmp(&b.id))
    });
    let failing: Vec<String> = under.iter().map(|s| s.id.clone()).collect();

    let list = |v: &[String]| -> String {
        let mut s = v.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 10 {
            s.push_str(&format!(" (+{} more)", v.len() - 10));
        }
        s
    };
    let mut checks = vec![
        CheckResult {
            name: "completeness",
            pass: failing.is_empty() && sum.rate_pct >= th.min_rate_pct,
            detail: if failing.is_empty() {
                format!(
                    "{:.3}% of {} entries; every source >= {}%",
                    sum.rate_pct, sum.expected, th.min_rate_pct
                )
            } else {
                format!(
                    "{:.3}% overall; {} source(s) under {}%: {}",
                    sum.rate_pct,
                    failing.len(),
                    th.min_rate_pct,
                    list(&failing)
                )
            },
        },
        CheckResult {
            name: "sources_with_data",
            pass: no_data.is_empty(),
            detail: if no_data.is_empty() {
                format!("all {} sources have data", sum.sources)
            } else {
                format!(
                    "{} source(s) with no data: {}",
                    no_data.len(),
                    list(&no_data)
                )
            },
        },
        CheckResult {
            name: "duplicates",
            pass: th.allow_duplicates || sum.duplicates == 0,
            detail: format!("{} duplicate entries", sum.duplicates),
        },
        CheckResult {
            name: "order",
            pass: sum.out_of_order == 0,
            detail: format!("{} entries out of order", sum.out_of_order),
        },
        CheckResult {
            name: "tenant_isolation",
            pass: leaks.is_empty(),
            detail: if leaks.is_empty() {
                "no entry outside its tenant".to_owned()
            } else {
                let names: Vec<String> = leaks
                    .iter()
                    .map(|l| {
                        format!(
                            "{} in {} (belongs to {})",
                            l.src, l.found_in, l.expected_tenant
                        )
                    })
                    .collect();
                format!("{} entries leaked: {}", sum.leaked, list(&names))
            },
        },
        CheckResult {
            name: "labels",
            pass: sum.label_mismatches == 0,
            detail: format!(
                "{} entries with wrong namespace/pod/container/cluster labels",
                sum.label_mismatches
            ),
        },
        CheckResult {
            name: "unexpected",
            pass: sum.unexpected == 0,
            detail: format!("{} entries the generator never wrote", sum.unexpected),
        },
    ];
    if let Some(max) = th.max_lag_p99_ms {
        checks.push(CheckResult {
            name: "lag",
            pass: sum.lag.p99_ms <= max as f64,
            detail: format!(
                "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (limit p99 {} ms)",
                sum.lag.p50_ms, sum.lag.p99_ms, sum.lag.max_ms, max
            ),
        });
    }
    let pass = checks.iter().all(|c| c.pass);
    Report {
        run_id: manifest.run_id.clone(),
        scans,
        thresholds: th.clone(),
        summary: sum,
        checks,
        pass,
        failing_sources: failing,
        no_data_sources: no_data,
        leaks,
        sources,
        freshness: None,
    }
}

/// Adds the freshness verdict (a `freshness` check naming late and silent sources) to a report.
pub fn add_freshness(r: &mut Report, f: Freshness) {
    let names = |v: &[String]| {
        let mut s = v.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 10 {
            s.push_str(&format!(" (+{} more)", v.len() - 10));
        }
        s
    };
    let pass = f.late.is_empty() && f.silent.is_empty();
    let detail = if pass {
        format!(
            "all {} sources have an entry newer than {} ms",
            f.sources.len(),
            f.max_lag_ms
        )
    } else {
        let mut parts = Vec::new();
        if !f.late.is_empty() {
            parts.push(format!(
                "{} late (newest entry older than {} ms): {}",
                f.late.len(),
                f.max_lag_ms,
                names(&f.late)
            ));
        }
        if !f.silent.is_empty() {
            parts.push(format!(
                "{} silent (expected, nothing in Loki): {}",
                f.silent.len(),
                names(&f.silent)
            ));
        }
        parts.join("; ")
    };
    r.checks.push(CheckResult {
        name: "freshness",
        pass,
        detail,
    });
    r.pass &= pass;
    r.freshness = Some(f);
}

/// How a watching check polls.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    pub poll_every: Duration,
    /// After the manifest is known, give up waiting for missing entries after this long.
    pub drain_timeout: Duration,
    /// After everything arrived, wait this long and scan once more, to catch late duplicates.
    pub settle: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            poll_every: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(60),
            settle: Duration::from_secs(1),
        }
    }
}

/// What [`watch`] ends with.
#[derive(Debug, Clone)]
pub struct WatchOutcome {
    pub manifest: Arc<Manifest>,
    /// When every expected entry had been seen (`None`: the drain timed out).
    pub complete_at: Option<Instant>,
}

/// Scans repeatedly until the manifest (sent on `manifest_rx` when the generator finishes) is fully
/// observed, or the drain timeout passes. Scan errors (e.g. during an injected outage) are logged
/// and retried; the last successful scan is what the report uses.
pub async fn watch<Q: QueryApi>(
    api: &Q,
    obs: &mut Observer,
    mut manifest_rx: tokio::sync::watch::Receiver<Option<Arc<Manifest>>>,
    settings: WatchSettings,
) -> Result<WatchOutcome, Error> {
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let started = Instant::now();
        if let Err(e) = obs.scan(api).await {
            tracing::warn!(error = %e, "scan failed; retrying");
        }
        let manifest = manifest_rx.borrow().clone();
        if let Some(m) = manifest {
            let deadline =
                *drain_deadline.get_or_insert_with(|| Instant::now() + settings.drain_timeout);
            if obs.seen_expected(&m) >= m.totals.entries {
                let complete_at = Some(Instant::now());
                tokio::time::sleep(settings.settle).await;
                // A failed settle scan keeps the complete one; that is still a valid verdict.
                if let Err(e) = obs.scan(api).await {
                    tracing::warn!(error = %e, "settle scan failed");
                }
                return Ok(WatchOutcome {
                    manifest: m,
                    complete_at,
                });
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    seen = obs.seen_expected(&m),
                    expected = m.totals.entries,
                    "drain timeout; reporting what arrived"
                );
                return Ok(WatchOutcome {
                    manifest: m,
                    complete_at: None,
                });
            }
        }
        // Pace the polls; wake early when the manifest arrives.
        let wait = settings.poll_every.saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = manifest_rx.changed(), if manifest_rx.borrow().is_none() => {
                if r.is_err() {
                    return Err(Error::Process { name: "generator".into(), message: "ended without a manifest".into() });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Totals;

    fn rec(id: &str, tenant: &str, count: u64) -> SourceRecord {
        let s = SourceId::parse(id).expect("id");
        SourceRecord {
            id: id.into(),
            cluster: s.cluster,
            tenant: tenant.into(),
            namespace: s.namespace,
            pod: s.pod,
            pod_uid: "u".into(),
            container: s.container,
            stream: s.stream,
            count,
            first_seq: 1,
            last_seq: count,
            first_ts_ns: 0,
            last_ts_ns: 0,
            bytes: 0,
            pod_deleted: false,
        }
    }

    fn manifest(sources: Vec<SourceRecord>) -> Manifest {
        Manifest {
            version: 1,
            run_id: "r".into(),
            seed: 0,
            started_ns: 0,
            finished_ns: 0,
            clusters: vec![
                ClusterInfo {
                    name: "ops".into(),
                    tenant: "t-ops".into(),
                },
                ClusterInfo {
                    name: "dev".into(),
                    tenant: "t-dev".into(),
                },
            ],
            totals: Totals {
                entries: sources.iter().map(|s| s.count).sum(),
                ..Totals::default()
            },
            sources,
        }
    }

    fn hit(tenant: &str, src: &str, seq: u64, ts: i64) -> Hit {
        Hit {
            tenant: tenant.into(),
            src: src.into(),
            seq,
            ts_ns: ts,
            labels_ok: true,
            stream: String::new(),
        }
    }

    #[test]
    fn missing_ranges_cover_edges_and_gaps() {
        let got: BTreeSet<u64> = [2, 3, 5, 9].into_iter().collect();
        assert_eq!(
            missing_ranges(1, 10, &got),
            vec![(1, 1), (4, 4), (6, 8), (10, 10)]
        );
        assert_eq!(missing_ranges(1, 3, &BTreeSet::new()), vec![(1, 3)]);
        let all: BTreeSet<u64> = (1..=3).collect();
        assert_eq!(missing_ranges(1, 3, &all), vec![]);
        assert_eq!(missing_ranges(1, 0, &BTreeSet::new()), vec![]);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn out_of_order_counts_seq_inversions_in_time_order() {
        assert_eq!(out_of_order(&mut [(1, 1), (2, 2), (3, 3)]), 0);
        assert_eq!(out_of_order(&mut [(1, 1), (2, 3), (3, 2), (4, 4)]), 1);
    }

    #[test]
    fn analysis_finds_gaps_duplicates_leaks_no_data_and_names_failing_sources() {
        let a = "ops/ns/p1/app/stdout";
        let b = "ops/ns/p2/app/stdout";
        let c = "dev/ns/p3/app/stderr";
        let m = manifest(vec![
            rec(a, "t-ops", 10),
            rec(b, "t-ops", 4),
            rec(c, "t-dev", 3),
        ]);
        let mut hits: Vec<Hit> = (1..=10)
            .filter(|s| *s != 4 && *s != 5)
            .map(|s| hit("t-ops", a, s, s as i64))
            .collect();
        hits.push(hit("t-ops", a, 7, 7)); // duplicate
        hits.push(hit("t-ops", a, 11, 11)); // never written
        hits.push(hit("t-dev", b, 1, 1)); // leaked into dev
        hits.extend((1..=3).map(|s| hit("t-dev", c, s, s as i64)));
        let mut first_seen = HashMap::new();
        for s in 1..=10u64 {
            first_seen.insert((a.to_owned(), s), s as i64 + 1_000_000 * s as i64);
        }
        let r = analyze(&m, &hits, &first_seen, &Thresholds::default(), 1);
        assert!(!r.pass);
        let sa = &r.sources[0];
        assert_eq!(
            (
                sa.expected,
                sa.received,
                sa.missing,
                sa.duplicates,
                sa.unexpected
            ),
            (10, 8, 2, 1, 1)
        );
        assert_eq!(sa.missing_ranges, vec![(4, 5)]);
        assert_eq!(sa.rate_pct, 80.0);
        assert_eq!(sa.lag.samples, 8);
        assert_eq!(sa.lag.max_ms, 10.0);
        assert_eq!(r.sources[1].received, 0);
        assert_eq!(r.no_data_sources, vec![b.to_owned()]);
        assert_eq!(r.failing_sources, vec![b.to_owned(), a.to_owned()]);
        assert_eq!(
            r.leaks,
            vec![Leak {
                src: b.into(),
                expected_tenant: "t-ops".into(),
                found_in: "t-dev".into(),
                entries: 1
            }]
        );
        assert_eq!(r.sources[2].rate_pct, 100.0);
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            failed,
            vec![
                "completeness",
                "sources_with_data",
                "duplicates",
                "tenant_isolation",
                "unexpected"
            ]
        );
        assert_eq!(
            (r.summary.expected, r.summary.received, r.summary.missing),
            (17, 11, 6)
        );
    }

    #[test]
    fn complete_run_passes_and_lag_threshold_alerts() {
        let a = "ops/ns/p1/app/stdout";
        let m = manifest(vec![rec(a, "t-ops", 3)]);
        let hits: Vec<Hit> = (1..=3).map(|s| hit("t-ops", a, s, 0)).collect();
        let first_seen: HashMap<_, _> = (1..=3u64)
            .map(|s| ((a.to_owned(), s), 2_000_000_000))
            .collect();
        let r = analyze(&m, &hits, &first_seen, &Thresholds::default(), 1);
        assert!(r.pass, "{:?}", r.checks);
        let th = Thresholds {
            max_lag_p99_ms: Some(1000),
            ..Thresholds::default()
        };
        let r = analyze(&m, &hits, &first_seen, &th, 1);
        assert!(!r.pass);
        assert_eq!(
            r.checks
                .iter()
                .filter(|c| !c.pass)
                .map(|c| c.name)
                .collect::<Vec<_>>(),
            vec!["lag"]
        );
    }

    #[test]
    fn labels_are_compared_only_on_the_ones_that_matter() {
        let src = "ops/ns/p/app/stdout";
        let mut l: BTreeMap<String, String> = [
            ("namespace", "ns"),
            ("pod", "p"),
            ("container", "app"),
            ("cluster", "ops"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(labels_match(&l, src));
        l.insert("detected_level".into(), "info".into());
        l.insert("stream".into(), "stdout".into());
        assert!(labels_match(&l, src));
        l.insert("stream".into(), "stderr".into());
        assert!(!labels_match(&l, src));
        l.remove("stream");
        l.insert("cluster".into(), "dev".into());
        assert!(!labels_match(&l, src));
    }
}
