//! Metadata endpoints: `labels`, `label/<name>/values`, `series`, `index/stats`.
//! All tenant-scoped exactly like queries; streams count when they hold entries in range.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::{answer, params, read_request, Body, ReadRequest, TenantSource};
use crate::logql::{self, Matcher, Source};
use crate::State;

const MAX_BODY: usize = 4 << 20;

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
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
        let (start, end) = params::time_range(&p, now_ns())?;
        let matchers = match p.get("query") {
            Some(q) if !q.trim().is_empty() => logql::parse_selector(q).map_err(|e| e.message)?,
            _ => Vec::new(),
        };
        let src = TenantSource::new(state, &tenants);
        let mut out = BTreeSet::new();
        for s in src.select(&matchers) {
            if s.stream.range(start, end).len() == 0 {
                continue;
            }
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
        let (start, end) = params::time_range(&p, now_ns())?;
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
        let src = TenantSource::new(state, &tenants);
        let mut seen = BTreeSet::new();
        for sel in &selectors {
            for s in src.select(sel) {
                if s.stream.range(start, end).len() > 0 {
                    seen.insert(s.labels.into_owned());
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
        let (start, end) = params::time_range(&p, now_ns())?;
        let matchers =
            logql::parse_selector(p.get("query").unwrap_or("")).map_err(|e| e.message)?;
        let src = TenantSource::new(state, &tenants);
        let (mut streams, mut entries, mut bytes) = (0u64, 0u64, 0u64);
        for s in src.select(&matchers) {
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
