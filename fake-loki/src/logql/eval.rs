//! Query evaluation: merged log reads with limit/direction/interval, and metric queries
//! (range aggregations over step windows, vector aggregations).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use loki_wire::LabelSet;

use super::ast::*;
use super::matcher::MatchOp;
use super::pipeline::{Lbs, Pipeline, ERROR_LABEL};
use super::{matching, range_fns, unwrap};
use super::{Direction, Error, ExecStats, Source, SourceStream};
use crate::store::EntryRef;

/// Loki's `max_query_series` default.
pub const MAX_SERIES: usize = 500;

/// One returned log entry with its labels in both encodings.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub ts: i64,
    pub line: String,
    /// Stream + structured metadata + parsed labels, folded.
    pub folded: LabelSet,
    /// Indexed labels only (categorize-labels encoding).
    pub stream: LabelSet,
    pub meta: Vec<(String, String)>,
    pub parsed: Vec<(String, String)>,
}

/// Stream labels folded with structured metadata (stream labels win).
fn fold_meta(stream: &LabelSet, meta: &[(String, String)]) -> LabelSet {
    let mut pairs: Vec<(String, String)> = stream.pairs().to_vec();
    for (k, v) in meta {
        if stream.get(k).is_none() && !pairs.iter().any(|(pk, _)| pk == k) {
            pairs.push((k.clone(), v.clone()));
        }
    }
    LabelSet::from_pairs(pairs)
}

fn sorted_meta(meta: &[(String, String)]) -> Vec<(String, String)> {
    let mut m: Vec<(String, String)> = meta
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    m.sort();
    m
}

type EntryIter<'a> = Box<dyn Iterator<Item = EntryRef<'a>> + 'a>;

/// An entry that passed the pipeline, waiting in the merge heap.
struct Head<'a> {
    ts: i64,
    line: std::borrow::Cow<'a, str>,
    meta: &'a [(String, String)],
    lbs: Option<Lbs>,
}

struct Cursor<'a> {
    labels: &'a LabelSet,
    it: EntryIter<'a>,
}

fn count_entry(stats: &mut ExecStats, e: &EntryRef<'_>) {
    stats.lines_processed += 1;
    stats.bytes_processed += e.line.len() as u64;
    stats.structured_metadata_bytes_processed += e
        .metadata
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum::<u64>();
}

fn next_head<'a>(c: &mut Cursor<'a>, p: &Pipeline<'_>, stats: &mut ExecStats) -> Option<Head<'a>> {
    for e in c.it.by_ref() {
        count_entry(stats, &e);
        if !p.prefilter(e.line) {
            continue;
        }
        if p.is_filter_only() {
            return Some(Head {
                ts: e.ts,
                line: std::borrow::Cow::Borrowed(e.line),
                meta: e.metadata,
                lbs: None,
            });
        }
        let mut l = Lbs::new(c.labels, e.metadata);
        if let Some(line) = p.run_rest(e.ts, e.line, &mut l) {
            return Some(Head {
                ts: e.ts,
                line: std::borrow::Cow::Owned(line),
                meta: e.metadata,
                lbs: Some(l),
            });
        }
    }
    None
}

