//! LogQL: parsing and evaluation over the store (stub; being written).

pub mod matcher;

use std::borrow::Cow;

use loki_wire::LabelSet;

pub use matcher::{MatchOp, Matcher};

use crate::store::Stream;

/// A stream offered to the query engine: its (possibly augmented) labels and its data.
pub struct SourceStream<'a> {
    /// Indexed labels as queries see them (plus `__tenant_id__` in multi-tenant queries).
    pub labels: Cow<'a, LabelSet>,
    pub stream: &'a Stream,
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

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Expr {
    matchers: Vec<Matcher>,
}

impl Expr {
    /// Whether this is a log query (as opposed to a metric query).
    pub fn is_log(&self) -> bool {
        true
    }
}

/// Parses a query.
pub fn parse(_q: &str) -> Result<Expr, Error> {
    Err(Error {
        message: "parse error : not implemented yet".into(),
    })
}

/// Parses a bare stream selector (`series` `match[]`, `labels` `query`).
pub fn parse_selector(q: &str) -> Result<Vec<Matcher>, Error> {
    parse(q).map(|e| e.matchers)
}

/// The result of a query.
#[derive(Debug, Clone)]
pub enum QueryResult {
    Streams(Vec<serde_json::Value>),
}

impl QueryResult {
    pub fn result_type(&self) -> &'static str {
        "streams"
    }

    /// The `data.result` JSON value; `categorize` is the categorize-labels encoding flag.
    pub fn to_json(&self, _categorize: bool) -> serde_json::Value {
        serde_json::Value::Array(vec![])
    }
}

/// Runs a range query.
pub fn exec_range(_e: &Expr, _src: &dyn Source, _q: &RangeQuery) -> Result<QueryResult, Error> {
    Ok(QueryResult::Streams(vec![]))
}

/// Runs an instant query at `time`.
pub fn exec_instant(
    _e: &Expr,
    _src: &dyn Source,
    _time: i64,
    _limit: usize,
    _direction: Direction,
) -> Result<QueryResult, Error> {
    Ok(QueryResult::Streams(vec![]))
}
