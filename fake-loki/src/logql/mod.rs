//! LogQL: parsing, evaluation over the store, and Loki's JSON encoding of results.

mod ast;
mod eval;
mod jsonwalk;
mod lexer;
pub mod matcher;
mod matching;
mod parser;
mod pattern;
mod pipeline;
mod range_fns;
mod template;
mod unwrap;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;

use loki_wire::LabelSet;
use serde_json::{json, Value};

pub use eval::LogEntry;
pub use matcher::{MatchOp, Matcher};

use crate::store::StreamView;

/// A stream offered to the query engine: its (possibly augmented) labels and its data.
pub struct SourceStream<'a> {
    /// Indexed labels as queries see them (plus `__tenant_id__` in multi-tenant queries).
    pub labels: Cow<'a, LabelSet>,
    /// The stream's entries as they were when it was selected.
    pub stream: StreamView,
}

/// Where the engine reads streams from: one tenant, or several merged.
pub trait Source {
    /// Every stream whose labels satisfy all `matchers`.
    fn select(&self, matchers: &[Matcher]) -> Vec<SourceStream<'_>>;
}

/// Order of log results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Parameters of a range query, already validated by the HTTP layer. Times in ns.
#[derive(Debug, Clone, Copy)]
pub struct RangeQuery {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub interval: i64,
    pub limit: usize,
    pub direction: Direction,
}

/// A LogQL error, rendered as Loki renders it (the HTTP layer answers 400 with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub message: String,
}

/// Work done by a query, for `stats.summary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Entries read from the store (before filtering).
    pub lines_processed: u64,
    /// Line bytes read.
    pub bytes_processed: u64,
    /// Structured metadata bytes (names + values) read.
    pub structured_metadata_bytes_processed: u64,
    /// Log entries returned (log queries), or sample points returned (metric queries).
    pub entries_returned: u64,
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Expr {
    q: ast::Query,
}

impl Expr {
    /// Whether this is a log query (as opposed to a metric query).
    pub fn is_log(&self) -> bool {
        matches!(self.q, ast::Query::Log(_))
    }

    /// The stream selector of a log query (empty for metric queries).
    pub fn matchers(&self) -> &[Matcher] {
        match &self.q {
            ast::Query::Log(l) => &l.matchers,
            ast::Query::Metric(_) => &[],
        }
    }
}

/// Parses a query.
pub fn parse(q: &str) -> Result<Expr, Error> {
    parser::parse_query(q).map(|q| Expr { q })
}

/// Parses a bare stream selector (`series` `match[]`, `labels` `query`); no empty-matcher rule.
pub fn parse_selector(q: &str) -> Result<Vec<Matcher>, Error> {
    parser::parse_selector(q)
}

/// One series of a matrix: labels and (ns time, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: LabelSet,
    pub points: Vec<(i64, f64)>,
}

/// The result of a query.
#[derive(Debug, Clone)]
pub enum QueryResult {
    /// Log entries in query order.
    Streams(Vec<LogEntry>, ExecStats),
    /// Series sorted by labels.
    Matrix(Vec<Series>, ExecStats),
    /// Instant samples at a time (ns).
    Vector(Vec<(LabelSet, f64)>, i64, ExecStats),
    /// A literal at a time (ns).
    Scalar(f64, i64, ExecStats),
}

