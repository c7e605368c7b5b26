//! A Loki query-API client that reads everything in a time range, paginating as a real client must.
//!
//! `query_range` returns at most `limit` entries in total (merged over streams, oldest first with
//! `direction=forward`) from `start <= ts < end`. To read more, the next page starts at the last
//! timestamp seen (inclusive), because more entries may share that nanosecond; entries at that exact
//! timestamp that were already delivered are skipped by identity (stream labels + line; Loki stores
//! one copy of an identical (ts, line) per stream, so the identity is exact).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::Error;

/// Loki's default `max_entries_limit_per_query`.
pub const MAX_LIMIT: usize = 5000;

/// One stream of a query result: its labels (possibly with folded structured metadata) and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResult {
    pub labels: BTreeMap<String, String>,
    pub values: Vec<(i64, String)>,
}

/// One forward log query page.
#[derive(Debug, Clone, Copy)]
pub struct RangeRequest<'a> {
    pub tenant: Option<&'a str>,
    pub query: &'a str,
    pub start_ns: i64,
    pub end_ns: i64,
    pub limit: usize,
}

/// Something that answers forward `query_range` log queries: Loki over HTTP, or a model in tests.
pub trait QueryApi {
    fn query_range(
        &self,
        req: &RangeRequest<'_>,
    ) -> impl Future<Output = Result<Vec<StreamResult>, Error>> + Send;
}

/// Reads every entry of `query` in `[start_ns, end_ns)`, page by page, calling `on_entry` once per
/// stored entry in timestamp order. Returns the number of pages requested.
pub async fn fetch_all<Q: QueryApi>(
    api: &Q,
    tenant: Option<&str>,
    query: &str,
    start_ns: i64,
    end_ns: i64,
    limit: usize,
    mut on_entry: impl FnMut(&BTreeMap<String, String>, i64, &str),
) -> Result<u64, Error> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut cursor = start_ns;
    // (labels, line) of entries already delivered at exactly `cursor`.
    let mut seen_at_cursor: HashSet<(String, String)> = HashSet::new();
    let mut pages = 0;
    while cursor < end_ns {
        let req = RangeRequest {
            tenant,
            query,
            start_ns: cursor,
            end_ns,
            limit,
        };
        let streams = api.query_range(&req).await?;
        pages += 1;
        let mut page: Vec<(i64, usize, usize)> = Vec::new();
        for (si, s) in streams.iter().enumerate() {
            for (vi, (ts, _)) in s.values.iter().enumerate() {
                page.push((*ts, si, vi));
            }
        }
        page.sort_by_key(|(ts, _, _)| *ts);
        let n = page.len();
        let key = |si: usize, vi: usize| {
            let s = &streams[si];
            (label_key(&s.labels), s.values[vi].1.clone())
        };
        let mut fresh = 0;
        for &(ts, si, vi) in &page {
            if ts == cursor && seen_at_cursor.contains(&key(si, vi)) {
                continue;
            }
            fresh += 1;
            on_entry(&streams[si].labels, ts, &streams[si].values[vi].1);
        }
        if n < limit {
            break;
        }
        let last = page.last().map(|e| e.0).unwrap_or(cursor);
        if last == cursor && fresh == 0 {
            // A full page of already-seen entries all at `cursor`: at least `limit` entries share
            // this nanosecond. Read just that nanosecond with the largest limit; if it fits, it is
            // complete and the cursor can move past it.
            if limit >= MAX_LIMIT {
                return Err(Error::PageStuck { limit, ts_ns: last });
            }
            let req = RangeRequest {
                tenant,
                query,
                start_ns: cursor,
                end_ns: cursor.saturating_add(1).min(end_ns),
                limit: MAX_LIMIT,
            };
            let streams = api.query_range(&req).await?;
            pages += 1;
            let total: usize = streams.iter().map(|s| s.values.len()).sum();
            if total >= MAX_LIMIT {
                return Err(Error::PageStuck {
                    limit: MAX_LIMIT,
                    ts_ns: last,
                });
            }
            for s in &streams {
                let lk = label_key(&s.labels);
                for (ts, line) in &s.values {
                    if !seen_at_cursor.contains(&(lk.clone(), line.clone())) {
                        on_entry(&s.labels, *ts, line);
                    }
                }
            }
            seen_at_cursor.clear();
            cursor = cursor.saturating_add(1);
            continue;
        }
        if last != cursor {
            seen_at_cursor.clear();
            cursor = last;
        }
        for &(ts, si, vi) in page.iter().rev() {
            if ts != last {
                break;
            }
            seen_at_cursor.insert(key(si, vi));
        }
    }
    Ok(pages)
}