/// Runs a log query: `start <= ts < end`, at most `limit` entries across all streams.
pub fn exec_log(
    log: &LogExpr,
    src: &dyn Source,
    start: i64,
    end: i64,
    limit: usize,
    dir: Direction,
    interval: i64,
) -> (Vec<LogEntry>, ExecStats) {
    let mut stats = ExecStats::default();
    let mut streams: Vec<SourceStream<'_>> = src.select(&log.matchers);
    // Ties between streams go to the smaller label string, as Loki's heap iterator does.
    streams.sort_by_cached_key(|s| s.labels.to_string());
    let pipeline = Pipeline::new(&log.stages);
    let mut cursors: Vec<Cursor<'_>> = streams
        .iter()
        .map(|s| {
            let r = s.stream.range(start, end);
            let it: EntryIter<'_> = match dir {
                Direction::Forward => Box::new(r),
                Direction::Backward => Box::new(r.rev()),
            };
            Cursor {
                labels: s.labels.as_ref(),
                it,
            }
        })
        .collect();
    let key = |ts: i64| -> i128 {
        match dir {
            Direction::Forward => i128::from(ts),
            Direction::Backward => -i128::from(ts),
        }
    };
    let mut heads: Vec<Option<Head<'_>>> = Vec::with_capacity(cursors.len());
    let mut heap = BinaryHeap::new();
    for (i, c) in cursors.iter_mut().enumerate() {
        let h = next_head(c, &pipeline, &mut stats);
        if let Some(h) = &h {
            heap.push(Reverse((key(h.ts), i)));
        }
        heads.push(h);
    }
    let mut out = Vec::new();
    let mut last: Option<i64> = None;
    while out.len() < limit {
        let Some(Reverse((_, i))) = heap.pop() else {
            break;
        };
        let Some(h) = heads[i].take() else {
            continue;
        };
        let emit = match (interval, last) {
            (0, _) | (_, None) => true,
            (iv, Some(l)) => match dir {
                Direction::Forward => h.ts >= l.saturating_add(iv),
                Direction::Backward => h.ts <= l.saturating_sub(iv),
            },
        };
        if emit {
            last = Some(h.ts);
            out.push(materialise(cursors[i].labels, h));
        }
        let next = next_head(&mut cursors[i], &pipeline, &mut stats);
        if let Some(n) = &next {
            heap.push(Reverse((key(n.ts), i)));
        }
        heads[i] = next;
    }
    stats.entries_returned = out.len() as u64;
    (out, stats)
}

fn materialise(labels: &LabelSet, h: Head<'_>) -> LogEntry {
    match h.lbs {
        None => LogEntry {
            ts: h.ts,
            line: h.line.into_owned(),
            folded: fold_meta(labels, h.meta),
            stream: labels.clone(),
            meta: sorted_meta(h.meta),
            parsed: Vec::new(),
        },
        Some(l) => {
            let (stream, meta, parsed) = l.categorized();
            LogEntry {
                ts: h.ts,
                line: h.line.into_owned(),
                folded: l.folded(),
                stream,
                meta,
                parsed,
            }
        }
    }
}

// ---- metrics ----

/// The value of each series at one step.
pub type StepVec = Vec<(LabelSet, f64)>;

/// Samples of one series, in time order.
struct SeriesSamples {
    labels: LabelSet,
    ts: Vec<i64>,
    /// Prefix sums of the sample values (len = ts.len() + 1).
    sums: Vec<f64>,
    /// The values themselves, kept for the unwrapped functions that need each one.
    vals: Vec<f64>,
}

/// What a range aggregation reads: which entries, and what value each gives.
struct SampleSpec<'e> {
    op: RangeOp,
    log: &'e LogExpr,
    unwrap: Option<&'e Unwrap>,
    grouping: Option<&'e Grouping>,
}

