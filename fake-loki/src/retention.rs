//! Retention as Loki's compactor applies it, and the query lookback limit.
//!
//! A stream's retention is the period of the highest-priority `retention_stream` rule
//! whose selector matches it (equal priorities: the shorter period), else the
//! tenant's `retention_period`; 0 keeps entries forever (Loki's default). An entry is
//! expired once `now - ts > period`. Expired entries are hidden from every read at
//! once (each query sees a stream from a floor) and deleted by a periodic sweep, which
//! drops whole blocks and hands the memory back to the OS. `max_query_lookback` is a
//! floor too, and clamps the `start` of range and metadata queries.

use std::sync::Arc;
use std::time::Duration;

use loki_wire::LabelSet;
use tokio::sync::watch;

use crate::limits::Limits;
use crate::store::Expired;
use crate::State;

/// Loki's compactor runs every `compaction_interval`, 10m by default.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// The retention period of a stream (ns; 0 = forever), as Loki's `RetentionPeriodFor`.
pub fn period_for(limits: &Limits, labels: &LabelSet) -> i64 {
    let mut best: Option<(i64, i64)> = None; // (priority, period)
    for rule in &limits.retention_stream {
        if !rule.matchers.iter().all(|m| m.matches_labels(labels)) {
            continue;
        }
        best = match best {
            // A higher priority wins; at equal priority the shorter period does.
            Some((p, d)) if p > rule.priority || (p == rule.priority && d <= rule.period) => {
                Some((p, d))
            }
            _ => Some((rule.priority, rule.period)),
        };
    }
    best.map_or(limits.retention_period, |(_, d)| d)
}

/// The oldest timestamp a period keeps at `now_ns` (`i64::MIN` for 0: keep everything).
pub fn cutoff(now_ns: i64, period_ns: i64) -> i64 {
    if period_ns <= 0 {
        i64::MIN
    } else {
        now_ns.saturating_sub(period_ns)
    }
}

/// The oldest timestamp a reader may see of a stream: its retention cutoff, raised to
/// `now - max_query_lookback` when a lookback is set.
pub fn read_floor(limits: &Limits, labels: &LabelSet, now_ns: i64) -> i64 {
    cutoff(now_ns, period_for(limits, labels)).max(cutoff(now_ns, limits.max_query_lookback))
}

/// The lookback of a query over `tenants`: the smallest non-zero one (Loki's
/// `SmallestPositiveNonZeroDurationPerTenant`), 0 when none is set.
pub fn max_query_lookback<'a>(limits: impl IntoIterator<Item = &'a Limits>) -> i64 {
    limits
        .into_iter()
        .map(|l| l.max_query_lookback)
        .filter(|d| *d > 0)
        .min()
        .unwrap_or(0)
}

/// A query window after Loki's lookback clamp: `None` when it ends before
/// `now - lookback` (Loki answers an empty result without running it), else the window
/// with `start` raised to `now - lookback`.
pub fn clamp_window(start: i64, end: i64, lookback: i64, now_ns: i64) -> Option<(i64, i64)> {
    if lookback <= 0 {
        return Some((start, end));
    }
    let min_start = now_ns.saturating_sub(lookback);
    if end < min_start {
        return None;
    }
    Some((start.max(min_start), end))
}

