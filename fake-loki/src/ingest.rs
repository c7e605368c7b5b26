//! The push path after decoding: Loki's distributor validation, tenant rate limit,
//! then the ingester's stream limit, per-stream rate, out-of-order window and de-dup.
//!
//! Outcomes follow Loki (spec §1.6–1.9): failures are collected, valid entries are
//! still stored and the answer is 400; a tenant rate-limit 429 stores nothing; only the
//! last failing stream's ingester error reaches the client.

use std::collections::HashMap;
use std::time::Instant;

use loki_wire::labels::is_valid_label_name;
use loki_wire::{LabelSet, PushRequest};

use crate::levels::{self, DETECTED_LEVEL};
use crate::limits::Limits;
use crate::ratelimit::TokenBucket;
use crate::store::Store;
use crate::usage::Delta;
use crate::Metrics;

/// An entry newly stored by a push: timestamp, line, structured metadata.
pub type StoredRef<'a> = (i64, &'a str, &'a [(String, String)]);

/// Loki's ingester accepts entries up to `max_chunk_age / 2` behind a stream's newest.
pub const DEFAULT_MAX_CHUNK_AGE_NS: i64 = 2 * 3600 * 1_000_000_000;

/// The HTTP answer to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub status: u16,
    /// Plain-text error body (empty for 204).
    pub body: String,
    /// Entries newly stored by this push.
    pub stored: u64,
    /// What the push adds to the usage ledger.
    pub usage: Delta,
}

/// A line as text: the received bytes when they are UTF-8 (no copy), else a lossy copy.
enum Line {
    Utf8(bytes::Bytes),
    Replaced(String),
}

