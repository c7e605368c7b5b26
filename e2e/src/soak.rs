//! The soak (`e2e soak`): a long local run with a repeating cycle of faults — a 429 storm, a
//! Loki outage (fake-loki killed and restarted on its data dir), `kill -9` of an agent, 5xx and
//! connection resets, a stalled Loki — on top of rotation storms (small rotate size) and pod
//! churn, with every process's resident memory sampled over time. Verdict: nothing missing, no
//! duplicates, and memory that does not creep.
//!
//! "Flat" is judged per process on the sampled series, ignoring the first cycle (warm-up):
//! - an agent's peak in the last third of the run may exceed its peak in the first third (after
//!   warm-up) by at most `agent_growth` (ratio) plus a small absolute slack;
//! - fake-loki holds every stored line, so its memory grows with the data by design; what must
//!   not happen is the growth *accelerating*: its growth per cycle in the last cycle may be at
//!   most `loki_growth` times the median growth per cycle before it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::{Action, RssSample, TimedAction};

/// A memory figure under this many KiB of change is noise (allocator arenas, page cache of the
/// process's own files), not a trend.
const SLACK_KIB: u64 = 8 * 1024;

/// The fault schedule of one cycle, as fractions of the cycle length, repeated for the whole
/// run. Each cycle kills a different cluster's agent (round robin).
pub fn schedule(duration: Duration, cycle: Duration, clusters: &[String]) -> Vec<TimedAction> {
    let mut out = Vec::new();
    if cycle.is_zero() || clusters.is_empty() {
        return out;
    }
    let n = (duration.as_secs_f64() / cycle.as_secs_f64()).floor() as u32;
    for i in 0..n {
        let base = cycle * i;
        let at = |f: f64| base + cycle.mul_f64(f);
        let victim = clusters[i as usize % clusters.len()].clone();
        let rule = |v: serde_json::Value| Action::Fault(v);
        let steps = [
            (
                0.05,
                rule(serde_json::json!({"action": "status", "status": 429,
                    "retry_after_seconds": 1, "probability": 0.7})),
            ),
            (0.20, Action::ClearFaults),
            (0.25, Action::StopLoki),
            (0.32, Action::StartLoki),
            (0.42, Action::KillAgent(victim.clone())),
            (0.44, Action::StartAgent(victim)),
            (
                0.52,
                rule(serde_json::json!({"action": "status", "status": 503, "probability": 0.3})),
            ),
            (
                0.58,
                rule(serde_json::json!({"action": "reset", "probability": 0.2})),
            ),
            (0.66, Action::ClearFaults),
            (
                0.74,
                rule(serde_json::json!({"action": "latency", "latency_ms": 3000,
                    "probability": 0.5})),
            ),
            (0.84, Action::ClearFaults),
        ];
        out.extend(
            steps
                .into_iter()
                .map(|(f, action)| TimedAction { at: at(f), action }),
        );
    }
    out
}

/// How a process's memory behaved over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryTrend {
    pub process: String,
    pub samples: usize,
    pub first_kib: u64,
    pub last_kib: u64,
    pub max_kib: u64,
    /// Agents: peak after warm-up in the first third; fake-loki: median growth per cycle.
    pub early_kib: u64,
    /// Agents: peak in the last third; fake-loki: growth in the last cycle.
    pub late_kib: u64,
    pub flat: bool,
    pub rule: String,
}

/// Limits for [`trends`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flatness {
    pub agent_growth: f64,
    pub loki_growth: f64,
}

impl Default for Flatness {
    fn default() -> Self {
        Flatness {
            agent_growth: 1.3,
            loki_growth: 2.0,
        }
    }
}

