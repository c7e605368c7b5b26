//! Operational and test-double endpoints: `/metrics`, build info, faults, stats.

use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::Value;

use super::{empty, json, read_body, text, Body};
use crate::faults::FaultRule;
use crate::State;

pub fn metrics(state: &State) -> http::Response<Body> {
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
                    "streams": d.streams().len(),
                    "entries": d.entries,
                    "bytes": d.bytes,
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
