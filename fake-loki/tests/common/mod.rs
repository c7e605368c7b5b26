//! Test helpers: a tiny HTTP/1 client over real sockets and push-body builders.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use loki_wire::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use prost::Message;

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    send("GET", url, headers, Vec::new()).await
}

pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

/// One test entry: timestamp, line, structured metadata.
pub type TestEntry<'a> = (i64, &'a str, Vec<(&'a str, &'a str)>);
/// One test stream: label string and entries.
pub type TestStream<'a> = (&'a str, Vec<TestEntry<'a>>);

/// A request of (labels, [(ts, line, metadata)]) streams.
pub fn request(streams: &[TestStream<'_>]) -> PushRequest {
    PushRequest {
        streams: streams
            .iter()
            .map(|(labels, entries)| StreamAdapter {
                labels: labels.to_string(),
                entries: entries
                    .iter()
                    .map(|(ts, line, md)| EntryAdapter {
                        timestamp: Some(Timestamp::from_unix_nanos(*ts)),
                        line: Bytes::from(line.to_string()),
                        structured_metadata: md
                            .iter()
                            .map(|(k, v)| LabelPairAdapter {
                                name: k.to_string(),
                                value: v.to_string(),
                            })
                            .collect(),
                        parsed: vec![],
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
        format: String::new(),
    }
}

pub fn proto_body(req: &PushRequest) -> Vec<u8> {
    loki_wire::snappy::compress(&req.encode_to_vec())
}

pub async fn push(url: &str, tenant: &str, req: &PushRequest) -> Resp {
    send(
        "POST",
        &format!("{url}/loki/api/v1/push"),
        &[
            ("Content-Type", "application/x-protobuf"),
            ("X-Scope-OrgID", tenant),
        ],
        proto_body(req),
    )
    .await
}
