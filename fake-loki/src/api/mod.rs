//! HTTP routing and response helpers. Routing is a plain `match (method, path)`.

// Handlers return a ready error response as their `Err`; it is built once per request.
#![allow(clippy::result_large_err)]

mod json_push;
mod meta;
mod ops;
pub mod params;
mod push;
mod query;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::limits::LimitsConfig;
use crate::logql::{self, Source, SourceStream};
use crate::retention;
use crate::store::Store;
use crate::tenant;
use crate::State;
use parking_lot::RwLock;

pub type Body = Full<Bytes>;

/// What the connection layer does with a handled request.
pub enum Reply {
    Respond(Response<Body>),
    /// Drop the connection without answering (fault injection).
    Reset,
}

/// Plain text, as Go's `http.Error` writes it.
pub fn text(status: u16, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// A JSON body.
pub fn json(status: u16, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

pub fn empty(status: u16) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    r
}

fn not_found() -> Response<Body> {
    text(404, "404 page not found\n")
}

fn method_not_allowed() -> Response<Body> {
    text(405, "Method Not Allowed\n")
}

/// Reads a whole body, refusing more than `max` bytes (413) before or while reading.
pub async fn read_body(
    req: Request<Incoming>,
    max: usize,
) -> Result<(http::request::Parts, Bytes), Response<Body>> {
    let (parts, body) = req.into_parts();
    let too_large = |n: Option<u64>| {
        text(
            413,
            match n {
                Some(n) => format!("message size too large than max ({n} vs {max})\n"),
                None => format!("message size too large than max (limit {max})\n"),
            },
        )
    };
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max as u64 {
            return Err(too_large(Some(len)));
        }
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large(None))
            } else {
                Err(text(400, format!("reading the request body: {e}\n")))
            }
        }
    }
}

/// The tenants of a read request (query, metadata), or Loki's error answer.
pub fn read_tenants(
    state: &State,
    parts: &http::request::Parts,
) -> Result<Vec<String>, Response<Body>> {
    if !state.config.auth_enabled {
        return Ok(vec![state.config.no_auth_tenant.clone()]);
    }
    let h = parts
        .headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok());
    let ids = tenant::resolve(h).map_err(|e| {
        // The auth middleware's 401 ends in a newline (http.Error); validation errors too.
        text(e.status, format!("{}\n", e.message))
    })?;
    if ids.len() > 1 && !state.config.multi_tenant_queries_enabled {
        return Err(text(400, "multiple org IDs present"));
    }
    Ok(ids)
}

/// A view of some tenants' streams for the query engine. With more than one tenant
/// every stream gains `__tenant_id__`, as Loki's multi-tenant querier does.
///
/// `select` holds the store's read lock only while it matches labels and takes
/// [`crate::store::StreamView`]s; the scan runs after it is released, so a slow query
/// never holds up a push. Each view starts at the stream's read floor (retention and
/// `max_query_lookback` at `now_ns`), so expired entries are never returned, swept or
/// not.
pub struct TenantSource<'a> {
    pub store: &'a RwLock<Store>,
    pub tenants: &'a [String],
    pub hooks: &'a crate::Hooks,
    pub limits: &'a LimitsConfig,
    pub now_ns: i64,
}

/// A selected stream with what the metadata endpoints' ingester model needs.
pub struct Selected<'a> {
    pub stream: SourceStream<'a>,
    /// Wall-clock time the stream last stored an entry (None: never, e.g. replayed).
    pub last_push: Option<i64>,
}

impl<'a> TenantSource<'a> {
    pub fn new(state: &'a State, tenants: &'a [String]) -> Self {
        TenantSource {
            store: &state.store,
            tenants,
            hooks: &state.hooks,
            limits: &state.config.limits,
            now_ns: state.config.clock.now_ns(),
        }
    }

    /// Every stream matching all `matchers` that holds an entry readers may see.
    pub fn select_with_pushes(&self, matchers: &[logql::Matcher]) -> Vec<Selected<'_>> {
        let multi = self.tenants.len() > 1;
        let mut out = Vec::new();
        {
            let store = self.store.read();
            for t in self.tenants {
                let Some(data) = store.tenant(t) else {
                    continue;
                };
                let limits = self.limits.for_tenant(t);
                for (i, s) in data.streams().iter().enumerate() {
                    if s.is_empty() {
                        continue;
                    }
                    let mut labels = std::borrow::Cow::Borrowed(&s.labels);
                    if multi {
                        let l = labels.to_mut();
                        if let Some(v) = l.get("__tenant_id__").map(str::to_string) {
                            l.set("original___tenant_id__", &v);
                        }
                        l.set("__tenant_id__", t);
                    }
                    if !matchers.iter().all(|m| m.matches_labels(&labels)) {
                        continue;
                    }
                    let floor = retention::read_floor(limits, &s.labels, self.now_ns);
                    let view = s.view().with_floor(floor);
                    if view.is_empty() {
                        continue;
                    }
                    out.push(Selected {
                        stream: SourceStream {
                            labels: std::borrow::Cow::Owned(labels.into_owned()),
                            stream: view,
                        },
                        last_push: data.last_push(i),
                    });
                }
            }
        }
        self.hooks.query_scan();
        out
    }
}

impl Source for TenantSource<'_> {
    fn select(&self, matchers: &[logql::Matcher]) -> Vec<SourceStream<'_>> {
        self.select_with_pushes(matchers)
            .into_iter()
            .map(|s| s.stream)
            .collect()
    }
}

