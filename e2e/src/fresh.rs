//! Freshness (`e2e check --max-lag`): is every source still arriving, and how late is it?
//!
//! Per source and per Loki stream: the newest entry's timestamp (from the checker's scan) and the
//! last push that stored data for it (from fake-loki's `loki_fake_stream_last_push_age_seconds`
//! gauges when the Loki is a fake-loki; otherwise the newest entry stands in for it).
//!
//! A source's **lag** is `now - newest entry timestamp`: how old the freshest evidence of that
//! source in Loki is. It is **late** when the lag is strictly over `--max-lag`, and **silent** when
//! the manifest expects it but Loki holds nothing of it. The last push time is reported next to
//! the lag to tell "the pipeline stopped pushing" (old push) from "the source stopped writing or
//! its entries are stuck behind a backlog" (recent push, old entries); the verdict uses the lag.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::Hit;
use crate::manifest::Manifest;
use crate::marker::SourceId;
use crate::usage::Sample;

/// When a stream last stored data, as fake-loki reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushTime {
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    pub last_push_ns: i64,
}

/// Reads `loki_fake_stream_last_push_age_seconds{tenant,stream}` from a scrape taken at `now_ns`.
pub fn push_times(samples: &[Sample], now_ns: i64) -> Vec<PushTime> {
    samples
        .iter()
        .filter(|s| s.name == "loki_fake_stream_last_push_age_seconds" && s.value.is_finite())
        .filter_map(|s| {
            let tenant = s.labels.get("tenant")?.clone();
            let labels = parse_label_set(s.labels.get("stream")?)?;
            // Age in seconds with ms resolution is all the gauge carries.
            let age_ns = (s.value * 1e3).round() as i64 * 1_000_000;
            Some(PushTime {
                tenant,
                labels,
                last_push_ns: now_ns - age_ns,
            })
        })
        .collect()
}

/// Parses a Loki label set `{a="x", b="y"}` (the same quoting as Prometheus label values).
pub fn parse_label_set(s: &str) -> Option<BTreeMap<String, String>> {
    let samples = crate::usage::parse_prometheus(&format!("x{s} 0"));
    samples.into_iter().next().map(|x| x.labels)
}

/// Renders labels as a Loki label set.
pub fn render_label_set(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// A source's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Fresh,
    Late,
    Silent,
}

/// Freshness of one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFreshness {
    pub id: String,
    pub tenant: String,
    pub newest_ts_ns: Option<i64>,
    pub lag_ms: Option<i64>,
    pub last_push_ns: Option<i64>,
    /// `fake-loki` (its stream gauges) or `newest-entry` (stand-in).
    pub last_push_from: &'static str,
    pub state: State,
}

/// Freshness of one stream as Loki returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamFreshness {
    pub tenant: String,
    pub stream: String,
    pub newest_ts_ns: i64,
    pub lag_ms: i64,
    pub last_push_ns: Option<i64>,
    pub late: bool,
}

/// The freshness section of a check report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freshness {
    pub max_lag_ms: u64,
    pub now_ns: i64,
    pub late: Vec<String>,
    pub silent: Vec<String>,
    pub sources: Vec<SourceFreshness>,
    pub streams: Vec<StreamFreshness>,
}

/// The rule, on its own so it can be tested for any input: late exactly when over the threshold.
pub fn is_late(lag_ns: i64, max_lag_ms: u64) -> bool {
    i128::from(lag_ns) > i128::from(max_lag_ms) * 1_000_000
}

fn labels_match_source(labels: &BTreeMap<String, String>, s: &SourceId) -> bool {
    let eq = |k: &str, v: &str| labels.get(k).is_some_and(|x| x == v);
    eq("namespace", &s.namespace)
        && eq("pod", &s.pod)
        && eq("container", &s.container)
        && eq("cluster", &s.cluster)
        && labels.get("stream").is_none_or(|x| *x == s.stream)
}

