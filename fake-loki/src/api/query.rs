//! `/loki/api/v1/query_range` and `/loki/api/v1/query`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::Request;
use hyper::body::Incoming;
use serde_json::Value;

use super::params::{self, Params};
use super::{answer, read_request, Body, ReadRequest, TenantSource};
use crate::logql::{self, RangeQuery};
use crate::State;

/// Loki refuses range queries with more points than this per series.
const MAX_POINTS: i64 = 11_000;
/// Largest form body accepted on query endpoints.
const MAX_QUERY_BODY: usize = 4 << 20;

/// Whether `X-Loki-Response-Encoding-Flags` asks for categorized labels.
fn categorize(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get_all("x-loki-response-encoding-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "categorize-labels")
}

pub async fn range(state: &Arc<State>, req: Request<Incoming>) -> http::Response<Body> {
    let ReadRequest {
        parts,
        params: p,
        tenants,
    } = match read_request(state, req, MAX_QUERY_BODY).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let cat = categorize(&parts);
    let state = Arc::clone(state);
    answer(off_the_runtime(move || run_range(&state, &tenants, &p, cat)).await)
}

/// Runs a query's evaluation on the blocking pool: a slow query then holds no runtime
/// worker, so pushes and other requests keep being served (2 workers on a 2-core node).
async fn off_the_runtime(
    f: impl FnOnce() -> Result<Vec<u8>, String> + Send + 'static,
) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("query evaluation failed: {e}")))
}

fn run_range(
    state: &State,
    tenants: &[String],
    p: &Params,
    categorize: bool,
) -> Result<Vec<u8>, String> {
    let started = Instant::now();
    let now = state.config.clock.now_ns();
    let query = p.get("query").unwrap_or("");
    let (start, end) = params::time_range(p, now)?;
    let limit = params::limit(p)?;
    let direction = params::direction(p)?;
    let step = match p.get("step") {
        Some(s) if !s.is_empty() => params::parse_step("step", s)?,
        _ => default_step(start, end),
    };
    if step <= 0 {
        return Err("zero or negative query resolution step widths are not accepted. Try a positive integer".into());
    }
    // Go's `Time.Sub` saturates; so does this, and the count stays exact for real ranges.
    if end.saturating_sub(start) / step > MAX_POINTS {
        return Err("exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter".into());
    }
    let interval = match p.get("interval") {
        Some(s) if !s.is_empty() => params::parse_step("interval", s)?,
        _ => 0,
    };
    if interval < 0 {
        return Err("interval must be >= 0".into());
    }
    let expr = logql::parse(query).map_err(|e| e.message)?;
    // After parsing (default step and point count use the asked window), Loki's
    // frontend: a window wholly before `now - max_query_lookback` is answered
    // empty (here: evaluated over an empty instant), a longer one starts there.
    let lookback = crate::retention::max_query_lookback(
        tenants.iter().map(|t| state.config.limits.for_tenant(t)),
    );
    let (start, end) =
        crate::retention::clamp_window(start, end, lookback, now).unwrap_or((end, end));
    let limits = state.config.limits.for_tenant(&tenants[0]);
    if expr.is_log()
        && limit > limits.max_entries_limit_per_query
        && limits.max_entries_limit_per_query > 0
    {
        return Err(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})",
            limits.max_entries_limit_per_query
        ));
    }
    if limits.max_query_length > 0 && end.saturating_sub(start) > limits.max_query_length {
        return Err(format!(
            "the query time range exceeds the limit (query length: {}, limit: {})",
            go_duration(end.saturating_sub(start)),
            go_duration(limits.max_query_length)
        ));
    }
    let src = TenantSource::new(state, tenants);
    let q = RangeQuery {
        start,
        end,
        step,
        interval,
        limit,
        direction,
    };
    let result = logql::exec_range(&expr, &src, &q).map_err(|e| e.message)?;
    Ok(envelope(&result, categorize, started))
}

pub async fn instant(state: &Arc<State>, req: Request<Incoming>) -> http::Response<Body> {
    let ReadRequest {
        parts,
        params: p,
        tenants,
    } = match read_request(state, req, MAX_QUERY_BODY).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let cat = categorize(&parts);
    let state = Arc::clone(state);
    let run = move || -> Result<Vec<u8>, String> {
        let started = Instant::now();
        let time = match p.get("time") {
            Some(t) if !t.is_empty() => params::parse_timestamp("time", t)?,
            _ => state.config.clock.now_ns(),
        };
        let limit = params::limit(&p)?;
        let direction = params::direction(&p)?;
        let expr = logql::parse(p.get("query").unwrap_or("")).map_err(|e| e.message)?;
        if expr.is_log() {
            return Err("log queries are not supported as an instant query type, please change your query to a range query type".into());
        }
        let src = TenantSource::new(&state, &tenants);
        let result =
            logql::exec_instant(&expr, &src, time, limit, direction).map_err(|e| e.message)?;
        Ok(envelope(&result, cat, started))
    };
    answer(off_the_runtime(run).await)
}