/// Judges every process's series. `run_secs` is the generator's duration, `cycle_secs` the
/// fault cycle (the warm-up to ignore).
pub fn trends(
    samples: &[RssSample],
    run_secs: f64,
    cycle_secs: f64,
    limits: Flatness,
) -> Vec<MemoryTrend> {
    let mut by_process: BTreeMap<&str, Vec<(f64, u64)>> = BTreeMap::new();
    for s in samples {
        by_process
            .entry(&s.process)
            .or_default()
            .push((s.at_secs, s.rss_kib));
    }
    by_process
        .into_iter()
        .filter(|(_, series)| !series.is_empty())
        .map(|(process, series)| {
            let first_kib = series.first().map_or(0, |s| s.1);
            let last_kib = series.last().map_or(0, |s| s.1);
            let max_kib = series.iter().map(|s| s.1).max().unwrap_or(0);
            let (early_kib, late_kib, flat, rule) = if process == "fake-loki" {
                loki_trend(&series, run_secs, cycle_secs, limits.loki_growth)
            } else {
                agent_trend(&series, run_secs, cycle_secs, limits.agent_growth)
            };
            MemoryTrend {
                process: process.to_owned(),
                samples: series.len(),
                first_kib,
                last_kib,
                max_kib,
                early_kib,
                late_kib,
                flat,
                rule,
            }
        })
        .collect()
}

fn peak(series: &[(f64, u64)], from: f64, to: f64) -> u64 {
    series
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|s| s.1)
        .max()
        .unwrap_or(0)
}

fn agent_trend(
    series: &[(f64, u64)],
    run: f64,
    cycle: f64,
    growth: f64,
) -> (u64, u64, bool, String) {
    let warm = cycle.min(run / 3.0);
    let early = peak(series, warm, run / 3.0);
    let late = peak(series, run * 2.0 / 3.0, f64::INFINITY);
    let allowed = (early as f64 * growth) as u64 + SLACK_KIB;
    let flat = early == 0 || late <= allowed;
    let rule = format!(
        "late peak {} MiB <= {growth} x early peak {} MiB + {} MiB",
        late / 1024,
        early / 1024,
        SLACK_KIB / 1024
    );
    (early, late, flat, rule)
}

fn loki_trend(
    series: &[(f64, u64)],
    run: f64,
    cycle: f64,
    growth: f64,
) -> (u64, u64, bool, String) {
    // Growth per cycle: the last sample of each cycle minus the last sample of the one before.
    let cycles = (run / cycle).floor().max(0.0) as usize;
    let at_end_of = |k: usize| {
        let end = cycle * k as f64;
        series.iter().rfind(|(t, _)| *t <= end).map(|s| s.1)
    };
    let mut growths: Vec<u64> = (2..=cycles)
        .filter_map(|k| Some(at_end_of(k)?.saturating_sub(at_end_of(k - 1)?)))
        .collect();
    let Some(last) = growths.pop() else {
        return (0, 0, true, "fewer than three cycles: not judged".into());
    };
    if growths.is_empty() {
        return (0, last, true, "fewer than three cycles: not judged".into());
    }
    growths.sort_unstable();
    let median = growths[growths.len() / 2];
    let allowed = (median as f64 * growth) as u64 + SLACK_KIB;
    let flat = last <= allowed;
    let rule = format!(
        "last cycle's growth {} MiB <= {growth} x median growth per cycle {} MiB + {} MiB",
        last / 1024,
        median / 1024,
        SLACK_KIB / 1024
    );
    (median, last, flat, rule)
}

