//! Operational and test-double endpoints: `/metrics`, build info, faults, stats.

use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::Value;

use super::{empty, json, read_body, text, Body};
use crate::faults::FaultRule;
use crate::State;

pub fn metrics(state: &State) -> http::Response<Body> {
    {
        let store = state.store.read();
        let now = state.config.clock.now_ns();
        state.metrics.set_freshness(
            now,
            state.config.metrics_stream_labels,
            store.tenants.iter().flat_map(|(t, d)| {
                d.streams().iter().enumerate().filter_map(move |(i, s)| {
                    d.last_push(i)
                        .map(|at| (t.as_str(), s.labels_string.as_str(), at))
                })
            }),
        );
    }
    let mut r = text(200, state.metrics.render());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

pub fn buildinfo() -> http::Response<Body> {
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "fake-loki",
        "buildDate": "",
        "goVersion": "",
    });
    json(200, serde_json::to_vec(&body).unwrap_or_default())
}

/// `GET` lists, `POST` adds a rule (JSON), `DELETE` clears.
pub async fn faults(
    state: &Arc<State>,
    method: Method,
    req: Request<Incoming>,
) -> http::Response<Body> {
    match method {
        Method::GET => json(
            200,
            serde_json::to_vec(&state.faults.list()).unwrap_or_default(),
        ),
        Method::DELETE => {
            state.faults.clear();
            empty(204)
        }
        Method::POST | Method::PUT => {
            let (_, body) = match read_body(req, 1 << 20).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let rule: FaultRule = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return text(400, format!("invalid fault rule: {e}\n")),
            };
            match state.faults.add(rule) {
                Ok(()) => empty(204),
                Err(e) => text(400, format!("invalid fault rule: {e}\n")),
            }
        }
        _ => text(405, "Method Not Allowed\n"),
    }
}

/// `GET /fake-loki/api/v1/usage?from=&to=&by=tenant,cluster`.
pub fn usage(state: &State, query: Option<&str>) -> http::Response<Body> {
    let mut p = super::params::Params::default();
    if let Some(q) = query {
        p.add_urlencoded(q.as_bytes());
    }
    let day = |name: &str| -> Result<Option<String>, String> {
        match p.get(name) {
            None | Some("") => Ok(None),
            Some(v)
                if v.len() == 10 && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() =>
            {
                Ok(Some(v.to_string()))
            }
            Some(v) => {
                super::params::parse_timestamp(name, v).map(|ns| Some(crate::usage::day_of(ns)))
            }
        }
    };
    let (from, to) = match (day("from"), day("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return text(400, e),
    };
    let ledger = state.usage.lock();
    let mut by = Vec::new();
    for b in p
        .get("by")
        .unwrap_or("tenant")
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        match b {
            "tenant" => by.push(crate::usage::By::Tenant),
            b if b == ledger.label() => by.push(crate::usage::By::Group),
            other => {
                return text(
                    400,
                    format!(
                        "cannot group usage by {other:?}: use tenant and/or {}",
                        ledger.label()
                    ),
                )
            }
        }
    }
    let body = ledger.query(from.as_deref(), to.as_deref(), &by);
    json(200, serde_json::to_vec(&body).unwrap_or_default())
}

/// Per tenant: streams, entries, bytes, first/last entry timestamp, last push time.
pub fn stats(state: &State) -> http::Response<Body> {
    let store = state.store.read();
    let mut tenants: Vec<(&String, Value)> = store
        .tenants
        .iter()
        .map(|(t, d)| {
            let bounds = d.time_bounds();
            (
                t,
                serde_json::json!({
                    "streams": d.live_streams(),
                    "entries": d.entries,
                    "bytes": d.bytes,
                    "expired_entries": d.expired_entries,
                    "expired_bytes": d.expired_bytes,
                    "pushes": d.pushes,
                    "first_entry_ns": bounds.map(|b| b.0.to_string()),
                    "last_entry_ns": bounds.map(|b| b.1.to_string()),
                    "last_push_ns": d.last_push_ns.map(|t| t.to_string()),
                }),
            )
        })
        .collect();
    tenants.sort_by(|a, b| a.0.cmp(b.0));
    let map: serde_json::Map<String, Value> =
        tenants.into_iter().map(|(t, v)| (t.clone(), v)).collect();
    json(
        200,
        serde_json::to_vec(&serde_json::json!({ "tenants": map })).unwrap_or_default(),
    )
}
