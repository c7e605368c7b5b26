//! Metadata endpoints: `labels`, `label/<name>/values`, `series`, `index/stats`.
//! All tenant-scoped exactly like queries, and answered as Loki 3.7 answers them:
//!
//! - A stream the ingester holds (its last push is younger than `chunk_idle_period`,
//!   after which Loki's ingester flushes an idle chunk) is answered by the ingester when
//!   the window ends within `query_ingesters_within` of now: `labels` and label values
//!   list it whatever the window (the in-memory index has no times), `series` only when
//!   it has an entry in the window.
//! - Otherwise the store answers, at block granularity: a stream counts when one of its
//!   blocks' time bounds overlaps the window (Loki filters flushed chunks by bounds).
//! - `index/stats` counts exact entries in the window.
//!
//! Expired entries (retention) are invisible to all of them; `start` is clamped to
//! `now - max_query_lookback`, and a window wholly before it answers empty.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::{answer, params, read_request, Body, ReadRequest, Selected, TenantSource};
use crate::logql::{self, Matcher, Source};
use crate::{retention, State};

const MAX_BODY: usize = 4 << 20;

/// The window of a metadata request after the lookback clamp (None: answer empty),
/// and the source to read it from.
fn window<'a>(
    state: &'a State,
    tenants: &'a [String],
    p: &params::Params,
) -> Result<(Option<(i64, i64)>, TenantSource<'a>), String> {
    let src = TenantSource::new(state, tenants);
    let (start, end) = params::time_range(p, src.now_ns)?;
    let lookback =
        retention::max_query_lookback(tenants.iter().map(|t| state.config.limits.for_tenant(t)));
    Ok((
        retention::clamp_window(start, end, lookback, src.now_ns),
        src,
    ))
}

/// Whether the ingester answers for this stream (see the module docs).
fn from_ingester(state: &State, s: &Selected<'_>, end: i64, now: i64) -> bool {
    let asks_ingester = end >= now.saturating_sub(state.config.query_ingesters_within_ns);
    let held = s
        .last_push
        .is_some_and(|at| now.saturating_sub(at) < state.config.chunk_idle_period_ns);
    asks_ingester && held
}

/// `{"status":"success","data":[...]}`, with `data` left out when empty (as Loki does).
fn list(values: impl IntoIterator<Item = String>) -> Vec<u8> {
    let data: Vec<Value> = values.into_iter().map(Value::String).collect();
    let body = if data.is_empty() {
        serde_json::json!({"status": "success"})
    } else {
        serde_json::json!({"status": "success", "data": data})
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `labels` (name = None) and `label/<name>/values`.
pub async fn labels(
    state: &Arc<State>,
    req: Request<Incoming>,
    name: Option<String>,
) -> http::Response<Body> {
    let ReadRequest {
        params: p, tenants, ..
    } = match read_request(state, req, MAX_BODY).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let run = || -> Result<Vec<u8>, String> {
        let (win, src) = window(state, &tenants, &p)?;
        let matchers = match p.get("query") {
            Some(q) if !q.trim().is_empty() => logql::parse_selector(q).map_err(|e| e.message)?,
            _ => Vec::new(),
        };
        let Some((start, end)) = win else {
            return Ok(list(Vec::new()));
        };
        let mut out = BTreeSet::new();
        for sel in src.select_with_pushes(&matchers) {
            let listed = from_ingester(state, &sel, end, src.now_ns)
                || sel.stream.stream.blocks_overlap(start, end);
            if !listed {
                continue;
            }
            let s = sel.stream;
            match &name {
                None => out.extend(s.labels.iter().map(|(k, _)| k.to_string())),
                Some(n) => {
                    if let Some(v) = s.labels.get(n) {
                        out.insert(v.to_string());
                    }
                }
            }
        }
        Ok(list(out))
    };
    answer(run())
}

/// `series`: the label sets of streams matching any `match[]` selector.
pub async fn series(state: &Arc<State>, req: Request<Incoming>) -> http::Response<Body> {
    let ReadRequest {
        params: p, tenants, ..
    } = match read_request(state, req, MAX_BODY).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let run = || -> Result<Vec<u8>, String> {
        let (win, src) = window(state, &tenants, &p)?;
        let mut selectors: Vec<Vec<Matcher>> = Vec::new();
        for q in p.all("match[]").iter().chain(p.all("match")) {
            if q.trim().is_empty() || q.trim() == "{}" {
                selectors.push(Vec::new());
                continue;
            }
            selectors.push(logql::parse_selector(q).map_err(|e| e.message)?);
        }
        if selectors.is_empty() {
            selectors.push(Vec::new());
        }
        let mut seen = BTreeSet::new();
        if let Some((start, end)) = win {
            for sel in &selectors {
                for s in src.select_with_pushes(sel) {
                    let listed = if from_ingester(state, &s, end, src.now_ns) {
                        s.stream.stream.range(start, end).len() > 0
                    } else {
                        s.stream.stream.blocks_overlap(start, end)
                    };
                    if listed {
                        seen.insert(s.stream.labels.into_owned());
                    }
                }
            }
        }
        let data: Vec<Value> = seen
            .into_iter()
            .map(|l| {
                Value::Object(
                    l.iter()
                        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                        .collect::<Map<_, _>>(),
                )
            })
            .collect();
        // Unlike labels (omitempty), series always carries `data`, `[]` when nothing matched.
        let body = serde_json::json!({"status": "success", "data": data});
        Ok(serde_json::to_vec(&body).unwrap_or_default())
    };
    answer(run())
}

/// `index/stats`: exact counts where Loki estimates from its index.
pub async fn index_stats(state: &Arc<State>, req: Request<Incoming>) -> http::Response<Body> {
    let ReadRequest {
        params: p, tenants, ..
    } = match read_request(state, req, MAX_BODY).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let run = || -> Result<Vec<u8>, String> {
        let (win, src) = window(state, &tenants, &p)?;
        let matchers =
            logql::parse_selector(p.get("query").unwrap_or("")).map_err(|e| e.message)?;
        let (mut streams, mut entries, mut bytes) = (0u64, 0u64, 0u64);
        let (start, end) = win.unwrap_or((0, 0));
        let selected = if win.is_some() {
            src.select(&matchers)
        } else {
            Vec::new()
        };
        for s in selected {
            let mut n = 0u64;
            for e in s.stream.range(start, end) {
                n += 1;
                bytes += e.line.len() as u64;
            }
            if n > 0 {
                streams += 1;
                entries += n;
            }
        }
        // One "chunk" per stream: fake-loki keeps each stream in one block.
        let body = serde_json::json!({"streams": streams, "chunks": streams, "bytes": bytes, "entries": entries});
        Ok(serde_json::to_vec(&body).unwrap_or_default())
    };
    answer(run())
}