/// gorilla/mux's `cleanPath` (Loki's router does not skip cleaning): Go's `path.Clean`
/// with a trailing slash kept.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = String::with_capacity(p.len() + 1);
    for seg in &parts {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        return "/".into();
    }
    if p.ends_with('/') {
        out.push('/');
    }
    out
}

/// gorilla/mux's answer to an unclean path: 301 to the cleaned one, query kept.
fn redirect_clean(uri: &http::Uri, clean: &str) -> Response<Body> {
    let location = match uri.query() {
        Some(q) => format!("{clean}?{q}"),
        None => clean.to_string(),
    };
    let mut r = empty(301);
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Handles one request.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let clean = clean_path(&path);
    if clean != path {
        let r = redirect_clean(req.uri(), &clean);
        state.metrics.request("other", 301);
        return Reply::Respond(r);
    }
    let method = req.method().clone();
    let (route, reply) = route(&state, method, &path, req).await;
    if let Reply::Respond(r) = &reply {
        state.metrics.request(route, r.status().as_u16());
    }
    reply
}

async fn route(
    state: &Arc<State>,
    method: Method,
    path: &str,
    req: Request<Incoming>,
) -> (&'static str, Reply) {
    let get_or_post = method == Method::GET || method == Method::POST;
    let r = |resp| Reply::Respond(resp);
    match path {
        "/loki/api/v1/push" | "/api/prom/push" => {
            if method != Method::POST {
                return ("push", r(method_not_allowed()));
            }
            (
                "push",
                push::handle(state, req, path == "/api/prom/push").await,
            )
        }
        "/loki/api/v1/query_range" if get_or_post => {
            ("query_range", r(query::range(state, req).await))
        }
        "/loki/api/v1/query" if get_or_post => ("query", r(query::instant(state, req).await)),
        "/loki/api/v1/labels" | "/loki/api/v1/label" if get_or_post => {
            ("labels", r(meta::labels(state, req, None).await))
        }
        "/loki/api/v1/series" if get_or_post => ("series", r(meta::series(state, req).await)),
        "/loki/api/v1/index/stats" if get_or_post => {
            ("index_stats", r(meta::index_stats(state, req).await))
        }
        "/ready" => ("ready", r(text(200, "ready\n"))),
        "/metrics" => ("metrics", r(ops::metrics(state))),
        "/loki/api/v1/status/buildinfo" => ("buildinfo", r(ops::buildinfo())),
        p if p.starts_with("/fake-loki/") && !admin_allowed(state, &req) => (
            "admin_denied",
            r(text(401, "fake-loki: missing or wrong admin token\n")),
        ),
        "/fake-loki/api/v1/faults" => ("faults", r(ops::faults(state, method, req).await)),
        "/fake-loki/api/v1/stats" => ("stats", r(ops::stats(state))),
        "/fake-loki/api/v1/usage" => {
            let q = req.uri().query().map(str::to_string);
            ("usage", r(ops::usage(state, q.as_deref())))
        }
        p if label_values_name(p).is_some() && get_or_post => {
            let name = label_values_name(p).unwrap_or_default();
            let name = percent_encoding::percent_decode_str(name)
                .decode_utf8_lossy()
                .into_owned();
            (
                "label_values",
                r(meta::labels(state, req, Some(name)).await),
            )
        }
        "/loki/api/v1/query_range"
        | "/loki/api/v1/query"
        | "/loki/api/v1/labels"
        | "/loki/api/v1/series" => ("other", r(method_not_allowed())),
        _ => ("other", r(not_found())),
    }
}

/// Whether an operator request carries the `--admin-token` (always, when none is set).
fn admin_allowed(state: &State, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.config.admin_token else {
        return true;
    };
    req.headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()))
}

/// Compares without stopping at the first difference (no timing hint of the token).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `{name}` of `/loki/api/v1/label/{name}/values`: one non-empty path segment, as
/// the router's `[^/]+` variable matches.
fn label_values_name(p: &str) -> Option<&str> {
    let name = p
        .strip_prefix("/loki/api/v1/label/")?
        .strip_suffix("/values")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// A read request (query or metadata): its parts, parameters and tenants.
pub struct ReadRequest {
    pub parts: http::request::Parts,
    pub params: params::Params,
    pub tenants: Vec<String>,
}

/// Reads the parameters and resolves the tenants of a query or metadata request.
pub async fn read_request(
    state: &State,
    req: Request<Incoming>,
    max: usize,
) -> Result<ReadRequest, Response<Body>> {
    let (parts, params) = request_params(req, max).await?;
    let tenants = read_tenants(state, &parts)?;
    Ok(ReadRequest {
        parts,
        params,
        tenants,
    })
}

/// A JSON answer, or Loki's plain-text 400 for a bad request.
pub fn answer(result: Result<Vec<u8>, String>) -> Response<Body> {
    match result {
        Ok(body) => json(200, body),
        Err(msg) => text(400, msg),
    }
}

/// Collects query-string and form-body parameters.
pub async fn request_params(
    req: Request<Incoming>,
    max: usize,
) -> Result<(http::request::Parts, params::Params), Response<Body>> {
    let (parts, body) = read_body(req, max).await?;
    let mut p = params::Params::default();
    if let Some(q) = parts.uri.query() {
        p.add_urlencoded(q.as_bytes());
    }
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        p.add_urlencoded(&body);
    }
    Ok((parts, p))
}