impl Line {
    fn new(b: bytes::Bytes) -> Line {
        match std::str::from_utf8(&b) {
            Ok(_) => Line::Utf8(b),
            Err(_) => Line::Replaced(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Checked in `new`; re-validating is cheaper than the copy it avoids.
            Line::Utf8(b) => std::str::from_utf8(b).unwrap_or_default(),
            Line::Replaced(s) => s,
        }
    }

    fn len(&self) -> usize {
        match self {
            Line::Utf8(b) => b.len(),
            Line::Replaced(s) => s.len(),
        }
    }

    fn truncate(self, at: usize) -> Line {
        let s = self.as_str();
        let cut = floor_char_boundary(s, at);
        match self {
            Line::Utf8(b) => Line::Utf8(b.slice(..cut)),
            Line::Replaced(mut s) => {
                s.truncate(cut);
                Line::Replaced(s)
            }
        }
    }
}

/// An entry that passed validation and is bound for the ingester.
struct Valid {
    ts: i64,
    line: Line,
    metadata: Vec<(String, String)>,
}

struct ValidStream {
    labels: LabelSet,
    labels_string: String,
    entries: Vec<Valid>,
}

/// Rate-limiter state kept per tenant next to the store.
#[derive(Debug, Default)]
pub struct Limiters {
    tenants: HashMap<String, TenantLimiter>,
}

#[derive(Debug)]
struct TenantLimiter {
    rate: TokenBucket,
    streams: HashMap<usize, TokenBucket>,
}

/// Groups error messages the way Loki's `GroupedErrors` prints them.
#[derive(Default)]
struct Errors {
    order: Vec<String>,
    counts: HashMap<String, usize>,
}

impl Errors {
    fn add(&mut self, msg: String) {
        let n = self.counts.entry(msg.clone()).or_insert(0);
        if *n == 0 {
            self.order.push(msg);
        }
        *n += 1;
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn render(&self) -> String {
        self.order
            .iter()
            .map(|m| match self.counts.get(m) {
                Some(&n) if n > 1 => format!("{n} errors like: {m}"),
                _ => m.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Formats ns as Go's `time.RFC3339` in UTC (no fraction).
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ns.to_string())
}

/// Formats ns as Go's `time.Time.String()` in UTC.
pub fn go_time_string(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let base = chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| secs.to_string());
    if nanos == 0 {
        format!("{base} +0000 UTC")
    } else {
        let frac = format!("{nanos:09}");
        format!("{base}.{} +0000 UTC", frac.trim_end_matches('0'))
    }
}

/// Everything a push needs besides the store.
pub struct IngestContext<'a> {
    pub tenant: &'a str,
    pub limits: &'a Limits,
    pub metrics: &'a Metrics,
    pub now_ns: i64,
    pub now: Instant,
    pub max_chunk_age_ns: i64,
}

/// Validates and stores a decoded push. Calls `on_stored` with the stream labels and
/// the entries that were newly stored (for the data-dir log), under the store lock.
pub fn ingest(
    ctx: &IngestContext<'_>,
    store: &mut Store,
    limiters: &mut Limiters,
    req: PushRequest,
    on_stored: &mut dyn FnMut(&str, &[StoredRef<'_>]),
) -> PushOutcome {
    let t = ctx.tenant;
    let limits = ctx.limits;
    let mut delta = Delta::default();
    let total_lines: u64 = req.streams.iter().map(|s| s.entries.len() as u64).sum();
    let total_bytes: u64 = req
        .streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.line.len() as u64 + sm_bytes(&e.structured_metadata))
        .sum();
    let total_sm: u64 = req
        .streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| sm_bytes(&e.structured_metadata))
        .sum();
    ctx.metrics.received(t, total_lines, total_bytes, total_sm);

    if req.streams.is_empty() {
        return PushOutcome {
            status: 422,
            body: "error at least one valid stream is required for ingestion\n".into(),
            stored: 0,
            usage: std::mem::take(&mut delta),
        };
    }

    // 1. Parse every stream's labels: one failure refuses the whole request.
    let mut parsed = Vec::with_capacity(req.streams.len());
    for s in &req.streams {
        match LabelSet::parse(&s.labels) {
            Ok(l) => {
                if let Some((name, _)) = l
                    .iter()
                    .find(|(k, _)| *k == "__backfill__" || *k == "__backfill_shard__")
                {
                    return refuse_all(
                        ctx,
                        &req,
                        format!("couldn't parse labels: label {name} is reserved"),
                    );
                }
                parsed.push(l)
            }
            Err(e) => return refuse_all(ctx, &req, format!("couldn't parse labels: {e}")),
        }
    }

    // 2. Distributor validation, per stream then per entry.
    let mut errors = Errors::default();
    let mut valid_streams: Vec<ValidStream> = Vec::new();
    let mut valid_bytes: f64 = 0.0;
    for (s, mut labels) in req.streams.into_iter().zip(parsed) {
        // Discovery runs first, so `{}` becomes `{service_name="unknown_service"}`.
        if !limits.discover_service_name.is_empty() && labels.get("service_name").is_none() {
            let v = limits
                .discover_service_name
                .iter()
                .find_map(|n| labels.get(n))
                .unwrap_or("unknown_service")
                .to_string();
            labels.set("service_name", &v);
        }
        if let Err((reason, msg)) = validate_labels(limits, &labels, &s.labels) {
            let bytes: u64 = s.entries.iter().map(|e| e.line.len() as u64).sum();
            discard(
                ctx,
                &mut delta,
                &labels.to_string(),
                reason,
                s.entries.len() as u64,
                bytes,
            );
            errors.add(msg);
            continue;
        }
        let labels_string = labels.to_string();
        let mut entries = Vec::with_capacity(s.entries.len());
        for e in s.entries {
            let line_len = e.line.len() as u64;
            let ts = match e.timestamp.and_then(|ts| ts.to_unix_nanos()) {
                Some(ts) => ts,
                None => {
                    discard(
                        ctx,
                        &mut delta,
                        &labels_string,
                        "invalid_timestamp",
                        1,
                        line_len,
                    );
                    errors.add(format!(
                        "entry for stream '{labels_string}' has an invalid timestamp"
                    ));
                    continue;
                }
            };
            let oldest = ctx.now_ns.saturating_sub(limits.reject_old_samples_max_age);
            if limits.reject_old_samples && ts < oldest {
                discard(
                    ctx,
                    &mut delta,
                    &labels_string,
                    "greater_than_max_sample_age",
                    1,
                    line_len,
                );
                errors.add(format!(
                    "entry for stream '{labels_string}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    rfc3339(ts),
                    rfc3339(oldest)
                ));
                continue;
            }
            if ts > ctx.now_ns.saturating_add(limits.creation_grace_period) {
                discard(
                    ctx,
                    &mut delta,
                    &labels_string,
                    "too_far_in_future",
                    1,
                    line_len,
                );
                errors.add(format!(
                    "entry for stream '{labels_string}' has timestamp too new: {}",
                    rfc3339(ts)
                ));
                continue;
            }
            let mut line = Line::new(e.line);
            if limits.max_line_size > 0 && line_len > limits.max_line_size {
                if limits.max_line_size_truncate {
                    line = line.truncate(limits.max_line_size as usize);
                    ctx.metrics
                        .mutated(t, "line_too_long", 1, line_len - line.len() as u64);
                } else {
                    discard(
                        ctx,
                        &mut delta,
                        &labels_string,
                        "line_too_long",
                        1,
                        line_len,
                    );
                    errors.add(format!(
                        "max entry size '{}' bytes exceeded for stream '{labels_string}' while adding an entry with length '{line_len}' bytes",
                        limits.max_line_size
                    ));
                    continue;
                }
            }
            let mut metadata: Vec<(String, String)> = e
                .structured_metadata
                .into_iter()
                .map(|p| (p.name, p.value))
                .collect();
            if !metadata.is_empty() {
                let sm_size: u64 = metadata
                    .iter()
                    .map(|(k, v)| (k.len() + v.len()) as u64)
                    .sum();
                if !limits.allow_structured_metadata {
                    discard(
                        ctx,
                        &mut delta,
                        &labels_string,
                        "disallowed_structured_metadata",
                        1,
                        line_len,
                    );
                    errors.add(format!("stream '{labels_string}' includes structured metadata, but this feature is disallowed. Please see `limits_config.structured_metadata` or contact your Loki administrator to enable it."));
                    continue;
                }
                if limits.max_structured_metadata_size > 0
                    && sm_size > limits.max_structured_metadata_size
                {
                    discard(
                        ctx,
                        &mut delta,
                        &labels_string,
                        "structured_metadata_too_large",
                        1,
                        line_len,
                    );
                    errors.add(format!("stream '{labels_string}' has structured metadata too large: '{sm_size}' bytes, limit: '{}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.", limits.max_structured_metadata_size));
                    continue;
                }
                if limits.max_structured_metadata_entries_count > 0
                    && metadata.len() > limits.max_structured_metadata_entries_count
                {
                    discard(
                        ctx,
                        &mut delta,
                        &labels_string,
                        "structured_metadata_too_many",
                        1,
                        line_len,
                    );
                    errors.add(format!("stream '{labels_string}' has too many structured metadata labels: '{}', limit: '{}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.", metadata.len(), limits.max_structured_metadata_entries_count));
                    continue;
                }
            }
            valid_bytes += (line.len() as u64 + sm_bytes_pairs(&metadata)) as f64;
            if limits.discover_log_levels
                && labels.get(DETECTED_LEVEL).is_none()
                && !metadata.iter().any(|(k, _)| k == DETECTED_LEVEL)
            {
                let level = levels::detect(&labels, &metadata, line.as_str());
                metadata.push((DETECTED_LEVEL.to_string(), level.to_string()));
            }
            entries.push(Valid { ts, line, metadata });
        }
        if !entries.is_empty() {
            valid_streams.push(ValidStream {
                labels,
                labels_string,
                entries,
            });
        }
    }

    // 3. Tenant ingestion rate: all or nothing.
    let limiter = limiters
        .tenants
        .entry(t.to_string())
        .or_insert_with(|| TenantLimiter {
            rate: TokenBucket::new(
                limits.ingestion_rate_bytes(),
                limits.ingestion_burst_bytes(),
                ctx.now,
            ),
            streams: HashMap::new(),
        });
    limiter.rate.set_limits(
        limits.ingestion_rate_bytes(),
        limits.ingestion_burst_bytes(),
    );
    if valid_bytes > 0.0 && !limiter.rate.allow_n(ctx.now, valid_bytes) {
        let lines: usize = valid_streams.iter().map(|s| s.entries.len()).sum();
        ctx.metrics
            .discarded(t, "rate_limited", lines as u64, valid_bytes as u64);
        for vs in &valid_streams {
            delta.rejected(&vs.labels_string, "rate_limited", vs.entries.len() as u64);
        }
        return PushOutcome {
            status: 429,
            body: format!(
                "ingestion rate limit exceeded for user {t} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n",
                limits.ingestion_rate_bytes() as u64,
                valid_bytes as u64
            ),
            stored: 0,
            usage: std::mem::take(&mut delta),
        };
    }

    // 4. Ingester.
    let tenant_data = store.tenant_mut(t);
    let mut ingester_error: Option<(u16, String)> = None;
    let mut stored = 0u64;
    for vs in valid_streams {
        let total = vs.entries.len();
        let idx = match tenant_data.find(&vs.labels_string) {
            Some(i) => i,
            None => {
                let max = limits.max_streams();
                if max > 0 && tenant_data.streams().len() >= max {
                    let bytes: u64 = vs.entries.iter().map(|e| e.line.len() as u64).sum();
                    discard(
                        ctx,
                        &mut delta,
                        &vs.labels_string,
                        "stream_limit",
                        total as u64,
                        bytes,
                    );
                    ingester_error = Some((429, format!(
                        "maximum active stream limit exceeded when trying to create stream {}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{t}'",
                        vs.labels_string
                    )));
                    continue;
                }
                let i = tenant_data.create(vs.labels.clone());
                ctx.metrics.stream_created(t, tenant_data.streams().len());
                i
            }
        };
        let stream_rate = limiter.streams.entry(idx).or_insert_with(|| {
            TokenBucket::new(
                limits.per_stream_rate_limit as f64,
                limits.per_stream_rate_limit_burst as f64,
                ctx.now,
            )
        });
        stream_rate.set_limits(
            limits.per_stream_rate_limit as f64,
            limits.per_stream_rate_limit_burst as f64,
        );
        let mut failures: Vec<String> = Vec::new();
        let mut rate_limited = 0usize;
        let mut rate_limited_bytes = 0u64;
        let mut written: Vec<StoredRef<'_>> = Vec::new();
        for e in &vs.entries {
            let max_ts = tenant_data.max_ts(idx);
            let cutoff = max_ts.saturating_sub(ctx.max_chunk_age_ns / 2);
            if max_ts != i64::MIN && e.ts < cutoff {
                discard(
                    ctx,
                    &mut delta,
                    &vs.labels_string,
                    "too_far_behind",
                    1,
                    e.line.len() as u64,
                );
                failures.push(format!(
                    "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}',",
                    go_time_string(e.ts),
                    rfc3339(e.ts),
                    rfc3339(cutoff)
                ));
                continue;
            }
            if limits.per_stream_rate_limit > 0
                && !stream_rate.allow_n(ctx.now, e.line.len() as f64)
            {
                rate_limited += 1;
                rate_limited_bytes += e.line.len() as u64;
                continue;
            }
            if tenant_data.insert(idx, e.ts, e.line.as_str(), &e.metadata) {
                stored += 1;
                written.push((e.ts, e.line.as_str(), &e.metadata));
            }
        }
        if !written.is_empty() {
            let bytes: u64 = written.iter().map(|w| w.1.len() as u64).sum();
            let sm: u64 = written.iter().map(|w| sm_bytes_pairs(w.2)).sum();
            delta.stored(&vs.labels_string, written.len() as u64, bytes, bytes + sm);
            tenant_data.touch(idx, ctx.now_ns);
            on_stored(&vs.labels_string, &written);
        }
        if rate_limited > 0 {
            discard(
                ctx,
                &mut delta,
                &vs.labels_string,
                "per_stream_rate_limit",
                rate_limited as u64,
                rate_limited_bytes,
            );
            ingester_error = Some((429, format!(
                "Per stream rate limit exceeded (limit: {}/sec) while attempting to ingest for stream '{}' totaling {}B, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased",
                human_bytes(limits.per_stream_rate_limit),
                vs.labels_string,
                rate_limited_bytes
            )));
        } else if !failures.is_empty() {
            let mut msg: String = failures.iter().take(10).map(|f| format!("{f}\n")).collect();
            msg.push_str(&format!(
                "user '{t}', total ignored: {} out of {total} for stream: {}",
                failures.len(),
                vs.labels_string
            ));
            ingester_error = Some((400, msg));
        }
    }
    if stored > 0 {
        tenant_data.pushes += 1;
        tenant_data.last_push_ns = Some(ctx.now_ns);
    }

    if let Some((status, msg)) = ingester_error {
        return PushOutcome {
            status,
            body: format!("{msg}\n"),
            stored,
            usage: std::mem::take(&mut delta),
        };
    }
    if !errors.is_empty() {
        return PushOutcome {
            status: 400,
            body: format!("{}\n", errors.render()),
            stored,
            usage: std::mem::take(&mut delta),
        };
    }
    PushOutcome {
        status: 204,
        body: String::new(),
        stored,
        usage: std::mem::take(&mut delta),
    }
}

/// Counts rejected entries in the metrics and the usage delta.
fn discard(
    ctx: &IngestContext<'_>,
    delta: &mut Delta,
    stream: &str,
    reason: &str,
    n: u64,
    bytes: u64,
) {
    ctx.metrics.discarded(ctx.tenant, reason, n, bytes);
    delta.rejected(stream, reason, n);
}

fn refuse_all(ctx: &IngestContext<'_>, req: &PushRequest, msg: String) -> PushOutcome {
    let lines: u64 = req.streams.iter().map(|s| s.entries.len() as u64).sum();
    let bytes: u64 = req
        .streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.line.len() as u64)
        .sum();
    ctx.metrics
        .discarded(ctx.tenant, "invalid_labels", lines, bytes);
    let mut usage = Delta::default();
    usage.rejected("", "invalid_labels", lines);
    PushOutcome {
        status: 400,
        body: format!("{msg}\n"),
        stored: 0,
        usage,
    }
}

fn validate_labels(
    limits: &Limits,
    labels: &LabelSet,
    original: &str,
) -> Result<(), (&'static str, String)> {
    if labels.is_empty() {
        return Err((
            "missing_labels",
            "error at least one label pair is required per stream".into(),
        ));
    }
    let count = labels.iter().filter(|(k, _)| *k != "service_name").count();
    if count > limits.max_label_names_per_series {
        return Err((
            "max_label_names_per_series",
            format!(
                "entry for stream '{original}' has {count} label names; limit {}",
                limits.max_label_names_per_series
            ),
        ));
    }
    for (k, v) in labels.iter() {
        if !is_valid_label_name(k) {
            return Err((
                "invalid_labels",
                format!("couldn't parse labels: invalid label name {k:?}"),
            ));
        }
        if k.len() > limits.max_label_name_length {
            return Err((
                "label_name_too_long",
                format!("stream '{original}' has label name too long: '{k}'"),
            ));
        }
        if v.len() > limits.max_label_value_length {
            return Err((
                "label_value_too_long",
                format!("stream '{original}' has label value too long: '{v}'"),
            ));
        }
    }
    if let Some(dup) = labels.duplicate_name() {
        return Err((
            "duplicate_label_names",
            format!("stream '{original}' has duplicate label name: '{dup}'"),
        ));
    }
    Ok(())
}

fn sm_bytes(sm: &[loki_wire::LabelPairAdapter]) -> u64 {
    sm.iter()
        .filter(|p| p.name != DETECTED_LEVEL)
        .map(|p| (p.name.len() + p.value.len()) as u64)
        .sum()
}

fn sm_bytes_pairs(sm: &[(String, String)]) -> u64 {
    sm.iter()
        .filter(|(k, _)| k != DETECTED_LEVEL)
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum()
}

/// Go's `humanize.Bytes`-like rendering used in the per-stream rate message.
fn human_bytes(b: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_errors_render_like_loki() {
        let mut e = Errors::default();
        e.add("a".into());
        e.add("b".into());
        e.add("a".into());
        assert_eq!(e.render(), "2 errors like: a; b");
    }

    #[test]
    fn time_formats() {
        assert_eq!(rfc3339(1_795_317_900_500_000_000), "2026-11-22T03:25:00Z");
        assert_eq!(
            go_time_string(1_500_000_000),
            "1970-01-01 00:00:01.5 +0000 UTC"
        );
        assert_eq!(go_time_string(0), "1970-01-01 00:00:00 +0000 UTC");
    }
}