fn label_key(labels: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in labels {
        s.push_str(k);
        s.push('\u{1}');
        s.push_str(v);
        s.push('\u{2}');
    }
    s
}

/// Loki (or fake-loki) over HTTP/1.1.
#[derive(Clone)]
pub struct HttpLoki {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    data: QueryData,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawStream>,
}

#[derive(Deserialize)]
struct RawStream {
    stream: BTreeMap<String, String>,
    // `[ts, line]` or `[ts, line, {metadata}]`: parsed by hand to accept both.
    values: Vec<Vec<serde_json::Value>>,
}

impl HttpLoki {
    /// `base` is e.g. `http://127.0.0.1:3100` (no trailing path).
    pub fn new(base: &str) -> HttpLoki {
        HttpLoki {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout: Duration::from_secs(30),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` with an optional tenant header; returns (status, body).
    pub async fn get(
        &self,
        path_and_query: &str,
        tenant: Option<&str>,
    ) -> Result<(u16, Bytes), Error> {
        self.request(http::Method::GET, path_and_query, tenant, None)
            .await
    }

    /// Any request with an optional JSON body; returns (status, body).
    pub async fn request(
        &self,
        method: http::Method,
        path_and_query: &str,
        tenant: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), Error> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = http::Request::builder().method(method).uri(&url);
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        if json.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| Error::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| Error::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(|e| Error::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| Error::Http {
                url: url.clone(),
                message: format!("no response within {:?}", self.timeout),
            })?
    }

    /// Whether `GET /ready` answers 200.
    pub async fn ready(&self) -> bool {
        matches!(self.get("/ready", None).await, Ok((200, _)))
    }
}

impl QueryApi for HttpLoki {
    async fn query_range(&self, req: &RangeRequest<'_>) -> Result<Vec<StreamResult>, Error> {
        let qs = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", req.query)
            .append_pair("start", &req.start_ns.to_string())
            .append_pair("end", &req.end_ns.to_string())
            .append_pair("limit", &req.limit.to_string())
            .append_pair("direction", "forward")
            .finish();
        let path = format!("/loki/api/v1/query_range?{qs}");
        let url = format!("{}{}", self.base, path);
        let (status, body) = self.get(&path, req.tenant).await?;
        if status != 200 {
            return Err(Error::QueryStatus {
                url,
                status,
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        parse_response(&url, &body)
    }
}

/// Parses a `query_range` log response (spec §2.4).
pub fn parse_response(url: &str, body: &[u8]) -> Result<Vec<StreamResult>, Error> {
    let bad = |m: String| Error::QueryResponse {
        url: url.to_owned(),
        message: m,
    };
    let resp: QueryResponse = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if resp.status != "success" {
        return Err(bad(format!("status {:?}", resp.status)));
    }
    if resp.data.result_type != "streams" {
        return Err(bad(format!(
            "resultType {:?}, want streams",
            resp.data.result_type
        )));
    }
    let mut out = Vec::with_capacity(resp.data.result.len());
    for s in resp.data.result {
        let mut values = Vec::with_capacity(s.values.len());
        for v in s.values {
            let ts = v
                .first()
                .and_then(|t| t.as_str())
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| bad("value timestamp is not a string of ns".to_owned()))?;
            let line = v
                .get(1)
                .and_then(|l| l.as_str())
                .ok_or_else(|| bad("value line is not a string".to_owned()))?;
            values.push((ts, line.to_owned()));
        }
        out.push(StreamResult {
            labels: s.stream,
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A model of Loki's forward log query: merge streams by ts, `start <= ts < end`, stop after
    /// `limit` in total. Equal timestamps come back in an order that changes with every call, so the
    /// client cannot rely on it.
    struct Model {
        streams: Vec<StreamResult>,
        calls: AtomicU64,
    }

    impl QueryApi for Model {
        async fn query_range(&self, req: &RangeRequest<'_>) -> Result<Vec<StreamResult>, Error> {
            let call = self.calls.fetch_add(1, Ordering::Relaxed);
            let mut all: Vec<(i64, usize, String)> = Vec::new();
            for (si, s) in self.streams.iter().enumerate() {
                for (ts, l) in &s.values {
                    if *ts >= req.start_ns && *ts < req.end_ns {
                        all.push((*ts, si, l.clone()));
                    }
                }
            }
            all.sort_by(|a, b| {
                a.0.cmp(&b.0).then_with(|| {
                    if call & 1 == 0 {
                        (a.1, &a.2).cmp(&(b.1, &b.2))
                    } else {
                        (b.1, &b.2).cmp(&(a.1, &a.2))
                    }
                })
            });
            all.truncate(req.limit);
            let mut out: BTreeMap<usize, StreamResult> = BTreeMap::new();
            for (ts, si, l) in all {
                out.entry(si)
                    .or_insert_with(|| StreamResult {
                        labels: self.streams[si].labels.clone(),
                        values: Vec::new(),
                    })
                    .values
                    .push((ts, l));
            }
            Ok(out.into_values().collect())
        }
    }

    fn stream(name: &str, values: Vec<(i64, String)>) -> StreamResult {
        StreamResult {
            labels: BTreeMap::from([("pod".to_owned(), name.to_owned())]),
            values,
        }
    }

    async fn collect(
        model: &Model,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64, String)>, Error> {
        let mut got = Vec::new();
        fetch_all(
            model,
            Some("t"),
            "{pod=~\".+\"}",
            start,
            end,
            limit,
            |l, ts, line| got.push((l["pod"].clone(), ts, line.to_owned())),
        )
        .await?;
        got.sort();
        Ok(got)
    }

    #[tokio::test]
    async fn pagination_returns_every_entry_once_even_with_many_at_one_timestamp() {
        // Two streams; bursts of 7 entries share a nanosecond and straddle page boundaries.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..200i64 {
            let ts = 1000 + (i / 7);
            a.push((ts, format!("a{i}")));
            if i % 3 == 0 {
                b.push((ts, format!("b{i}")));
            }
        }
        let model = Model {
            streams: vec![stream("a", a.clone()), stream("b", b.clone())],
            calls: AtomicU64::new(0),
        };
        let mut want: Vec<(String, i64, String)> = a
            .iter()
            .map(|(t, l)| ("a".to_owned(), *t, l.clone()))
            .chain(b.iter().map(|(t, l)| ("b".to_owned(), *t, l.clone())))
            .collect();
        want.sort();
        for limit in [10, 11, 13, 50, 5000] {
            let got = collect(&model, 0, 10_000, limit).await.expect("fetch");
            assert_eq!(got, want, "limit {limit}");
        }
    }

    #[tokio::test]
    async fn end_is_exclusive_and_start_inclusive() {
        let model = Model {
            streams: vec![stream(
                "a",
                vec![(5, "x".into()), (10, "y".into()), (20, "z".into())],
            )],
            calls: AtomicU64::new(0),
        };
        let got = collect(&model, 10, 20, 2).await.expect("fetch");
        assert_eq!(got, vec![("a".to_owned(), 10, "y".to_owned())]);
    }

    #[tokio::test]
    async fn more_entries_at_one_timestamp_than_the_limit_is_an_error_not_a_loop() {
        let model = Model {
            streams: vec![stream("a", (0..10).map(|i| (7, format!("l{i}"))).collect())],
            calls: AtomicU64::new(0),
        };
        // 10 at one ns with a page limit of 4: recovered with one wider read of that nanosecond.
        assert_eq!(collect(&model, 0, 100, 4).await.expect("fetch").len(), 10);
        let model = Model {
            streams: vec![stream(
                "a",
                (0..MAX_LIMIT).map(|i| (7, format!("l{i}"))).collect(),
            )],
            calls: AtomicU64::new(0),
        };
        let err = collect(&model, 0, 100, 4).await.expect_err("stuck");
        assert!(
            matches!(
                err,
                Error::PageStuck {
                    limit: MAX_LIMIT,
                    ts_ns: 7
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn parses_documented_response_shapes() {
        let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"pod":"p","detected_level":"info"},"values":[["17","a"],["18","b",{"structuredMetadata":{"x":"y"}}]]}],
            "stats":{}}}"#;
        let got = parse_response("u", body).expect("parse");
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].values,
            vec![(17, "a".to_owned()), (18, "b".to_owned())]
        );
        assert_eq!(got[0].labels["detected_level"], "info");
        assert!(parse_response(
            "u",
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#
        )
        .is_err());
        assert!(parse_response("u", br#"{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[[17,"a"]]}]}}"#).is_err());
    }
}
