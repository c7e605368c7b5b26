//! `POST /loki/api/v1/push` (and `/api/prom/push`): tenant, faults, body decoding
//! (Content-Encoding, then JSON or snappy-block protobuf by Content-Type), ingestion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request};
use hyper::body::Incoming;
use loki_wire::encoding::{self, ContentEncoding};
use loki_wire::{
    json, snappy, EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp,
};
use prost::Message;

use super::{empty, json_push, read_body, text, Reply};
use crate::faults::FaultAction;
use crate::ingest::{self, IngestContext};
use crate::{alloc_trim, tenant, State};

pub async fn handle(state: &Arc<State>, req: Request<Incoming>, legacy: bool) -> Reply {
    let t = if state.config.auth_enabled {
        let h = req
            .headers()
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok());
        match tenant::single(h) {
            Ok(t) => t,
            Err(e) => return Reply::Respond(text(e.status, format!("{}\n", e.message))),
        }
    } else {
        state.config.no_auth_tenant.clone()
    };

    let mut discard = false;
    if let Some(f) = state.faults.decide(&t) {
        state.metrics.fault_applied(match f.action {
            FaultAction::Status => "status",
            FaultAction::Reset => "reset",
            FaultAction::Latency => "latency",
            FaultAction::Discard => "discard",
        });
        match f.action {
            FaultAction::Reset => return Reply::Reset,
            FaultAction::Status => {
                // Drain the body so keep-alive connections stay usable.
                let _ = read_body(req, state.config.max_recv_msg_size).await;
                let mut r = text(
                    f.status,
                    format!("fake-loki: injected fault: status {}\n", f.status),
                );
                if let Some(s) = f.retry_after_seconds {
                    if let Ok(v) = header::HeaderValue::from_str(&s.to_string()) {
                        r.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                return Reply::Respond(r);
            }
            FaultAction::Latency => tokio::time::sleep(Duration::from_millis(f.latency_ms)).await,
            FaultAction::Discard => discard = true,
        }
    }

    // Held while the body is read, decompressed, decoded and ingested.
    let Ok(_slot) = state.push_slots.acquire().await else {
        return Reply::Respond(text(503, "fake-loki: shutting down\n"));
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (_, body) = match read_body(req, state.config.max_recv_msg_size).await {
        Ok(b) => b,
        Err(resp) => {
            state.metrics.discarded(&t, "request_body_too_large", 0, 0);
            return Reply::Respond(resp);
        }
    };
    let decoded = match decode(state, &body, &content_type, &content_encoding, legacy) {
        Ok(r) => r,
        Err((status, msg)) => {
            if status == 413 {
                state
                    .metrics
                    .discarded(&t, "request_body_too_large", 0, body.len() as u64);
            }
            // The body and whatever was decoded of it are freed: hand the pages back.
            if status == 413 || body.len() >= alloc_trim::TRIM_AFTER_BYTES {
                drop(body);
                alloc_trim::trim();
            }
            return Reply::Respond(text(status, format!("{msg}\n")));
        }
    };
    drop(body);
    if discard {
        return Reply::Respond(empty(204));
    }
    let large = decoded.size >= alloc_trim::TRIM_AFTER_BYTES;
    let resp = ingest_request(state, &t, decoded.request);
    if large && resp.status().as_u16() >= 400 {
        alloc_trim::trim();
    }
    Reply::Respond(resp)
}

/// A decoded push and the size of its decompressed body.
pub struct Decoded {
    pub request: PushRequest,
    pub size: usize,
}

/// Decodes a push body into a request, with Loki's status and message on failure.
pub fn decode(
    state: &State,
    body: &[u8],
    content_type: &str,
    content_encoding: &str,
    legacy: bool,
) -> Result<Decoded, (u16, String)> {
    let enc = ContentEncoding::from_header(content_encoding).map_err(|e| (400, e.to_string()))?;
    let raw = match enc {
        ContentEncoding::Identity => Bytes::copy_from_slice(body),
        other => Bytes::from(
            encoding::decode(body, other, state.config.max_decompressed_size).map_err(
                |e| match e {
                    loki_wire::WireError::DecompressedTooLarge { .. } => (413, e.to_string()),
                    e => (400, e.to_string()),
                },
            )?,
        ),
    };
    let size = raw.len();
    let request = decode_plain(state, raw, content_type, legacy)?;
    check_counts(state, &request)?;
    Ok(Decoded { request, size })
}

fn decode_plain(
    state: &State,
    raw: Bytes,
    content_type: &str,
    legacy: bool,
) -> Result<PushRequest, (u16, String)> {
    // Go's mime.ParseMediaType: parameters such as charset are ignored, case-insensitive.
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json" {
        return if legacy {
            json::parse_legacy(&raw).map_err(|e| (400, e.to_string()))
        } else {
            let bounds = json_push::Bounds {
                max_streams: state.config.max_push_streams,
                max_entries: state.config.max_push_entries,
            };
            json_push::parse_v1(&raw, bounds).map_err(|e| (400, e))
        };
    }
    // Every other type (and, as Loki 3.7 does, a missing one) is snappy-block protobuf.
    let plain =
        snappy::decompress(&raw, state.config.max_decompressed_size).map_err(|e| match e {
            loki_wire::WireError::SnappyTooLarge { .. } => (413, e.to_string()),
            e => (400, e.to_string()),
        })?;
    drop(raw);
    PushRequest::decode(Bytes::from(plain)).map_err(|e| (400, format!("proto: {e}")))
}

/// The per-request bounds for bodies decoded whole (protobuf, legacy JSON).
fn check_counts(state: &State, r: &PushRequest) -> Result<(), (u16, String)> {
    let streams = r.streams.len();
    let entries: usize = r.streams.iter().map(|s| s.entries.len()).sum();
    if streams > state.config.max_push_streams {
        return Err((
            400,
            format!(
                "the push body has more than {} streams",
                state.config.max_push_streams
            ),
        ));
    }
    if entries > state.config.max_push_entries {
        return Err((
            400,
            format!(
                "the push body has more than {} entries",
                state.config.max_push_entries
            ),
        ));
    }
    Ok(())
}

/// Ingests a decoded push for `tenant` and renders the answer.
pub fn ingest_request(
    state: &State,
    tenant: &str,
    req: PushRequest,
) -> http::Response<super::Body> {
    let now_ns = state.config.clock.now_ns();
    let limits = state.config.limits.for_tenant(tenant);
    let ctx = IngestContext {
        tenant,
        limits,
        metrics: &state.metrics,
        now_ns,
        now: Instant::now(),
        max_chunk_age_ns: state.config.max_chunk_age_ns,
    };
    let mut wal_error = None;
    let mut outcome = {
        let mut store = state.store.write();
        let mut limiters = state.limiters.lock();
        let mut data_dir = state.data_dir.as_ref().map(|d| d.lock());
        ingest::ingest(
            &ctx,
            &mut store,
            &mut limiters,
            req,
            &mut |labels, entries| {
                if let Some(dd) = data_dir.as_mut() {
                    let rec = PushRequest {
                        streams: vec![StreamAdapter {
                            labels: labels.to_string(),
                            entries: entries
                                .iter()
                                .map(|(ts, line, md)| EntryAdapter {
                                    timestamp: Some(Timestamp::from_unix_nanos(*ts)),
                                    line: Bytes::copy_from_slice(line.as_bytes()),
                                    structured_metadata: md
                                        .iter()
                                        .map(|(k, v)| LabelPairAdapter {
                                            name: k.clone(),
                                            value: v.clone(),
                                        })
                                        .collect(),
                                    parsed: vec![],
                                })
                                .collect(),
                            hash: 0,
                        }],
                        format: String::new(),
                    };
                    if let Err(e) = dd.append(tenant, &rec) {
                        wal_error = Some(e.to_string());
                    }
                }
            },
        )
    };
    {
        let mut ledger = state.usage.lock();
        ledger.apply(now_ns, tenant, std::mem::take(&mut outcome.usage));
        if let Err(e) = ledger.maybe_save() {
            tracing::warn!(error = %e, "saving the usage ledger");
        }
    }
    if let Some(e) = wal_error {
        // Stored in memory but not durable: say so rather than acknowledge it.
        tracing::error!(error = %e, "data-dir append failed");
        return text(500, format!("fake-loki: could not persist the push: {e}\n"));
    }
    if outcome.status == 204 {
        empty(204)
    } else {
        text(outcome.status, outcome.body)
    }
}