/// Deletes every tenant's expired entries now. Returns what went, per tenant with
/// something deleted.
pub fn sweep(state: &State) -> Vec<(String, Expired)> {
    let now = state.config.clock.now_ns();
    let tenants: Vec<String> = state.store.read().tenants.keys().cloned().collect();
    let mut out = Vec::new();
    for t in tenants {
        let limits = state.config.limits.for_tenant(&t);
        if limits.retention_period <= 0 && limits.retention_stream.is_empty() {
            continue;
        }
        // One tenant at a time, so pushes to the others are not held up.
        let mut by_stream: Vec<(String, u64, u64)> = Vec::new();
        let expired = {
            let mut store = state.store.write();
            let data = store.tenant_mut(&t);
            data.expire(
                |labels| cutoff(now, period_for(limits, labels)),
                |stream, n, bytes| by_stream.push((stream.to_string(), n, bytes)),
            )
        };
        if expired.entries > 0 {
            let mut ledger = state.usage.lock();
            for (stream, n, bytes) in &by_stream {
                ledger.expired(now, &t, stream, *n, *bytes);
            }
            if let Err(e) = ledger.maybe_save() {
                tracing::warn!(error = %e, "saving the usage ledger");
            }
            drop(ledger);
            state
                .metrics
                .retention_expired(&t, expired.entries, expired.bytes);
            out.push((t, expired));
        }
    }
    if !out.is_empty() {
        crate::alloc_trim::trim();
        for (t, e) in &out {
            tracing::info!(
                tenant = %t,
                entries = e.entries,
                bytes = e.bytes,
                streams_emptied = e.streams_emptied,
                "retention deleted expired entries"
            );
        }
    }
    out
}

/// Sweeps every `every` until shutdown.
pub async fn run(state: Arc<State>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the first sweep waits one interval
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let s = state.clone();
        // The sweep takes the store lock and walks every stream: off the async workers.
        if tokio::task::spawn_blocking(move || sweep(&s))
            .await
            .is_err()
        {
            tracing::warn!("the retention sweep panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::StreamRetention;

    const DAY: i64 = 86_400_000_000_000;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        LabelSet::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn the_highest_priority_rule_wins_ties_go_to_the_shorter_period() {
        let limits = Limits {
            retention_period: 30 * DAY,
            retention_stream: vec![
                StreamRetention::new(r#"{ns="dev"}"#, 1, 7 * DAY).unwrap(),
                StreamRetention::new(r#"{ns="dev", app="audit"}"#, 5, 365 * DAY).unwrap(),
                StreamRetention::new(r#"{app=~"x|y"}"#, 2, 4 * DAY).unwrap(),
                StreamRetention::new(r#"{app="y"}"#, 2, 2 * DAY).unwrap(),
                StreamRetention::new(r#"{app="y"}"#, 2, 3 * DAY).unwrap(),
            ],
            ..Limits::default()
        };
        assert_eq!(period_for(&limits, &labels(&[("ns", "prod")])), 30 * DAY);
        assert_eq!(period_for(&limits, &labels(&[("ns", "dev")])), 7 * DAY);
        assert_eq!(
            period_for(&limits, &labels(&[("ns", "dev"), ("app", "audit")])),
            365 * DAY
        );
        // Priority 2 beats priority 1 even with a longer period.
        assert_eq!(
            period_for(&limits, &labels(&[("ns", "dev"), ("app", "x")])),
            4 * DAY
        );
        // Three priority-2 rules match: the shortest period wins, whatever the order.
        assert_eq!(period_for(&limits, &labels(&[("app", "y")])), 2 * DAY);
        assert_eq!(period_for(&Limits::default(), &labels(&[("a", "b")])), 0);
    }

    #[test]
    fn cutoffs_floors_and_the_lookback_clamp() {
        assert_eq!(cutoff(100, 0), i64::MIN);
        assert_eq!(cutoff(100, 30), 70);
        let limits = Limits {
            retention_period: 30,
            max_query_lookback: 10,
            ..Limits::default()
        };
        assert_eq!(read_floor(&limits, &labels(&[("a", "b")]), 100), 90);
        let a = Limits {
            max_query_lookback: 50,
            ..Limits::default()
        };
        let none = Limits::default();
        assert_eq!(max_query_lookback([&a, &none, &limits]), 10);
        assert_eq!(max_query_lookback([&none]), 0);
        assert_eq!(clamp_window(0, 100, 0, 100), Some((0, 100)));
        assert_eq!(clamp_window(0, 100, 10, 100), Some((90, 100)));
        assert_eq!(clamp_window(95, 100, 10, 100), Some((95, 100)));
        assert_eq!(clamp_window(0, 89, 10, 100), None);
        assert_eq!(clamp_window(0, 90, 10, 100), Some((90, 90)));
    }
}