/// Reads every sample a range aggregation needs for windows ending in [first, last].
fn collect_samples(
    spec: &SampleSpec<'_>,
    src: &dyn Source,
    lo: i64,
    hi: i64,
    stats: &mut ExecStats,
) -> Vec<SeriesSamples> {
    let bytes = matches!(spec.op, RangeOp::Bytes | RangeOp::BytesRate);
    let log = spec.log;
    let pipeline = Pipeline::new(&log.stages);
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    let mut series: Vec<(LabelSet, Vec<(i64, f64)>)> = Vec::new();
    fn add(
        series: &mut Vec<(LabelSet, Vec<(i64, f64)>)>,
        index: &mut HashMap<LabelSet, usize>,
        labels: LabelSet,
        ts: i64,
        v: f64,
    ) -> usize {
        let id = match index.get(&labels) {
            Some(&id) => id,
            None => {
                let id = series.len();
                index.insert(labels.clone(), id);
                series.push((labels, Vec::new()));
                id
            }
        };
        series[id].1.push((ts, v));
        id
    }
    for s in src.select(&log.matchers) {
        let labels: &LabelSet = s.labels.as_ref();
        // Filter-only pipelines: the series depends only on the (interned) metadata slice.
        let mut cache: HashMap<(usize, usize), usize> = HashMap::new();
        for e in s.stream.range(lo, hi) {
            count_entry(stats, &e);
            if !pipeline.prefilter(e.line) {
                continue;
            }
            if let Some(u) = spec.unwrap {
                let mut l = Lbs::new(labels, e.metadata);
                if pipeline.run_rest(e.ts, e.line, &mut l).is_none() {
                    continue;
                }
                if let Some(v) = unwrap::extract(u, &mut l) {
                    let key = unwrap::series_labels(u, spec.grouping, &l);
                    add(&mut series, &mut index, key, e.ts, v);
                }
                continue;
            }
            if pipeline.is_filter_only() {
                let v = if bytes { e.line.len() as f64 } else { 1.0 };
                let k = (e.metadata.as_ptr() as usize, e.metadata.len());
                match cache.get(&k) {
                    Some(&id) => series[id].1.push((e.ts, v)),
                    None => {
                        let id = add(
                            &mut series,
                            &mut index,
                            fold_meta(labels, e.metadata),
                            e.ts,
                            v,
                        );
                        cache.insert(k, id);
                    }
                }
                continue;
            }
            let mut l = Lbs::new(labels, e.metadata);
            if let Some(line) = pipeline.run_rest(e.ts, e.line, &mut l) {
                let v = if bytes { line.len() as f64 } else { 1.0 };
                add(&mut series, &mut index, l.folded(), e.ts, v);
            }
        }
    }
    let keep_vals = spec.unwrap.is_some();
    series
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|(t, _)| *t);
            let mut sums = Vec::with_capacity(samples.len() + 1);
            let mut acc = 0.0;
            sums.push(0.0);
            for (_, v) in &samples {
                acc += v;
                sums.push(acc);
            }
            let vals = if keep_vals {
                samples.iter().map(|(_, v)| *v).collect()
            } else {
                Vec::new()
            };
            SeriesSamples {
                labels,
                ts: samples.into_iter().map(|(t, _)| t).collect(),
                sums,
                vals,
            }
        })
        .collect()
}

fn pipeline_error(labels: &LabelSet) -> Error {
    let e = labels.get(ERROR_LABEL).unwrap_or("");
    Error {
        message: format!(
            "pipeline error: '{e}' for series: '{labels}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{e}\").\nTo skip all potential errors you can match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n"
        ),
    }
}

/// Labels `absent_over_time` reports: the selector's equality matchers (each name once).
fn absent_labels(log: &LogExpr) -> LabelSet {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut dup: Vec<String> = Vec::new();
    for m in &log.matchers {
        if m.op == MatchOp::Eq {
            if pairs.iter().any(|(k, _)| *k == m.name) {
                dup.push(m.name.clone());
            } else {
                pairs.push((m.name.clone(), m.value.clone()));
            }
        }
    }
    pairs.retain(|(k, _)| !dup.contains(k));
    LabelSet::from_pairs(pairs)
}