/// Freshness of every manifest source and every stream in `hits` (entries found in a tenant other
/// than their own are leaks, judged elsewhere, and ignored here).
pub fn freshness(
    manifest: &Manifest,
    hits: &[Hit],
    pushes: &[PushTime],
    now_ns: i64,
    max_lag_ms: u64,
) -> Freshness {
    let mut newest_src: BTreeMap<&str, i64> = BTreeMap::new();
    let mut newest_stream: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for h in hits {
        let cluster = h.src.split('/').next().unwrap_or("");
        if manifest.tenant_of(cluster) != Some(h.tenant.as_str()) {
            continue;
        }
        let n = newest_src.entry(h.src.as_str()).or_insert(h.ts_ns);
        *n = (*n).max(h.ts_ns);
        let n = newest_stream
            .entry((h.tenant.as_str(), h.stream.as_str()))
            .or_insert(h.ts_ns);
        *n = (*n).max(h.ts_ns);
    }
    let mut out = Freshness {
        max_lag_ms,
        now_ns,
        late: Vec::new(),
        silent: Vec::new(),
        sources: Vec::new(),
        streams: Vec::new(),
    };
    for rec in &manifest.sources {
        let newest = newest_src.get(rec.id.as_str()).copied();
        let pushed = SourceId::parse(&rec.id).and_then(|s| {
            pushes
                .iter()
                .filter(|p| p.tenant == rec.tenant && labels_match_source(&p.labels, &s))
                .map(|p| p.last_push_ns)
                .max()
        });
        let lag = newest.map(|n| now_ns.saturating_sub(n));
        let state = match lag {
            None => State::Silent,
            Some(l) if is_late(l, max_lag_ms) => State::Late,
            Some(_) => State::Fresh,
        };
        match state {
            State::Late => out.late.push(rec.id.clone()),
            State::Silent => out.silent.push(rec.id.clone()),
            State::Fresh => {}
        }
        out.sources.push(SourceFreshness {
            id: rec.id.clone(),
            tenant: rec.tenant.clone(),
            newest_ts_ns: newest,
            lag_ms: lag.map(|l| l / 1_000_000),
            last_push_ns: pushed.or(newest),
            last_push_from: if pushed.is_some() {
                "fake-loki"
            } else {
                "newest-entry"
            },
            state,
        });
    }
    for ((tenant, stream), newest) in newest_stream {
        let labels = parse_label_set(stream).unwrap_or_default();
        let pushed = pushes
            .iter()
            .filter(|p| {
                p.tenant == tenant && p.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|p| p.last_push_ns)
            .max();
        let lag = now_ns.saturating_sub(newest);
        out.streams.push(StreamFreshness {
            tenant: tenant.to_owned(),
            stream: stream.to_owned(),
            newest_ts_ns: newest,
            lag_ms: lag / 1_000_000,
            last_push_ns: pushed,
            late: is_late(lag, max_lag_ms),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ClusterInfo, SourceRecord, Totals};
    use proptest::prelude::*;

    fn manifest(n: usize) -> Manifest {
        let sources = (0..n)
            .map(|i| {
                let id = format!("ops/ns/p{i}/app/stdout");
                SourceRecord {
                    id,
                    cluster: "ops".into(),
                    tenant: "t-ops".into(),
                    namespace: "ns".into(),
                    pod: format!("p{i}"),
                    pod_uid: "u".into(),
                    container: "app".into(),
                    stream: "stdout".into(),
                    count: 1,
                    first_seq: 1,
                    last_seq: 1,
                    first_ts_ns: 0,
                    last_ts_ns: 0,
                    bytes: 0,
                    pod_deleted: false,
                }
            })
            .collect();
        Manifest {
            version: 1,
            run_id: "r".into(),
            seed: 0,
            started_ns: 0,
            finished_ns: 0,
            clusters: vec![ClusterInfo {
                name: "ops".into(),
                tenant: "t-ops".into(),
            }],
            totals: Totals::default(),
            sources,
        }
    }

    fn hit(i: usize, ts: i64) -> Hit {
        let labels = BTreeMap::from([
            ("cluster".to_owned(), "ops".to_owned()),
            ("container".to_owned(), "app".to_owned()),
            ("namespace".to_owned(), "ns".to_owned()),
            ("pod".to_owned(), format!("p{i}")),
        ]);
        Hit {
            tenant: "t-ops".into(),
            src: format!("ops/ns/p{i}/app/stdout"),
            seq: 1,
            ts_ns: ts,
            labels_ok: true,
            stream: render_label_set(&labels),
        }
    }

    #[test]
    fn label_sets_round_trip_and_push_gauges_are_read() {
        let l = BTreeMap::from([
            ("a".to_owned(), "x\"y".to_owned()),
            ("b".to_owned(), "z".to_owned()),
        ]);
        assert_eq!(parse_label_set(&render_label_set(&l)), Some(l));
        let s = crate::usage::parse_prometheus(
            "loki_fake_stream_last_push_age_seconds{tenant=\"t-ops\",stream=\"{cluster=\\\"ops\\\", container=\\\"app\\\", namespace=\\\"ns\\\", pod=\\\"p0\\\"}\"} 2.5\n",
        );
        let p = push_times(&s, 10_000_000_000);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].last_push_ns, 7_500_000_000);
        let m = manifest(2);
        let f = freshness(&m, &[hit(0, 9_000_000_000)], &p, 10_000_000_000, 500);
        assert_eq!(f.late, vec!["ops/ns/p0/app/stdout".to_owned()]);
        assert_eq!(f.silent, vec!["ops/ns/p1/app/stdout".to_owned()]);
        assert_eq!(f.sources[0].last_push_ns, Some(7_500_000_000));
        assert_eq!(f.sources[0].last_push_from, "fake-loki");
        assert_eq!(f.streams.len(), 1);
        assert_eq!(f.streams[0].last_push_ns, Some(7_500_000_000));
        assert!(f.streams[0].late);
    }

    proptest! {
        /// For any newest timestamps, now and threshold: a source is late exactly when its lag is
        /// over the threshold (equal is not late), silent exactly when it has no entry.
        #[test]
        fn late_exactly_when_lag_is_over_the_threshold(
            newest in prop::collection::vec(prop::option::of(0i64..1_000_000_000_000), 1..12),
            now in 0i64..2_000_000_000_000,
            max_lag_ms in 0u64..2_000_000,
            exact in any::<bool>(),
        ) {
            let m = manifest(newest.len());
            let mut newest = newest;
            if exact {
                // Put one source exactly on the threshold.
                newest[0] = Some(now - max_lag_ms as i64 * 1_000_000);
            }
            let hits: Vec<Hit> = newest.iter().enumerate()
                .filter_map(|(i, n)| n.map(|ts| hit(i, ts)))
                .collect();
            let f = freshness(&m, &hits, &[], now, max_lag_ms);
            for (i, n) in newest.iter().enumerate() {
                let id = format!("ops/ns/p{i}/app/stdout");
                let want_late = n.is_some_and(|ts| now - ts > max_lag_ms as i64 * 1_000_000);
                prop_assert_eq!(f.late.contains(&id), want_late);
                prop_assert_eq!(f.silent.contains(&id), n.is_none());
                prop_assert_eq!(f.sources[i].newest_ts_ns, *n);
            }
            if exact {
                prop_assert!(!f.late.contains(&"ops/ns/p0/app/stdout".to_owned()));
            }
        }
    }
}