impl QueryResult {
    pub fn result_type(&self) -> &'static str {
        match self {
            QueryResult::Streams(..) => "streams",
            QueryResult::Matrix(..) => "matrix",
            QueryResult::Vector(..) => "vector",
            QueryResult::Scalar(..) => "scalar",
        }
    }

    /// What the query read and returned.
    pub fn stats(&self) -> ExecStats {
        match self {
            QueryResult::Streams(_, s)
            | QueryResult::Matrix(_, s)
            | QueryResult::Vector(_, _, s)
            | QueryResult::Scalar(_, _, s) => *s,
        }
    }

    /// The `data.result` JSON value; `categorize` is the categorize-labels encoding flag.
    pub fn to_json(&self, categorize: bool) -> Value {
        match self {
            QueryResult::Streams(entries, _) => streams_json(entries, categorize),
            QueryResult::Matrix(series, _) => Value::Array(
                series
                    .iter()
                    .map(|s| {
                        json!({
                            "metric": labels_json(s.labels.iter()),
                            "values": s.points.iter().map(|(t, v)| json!([time_json(*t), format_value(*v)])).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ),
            QueryResult::Vector(v, t, _) => Value::Array(
                v.iter()
                    .map(|(l, x)| json!({"metric": labels_json(l.iter()), "value": [time_json(*t), format_value(*x)]}))
                    .collect(),
            ),
            QueryResult::Scalar(x, t, _) => json!([time_json(*t), format_value(*x)]),
        }
    }
}

fn labels_json<'a>(it: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in it {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

fn streams_json(entries: &[LogEntry], categorize: bool) -> Value {
    // Loki sorts result streams by their label string.
    let mut groups: BTreeMap<String, (&LabelSet, Vec<Value>)> = BTreeMap::new();
    for e in entries {
        let labels = if categorize { &e.stream } else { &e.folded };
        let mut value = vec![
            Value::String(e.ts.to_string()),
            Value::String(e.line.clone()),
        ];
        if categorize && (!e.meta.is_empty() || !e.parsed.is_empty()) {
            let mut extra = serde_json::Map::new();
            if !e.meta.is_empty() {
                extra.insert(
                    "structuredMetadata".into(),
                    labels_json(e.meta.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                );
            }
            if !e.parsed.is_empty() {
                extra.insert(
                    "parsed".into(),
                    labels_json(e.parsed.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                );
            }
            value.push(Value::Object(extra));
        }
        groups
            .entry(labels.to_string())
            .or_insert_with(|| (labels, Vec::new()))
            .1
            .push(Value::Array(value));
    }
    Value::Array(
        groups
            .into_values()
            .map(|(l, values)| json!({"stream": labels_json(l.iter()), "values": values}))
            .collect(),
    )
}

/// Seconds as Prometheus writes them: an integer, or up to 3 decimals (ms precision).
fn time_json(ns: i64) -> Value {
    let ms = ns.div_euclid(1_000_000);
    if ms % 1000 == 0 {
        Value::from(ms / 1000)
    } else {
        serde_json::Number::from_f64(ms as f64 / 1000.0).map_or(Value::Null, Value::Number)
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` as Prometheus prints sample values.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Serialises JSON like Go's encoder does for Loki: `<`, `>`, `&`, U+2028 and U+2029 are
/// escaped as `\u003c`-style sequences, other controls as `\u00XX`. Object keys are written
/// in map order, except that a categorised value's `structuredMetadata` precedes `parsed`.
pub fn to_json_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_json(value, &mut out);
    out
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '<' => Some(b"\\u003c"),
            '>' => Some(b"\\u003e"),
            '&' => Some(b"\\u0026"),
            '\u{2028}' => Some(b"\\u2028"),
            '\u{2029}' => Some(b"\\u2029"),
            _ => None,
        };
        if let Some(e) = esc {
            out.extend_from_slice(&s.as_bytes()[start..i]);
            out.extend_from_slice(e);
            start = i + c.len_utf8();
        } else if (c as u32) < 0x20 {
            out.extend_from_slice(&s.as_bytes()[start..i]);
            out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            start = i + 1;
        }
    }
    out.extend_from_slice(&s.as_bytes()[start..]);
    out.push(b'"');
}

fn write_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(x, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            let mut keys: Vec<&String> = m.keys().collect();
            if m.contains_key("structuredMetadata") && m.contains_key("parsed") && m.len() == 2 {
                keys.reverse();
            }
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                if let Some(x) = m.get(k) {
                    write_json(x, out);
                }
            }
            out.push(b'}');
        }
    }
}

fn check_series(n: usize) -> Result<(), Error> {
    if n > eval::MAX_SERIES {
        Err(eval::series_limit_error())
    } else {
        Ok(())
    }
}

/// Runs a range query.
pub fn exec_range(e: &Expr, src: &dyn Source, q: &RangeQuery) -> Result<QueryResult, Error> {
    match &e.q {
        ast::Query::Log(l) => {
            let (entries, stats) =
                eval::exec_log(l, src, q.start, q.end, q.limit, q.direction, q.interval);
            Ok(QueryResult::Streams(entries, stats))
        }
        ast::Query::Metric(m) => {
            // Loki 3.7's splitter aligns start down and end up to multiples of step.
            let step = q.step.max(1);
            let start = q.start.div_euclid(step).saturating_mul(step);
            let end = match q.end.rem_euclid(step) {
                0 => q.end,
                r => q.end.saturating_add(step - r),
            };
            let mut steps = Vec::new();
            let mut t = start;
            while t <= end {
                steps.push(t);
                t = match t.checked_add(step) {
                    Some(n) => n,
                    None => break,
                };
            }
            let mut stats = ExecStats::default();
            let per_step = eval::eval_steps(m, src, &steps, &mut stats)?;
            let mut series: BTreeMap<LabelSet, Vec<(i64, f64)>> = BTreeMap::new();
            for (t, vec) in steps.iter().zip(per_step) {
                for (l, v) in vec {
                    series.entry(l).or_default().push((*t, v));
                }
                check_series(series.len())?;
            }
            let series: Vec<Series> = series
                .into_iter()
                .map(|(labels, points)| Series { labels, points })
                .collect();
            stats.entries_returned = series.iter().map(|s| s.points.len() as u64).sum();
            Ok(QueryResult::Matrix(series, stats))
        }
    }
}

/// Runs an instant query at `time`.
pub fn exec_instant(
    e: &Expr,
    src: &dyn Source,
    time: i64,
    _limit: usize,
    _direction: Direction,
) -> Result<QueryResult, Error> {
    match &e.q {
        ast::Query::Log(_) => Err(Error {
            message: "log queries are not supported as an instant query type, please change your query to a range query type".into(),
        }),
        ast::Query::Metric(m) if m.is_scalar() => {
            let mut stats = ExecStats::default();
            let v = eval::eval_steps(m, src, &[time], &mut stats)?
                .into_iter()
                .next()
                .and_then(|v| v.first().map(|x| x.1))
                .unwrap_or(f64::NAN);
            Ok(QueryResult::Scalar(v, time, stats))
        }
        ast::Query::Metric(m) => {
            let mut stats = ExecStats::default();
            let mut vec = eval::eval_steps(m, src, &[time], &mut stats)?
                .into_iter()
                .next()
                .unwrap_or_default();
            check_series(vec.len())?;
            match m {
                ast::MetricExpr::Vector { op: ast::VecOp::Sort, .. } => {
                    vec.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
                }
                ast::MetricExpr::Vector { op: ast::VecOp::SortDesc, .. } => {
                    vec.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal))
                }
                _ => vec.sort_by(|a, b| a.0.cmp(&b.0)),
            }
            stats.entries_returned = vec.len() as u64;
            Ok(QueryResult::Vector(vec, time, stats))
        }
    }
}