/// Evaluates `e` at every step time in `steps`.
pub fn eval_steps(
    e: &MetricExpr,
    src: &dyn Source,
    steps: &[i64],
    stats: &mut ExecStats,
) -> Result<Vec<StepVec>, Error> {
    match e {
        MetricExpr::Literal(v) => Ok(steps
            .iter()
            .map(|_| vec![(LabelSet::default(), *v)])
            .collect()),
        MetricExpr::Range {
            op,
            log,
            range,
            offset,
            unwrap,
            grouping,
            param,
        } => {
            let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else {
                return Ok(Vec::new());
            };
            // Windows are (t-offset-range, t-offset]; the store reads [lo, hi).
            let lo = first
                .saturating_sub(*offset)
                .saturating_sub(*range)
                .saturating_add(1);
            let hi = last.saturating_sub(*offset).saturating_add(1);
            let spec = SampleSpec {
                op: *op,
                log,
                unwrap: unwrap.as_ref(),
                grouping: grouping.as_ref(),
            };
            let series = collect_samples(&spec, src, lo, hi, stats);
            let secs = *range as f64 / 1e9;
            let mut out = Vec::with_capacity(steps.len());
            for &t in steps {
                let w_end = t.saturating_sub(*offset);
                let w_start = w_end.saturating_sub(*range);
                let mut vec: StepVec = Vec::new();
                let mut any = false;
                for s in &series {
                    let a = s.ts.partition_point(|&x| x <= w_start);
                    let b = s.ts.partition_point(|&x| x <= w_end);
                    if b <= a {
                        continue;
                    }
                    any = true;
                    if *op == RangeOp::Absent {
                        continue;
                    }
                    if s.labels.get(ERROR_LABEL).is_some() {
                        return Err(pipeline_error(&s.labels));
                    }
                    let count = (b - a) as f64;
                    let sum = s.sums[b] - s.sums[a];
                    let v = match op {
                        RangeOp::Count => count,
                        RangeOp::Rate | RangeOp::BytesRate => sum / secs,
                        RangeOp::Bytes | RangeOp::Sum => sum,
                        _ => {
                            range_fns::over_window(*op, *param, *range, &s.ts[a..b], &s.vals[a..b])
                        }
                    };
                    vec.push((s.labels.clone(), v));
                }
                if *op == RangeOp::Absent && !any {
                    vec.push((absent_labels(log), 1.0));
                }
                out.push(vec);
            }
            Ok(out)
        }
        MetricExpr::Binary {
            op,
            bool_mod,
            matching,
            lhs,
            rhs,
        } => {
            let l = eval_steps(lhs, src, steps, stats)?;
            let r = eval_steps(rhs, src, steps, stats)?;
            let (ls, rs) = (lhs.is_scalar(), rhs.is_scalar());
            l.into_iter()
                .zip(r)
                .map(|(lv, rv)| binary(*op, *bool_mod, matching, lv, ls, rv, rs))
                .collect()
        }
        MetricExpr::LabelReplace {
            inner,
            dst,
            replacement,
            src: src_label,
            regex,
        } => {
            let inner = eval_steps(inner, src, steps, stats)?;
            Ok(inner
                .into_iter()
                .map(|v| {
                    v.into_iter()
                        .map(|(l, x)| (label_replace(l, dst, replacement, src_label, regex), x))
                        .collect()
                })
                .collect())
        }
        MetricExpr::Vector {
            op: VecOp::Sum,
            param,
            grouping,
            inner,
        } if matches!(
            **inner,
            MetricExpr::Range {
                op: RangeOp::Rate | RangeOp::BytesRate,
                grouping: None,
                ..
            }
        ) =>
        {
            // Loki's shard mapper turns `sum(rate(x))` into `sum(count_over_time(x)) / range`:
            // dividing after summing gives Loki's exact floats (12/60, not 11/60 + 1/60).
            let MetricExpr::Range {
                op,
                log,
                range,
                offset,
                unwrap,
                ..
            } = &**inner
            else {
                return Ok(Vec::new());
            };
            let counting = MetricExpr::Range {
                op: match (op, unwrap) {
                    (_, Some(_)) => RangeOp::Sum,
                    (RangeOp::Rate, None) => RangeOp::Count,
                    _ => RangeOp::Bytes,
                },
                log: log.clone(),
                range: *range,
                offset: *offset,
                unwrap: unwrap.clone(),
                grouping: None,
                param: None,
            };
            let secs = *range as f64 / 1e9;
            let inner = eval_steps(&counting, src, steps, stats)?;
            Ok(inner
                .into_iter()
                .map(|v| {
                    aggregate(VecOp::Sum, *param, grouping.as_ref(), v)
                        .into_iter()
                        .map(|(l, x)| (l, x / secs))
                        .collect()
                })
                .collect())
        }
        MetricExpr::Vector {
            op,
            param,
            grouping,
            inner,
        } => {
            let inner = eval_steps(inner, src, steps, stats)?;
            Ok(inner
                .into_iter()
                .map(|v| aggregate(*op, *param, grouping.as_ref(), v))
                .collect())
        }
    }
}

/// One step of a binary operation. Scalars are one-element vectors with empty labels.
fn binary(
    op: BinOp,
    bool_mod: bool,
    matching: &VectorMatching,
    lv: StepVec,
    ls: bool,
    rv: StepVec,
    rs: bool,
) -> Result<StepVec, Error> {
    let scalar = |v: &StepVec| v.first().map_or(f64::NAN, |x| x.1);
    // Comparisons without `bool` filter, keeping the vector's own value.
    let cmp_filter = op.is_comparison() && !bool_mod;
    if ls && rs {
        return Ok(vec![(
            LabelSet::default(),
            op.apply(scalar(&lv), scalar(&rv)),
        )]);
    }
    if rs || ls {
        let (vector, k) = if rs {
            (lv, scalar(&rv))
        } else {
            (rv, scalar(&lv))
        };
        return Ok(vector
            .into_iter()
            .filter_map(|(l, x)| {
                let v = if rs { op.apply(x, k) } else { op.apply(k, x) };
                if cmp_filter {
                    (v != 0.0).then_some((l, x))
                } else {
                    Some((l, v))
                }
            })
            .collect());
    }
    if op.is_set() {
        return Ok(matching::set_op(op, matching, lv, rv));
    }
    matching::vector_op(op, bool_mod, matching, lv, rv)
}