/// Loki's default step: max(floor(range_s / 250), 1) seconds.
fn default_step(start: i64, end: i64) -> i64 {
    let secs = end.saturating_sub(start) / 1_000_000_000 / 250;
    secs.max(1) * 1_000_000_000
}

/// `{"status":"success","data":{"resultType":..,["encodingFlags":..,]"result":..,"stats":..}}`
/// in Loki's key order.
fn envelope(result: &logql::QueryResult, categorize: bool, started: Instant) -> Vec<u8> {
    let s = result.stats();
    let stats = stats_json(
        s.lines_processed,
        s.bytes_processed,
        s.structured_metadata_bytes_processed,
        s.entries_returned,
        started.elapsed().as_secs_f64(),
    );
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":\"");
    out.extend_from_slice(result.result_type().as_bytes());
    out.extend_from_slice(b"\",");
    if categorize && result.result_type() == "streams" {
        out.extend_from_slice(b"\"encodingFlags\":[\"categorize-labels\"],");
    }
    out.extend_from_slice(b"\"result\":");
    out.extend_from_slice(&logql::to_json_bytes(&result.to_json(categorize)));
    out.extend_from_slice(b",\"stats\":");
    out.extend_from_slice(&serde_json::to_vec(&stats).unwrap_or_default());
    out.extend_from_slice(b"}}");
    out
}

/// Loki's full `stats` object (keys as recorded from Loki 3.7.6), with the summary
/// filled from what the engine processed and every other counter zero.
fn stats_json(lines: u64, bytes: u64, sm_bytes: u64, returned: u64, exec_secs: f64) -> Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let recorded: Value = serde_json::from_str(include_str!(
            "../../testdata/loki-3.7.6/query_range_backward.json"
        ))
        .unwrap_or(Value::Null);
        let mut stats = recorded["data"]["stats"].clone();
        zero(&mut stats);
        stats
    });
    let mut s = template.clone();
    let secs = exec_secs.max(1e-9);
    let summary = &mut s["summary"];
    summary["bytesProcessedPerSecond"] = Value::from((bytes as f64 / secs) as u64);
    summary["linesProcessedPerSecond"] = Value::from((lines as f64 / secs) as u64);
    summary["totalBytesProcessed"] = Value::from(bytes);
    summary["totalLinesProcessed"] = Value::from(lines);
    summary["execTime"] = Value::from(exec_secs);
    summary["totalEntriesReturned"] = Value::from(returned);
    summary["shards"] = Value::from(1);
    summary["totalPostFilterLines"] = Value::from(lines);
    summary["totalStructuredMetadataBytesProcessed"] = Value::from(sm_bytes);
    s["ingester"]["totalReached"] = Value::from(1);
    s["ingester"]["totalLinesSent"] = Value::from(lines);
    s["ingester"]["store"]["chunk"]["headChunkBytes"] = Value::from(bytes);
    s["ingester"]["store"]["chunk"]["headChunkLines"] = Value::from(lines);
    s["ingester"]["store"]["chunk"]["postFilterLines"] = Value::from(lines);
    s["ingester"]["store"]["chunk"]["headChunkStructuredMetadataBytes"] = Value::from(sm_bytes);
    s
}

fn zero(v: &mut Value) {
    match v {
        Value::Number(_) => *v = Value::from(0),
        Value::Bool(_) => *v = Value::Bool(false),
        Value::Object(m) => m.values_mut().for_each(zero),
        Value::Array(a) => a.iter_mut().for_each(zero),
        _ => {}
    }
}

/// Go's `time.Duration.String()` for whole and fractional hours/minutes/seconds.
fn go_duration(ns: i64) -> String {
    let total_s = ns / 1_000_000_000;
    let (h, m, s) = (total_s / 3600, (total_s % 3600) / 60, total_s % 60);
    let frac = ns % 1_000_000_000;
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{}s", format!("{s}.{frac:09}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(721 * 3_600_000_000_000), "721h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(61_000_000_000), "1m1s");
    }

    #[test]
    fn steps() {
        assert_eq!(default_step(0, 60_000_000_000), 1_000_000_000);
        assert_eq!(default_step(0, 3_600_000_000_000), 14_000_000_000);
    }

    #[test]
    fn stats_have_loki_keys() {
        let s = stats_json(1, 2, 3, 4, 0.5);
        for k in ["summary", "querier", "ingester", "cache", "index"] {
            assert!(s.get(k).is_some(), "{k}");
        }
        assert_eq!(s["summary"]["totalLinesProcessed"], 1);
        assert_eq!(s["cache"]["chunk"]["requests"], 0);
    }
}