/// The memory table: one row per process, and the series in steps of `step_secs`.
pub fn render(trends: &[MemoryTrend], samples: &[RssSample], step_secs: f64) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "memory (RSS, MiB):");
    for t in trends {
        let _ = writeln!(
            o,
            "  {:<14} first {:>7.1}  last {:>7.1}  max {:>7.1}  {}  ({})",
            t.process,
            t.first_kib as f64 / 1024.0,
            t.last_kib as f64 / 1024.0,
            t.max_kib as f64 / 1024.0,
            if t.flat { "flat" } else { "GROWING" },
            t.rule
        );
    }
    if step_secs > 0.0 {
        let mut rows: BTreeMap<u64, BTreeMap<&str, u64>> = BTreeMap::new();
        for s in samples {
            let bucket = (s.at_secs / step_secs).floor() as u64;
            let v = rows
                .entry(bucket)
                .or_default()
                .entry(&s.process)
                .or_insert(0);
            *v = (*v).max(s.rss_kib);
        }
        let names: Vec<&str> = trends.iter().map(|t| t.process.as_str()).collect();
        let _ = write!(o, "  {:>8}", "minute");
        for n in &names {
            let _ = write!(o, " {n:>14}");
        }
        let _ = writeln!(o);
        for (bucket, row) in rows {
            let _ = write!(o, "  {:>8.1}", bucket as f64 * step_secs / 60.0);
            for n in &names {
                match row.get(n) {
                    Some(v) => {
                        let _ = write!(o, " {:>14.1}", *v as f64 / 1024.0);
                    }
                    None => {
                        let _ = write!(o, " {:>14}", "-");
                    }
                }
            }
            let _ = writeln!(o);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, p: &str, mib: u64) -> RssSample {
        RssSample {
            at_secs: at,
            process: p.into(),
            rss_kib: mib * 1024,
        }
    }

    #[test]
    fn schedule_repeats_each_cycle_and_rotates_the_victim() {
        let clusters = vec!["ops".to_string(), "dev".to_string()];
        let s = schedule(
            Duration::from_secs(600),
            Duration::from_secs(300),
            &clusters,
        );
        assert_eq!(s.len(), 22);
        let kills: Vec<_> = s
            .iter()
            .filter_map(|a| match &a.action {
                Action::KillAgent(c) => Some((a.at, c.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            kills,
            vec![
                (Duration::from_secs(126), "ops".to_string()),
                (Duration::from_secs(426), "dev".to_string())
            ]
        );
        // Every fault is cleared and every outage ended within its cycle.
        for i in 0..2u64 {
            let in_cycle: Vec<_> = s
                .iter()
                .filter(|a| {
                    a.at >= Duration::from_secs(300 * i)
                        && a.at < Duration::from_secs(300 * (i + 1))
                })
                .collect();
            assert!(matches!(
                in_cycle.last().map(|a| &a.action),
                Some(Action::ClearFaults)
            ));
            let stops = in_cycle
                .iter()
                .filter(|a| a.action == Action::StopLoki)
                .count();
            let starts = in_cycle
                .iter()
                .filter(|a| a.action == Action::StartLoki)
                .count();
            assert_eq!((stops, starts), (1, 1));
        }
        assert!(schedule(
            Duration::from_secs(299),
            Duration::from_secs(300),
            &clusters
        )
        .is_empty());
    }

    #[test]
    fn a_steady_agent_is_flat_and_a_creeping_one_is_not() {
        let mut steady = Vec::new();
        let mut creeping = Vec::new();
        for i in 0..180 {
            let t = i as f64 * 10.0;
            steady.push(sample(
                t,
                "agent-ops",
                if i < 3 { 10 } else { 40 + (i % 5) },
            ));
            creeping.push(sample(t, "agent-dev", 40 + i / 2));
        }
        let all: Vec<_> = steady.into_iter().chain(creeping).collect();
        let t = trends(&all, 1800.0, 300.0, Flatness::default());
        let by: BTreeMap<_, _> = t.iter().map(|t| (t.process.as_str(), t)).collect();
        assert!(by["agent-ops"].flat, "{:?}", by["agent-ops"]);
        assert!(!by["agent-dev"].flat, "{:?}", by["agent-dev"]);
        assert_eq!(by["agent-dev"].max_kib, (40 + 179 / 2) * 1024);
    }

    #[test]
    fn loki_growing_with_data_is_flat_but_accelerating_is_not() {
        let linear: Vec<_> = (0..=180)
            .map(|i| sample(i as f64 * 10.0, "fake-loki", 100 + i * 2))
            .collect();
        let t = trends(&linear, 1800.0, 300.0, Flatness::default());
        assert!(t[0].flat, "{:?}", t[0]);
        let accel: Vec<_> = (0..=180u64)
            .map(|i| {
                sample(
                    i as f64 * 10.0,
                    "fake-loki",
                    100 + if i <= 150 { i } else { 150 + (i - 150) * 20 },
                )
            })
            .collect();
        let t = trends(&accel, 1800.0, 300.0, Flatness::default());
        assert!(!t[0].flat, "{:?}", t[0]);
    }

    #[test]
    fn render_lists_every_process_and_minute() {
        let s = vec![sample(0.0, "agent-ops", 10), sample(60.0, "fake-loki", 20)];
        let t = trends(&s, 120.0, 60.0, Flatness::default());
        let text = render(&t, &s, 60.0);
        assert!(text.contains("agent-ops"), "{text}");
        assert!(text.contains("fake-loki"), "{text}");
        assert!(text.contains("     0.0"), "{text}");
        assert!(text.contains("     1.0"), "{text}");
    }
}