/// Prometheus' `label_replace` on one series: when the anchored regex matches the source
/// label's value, the expanded replacement becomes `dst` (an empty result removes it).
fn label_replace(
    mut labels: LabelSet,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &regex::Regex,
) -> LabelSet {
    let value = labels.get(src).unwrap_or("").to_string();
    if let Some(caps) = regex.captures(&value) {
        let mut out = String::new();
        caps.expand(replacement, &mut out);
        if out.is_empty() {
            labels.remove(dst);
        } else {
            labels.set(dst, &out);
        }
    }
    labels
}

fn group_key(labels: &LabelSet, g: Option<&Grouping>) -> LabelSet {
    match g {
        None => LabelSet::default(),
        Some(g) if g.without => LabelSet::from_pairs(
            labels
                .iter()
                .filter(|(k, _)| !g.labels.iter().any(|n| n == k) && *k != "__name__"),
        ),
        Some(g) => LabelSet::from_pairs(
            labels
                .iter()
                .filter(|(k, _)| g.labels.iter().any(|n| n == k)),
        ),
    }
}

fn aggregate(op: VecOp, param: Option<f64>, g: Option<&Grouping>, v: StepVec) -> StepVec {
    match op {
        VecOp::Sort | VecOp::SortDesc => return v,
        VecOp::Topk | VecOp::Bottomk => {
            let k = param.unwrap_or(1.0) as usize;
            let mut groups: Vec<(LabelSet, Vec<(LabelSet, f64)>)> = Vec::new();
            for (l, x) in v {
                let key = group_key(&l, g);
                match groups.iter_mut().find(|(gk, _)| *gk == key) {
                    Some((_, items)) => items.push((l, x)),
                    None => groups.push((key, vec![(l, x)])),
                }
            }
            let mut out = Vec::new();
            for (_, mut items) in groups {
                items.sort_by(|a, b| {
                    let o = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
                    if op == VecOp::Topk {
                        o.reverse()
                    } else {
                        o
                    }
                });
                items.truncate(k);
                out.extend(items);
            }
            return out;
        }
        _ => {}
    }
    // (key, sum, count, min, max, values for stddev)
    let mut groups: Vec<(LabelSet, Vec<f64>)> = Vec::new();
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    for (l, x) in v {
        let key = group_key(&l, g);
        match index.get(&key) {
            Some(&i) => groups[i].1.push(x),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![x]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(k, xs)| {
            let n = xs.len() as f64;
            let sum = kahan_sum(&xs);
            let val = match op {
                VecOp::Sum => sum,
                VecOp::Count => n,
                VecOp::Avg => sum / n,
                VecOp::Min => xs.iter().copied().fold(f64::INFINITY, f64::min),
                VecOp::Max => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                VecOp::Stddev | VecOp::Stdvar => {
                    let mean = sum / n;
                    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                    if op == VecOp::Stddev {
                        var.sqrt()
                    } else {
                        var
                    }
                }
                _ => sum,
            };
            (k, val)
        })
        .collect()
}

/// Neumaier-compensated sum, as Prometheus' `kahanSumInc` computes aggregations.
fn kahan_sum(xs: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for &x in xs {
        let t = sum + x;
        if t.is_infinite() {
            c = 0.0;
        } else if sum.abs() >= x.abs() {
            c += (sum - t) + x;
        } else {
            c += (x - t) + sum;
        }
        sum = t;
    }
    if c.is_finite() {
        sum + c
    } else {
        sum
    }
}

/// Loki's series limit error.
pub fn series_limit_error() -> Error {
    Error {
        message: format!("maximum number of series ({MAX_SERIES}) reached for a single query; consider reducing query cardinality by adding more specific stream selectors, reducing the time range, or aggregating results with functions like sum(), count() or topk()"),
    }
}
