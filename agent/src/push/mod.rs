//! Delivery: one sender task per tenant and endpoint pushes its batches one at a time, in
//! order, retrying per [`retry::decide`], and acknowledges file positions only after Loki
//! accepted the batch or it was dropped with a counted reason. With several endpoints,
//! [`fanout`] gives each its own copy of every chunk.

pub mod client;
pub mod fanout;
pub mod retry;
pub mod tls;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::config::Endpoint;
use crate::metrics::Metrics;
use crate::tail::positions::Positions;
use client::LokiClient;
use retry::{decide, exhausted_reason, rejected_entries, Backoff, Decision};

/// Everything a sender of one endpoint needs.
#[derive(Clone)]
pub struct SenderCtx {
    pub client: LokiClient,
    pub endpoint: Arc<Endpoint>,
    /// The endpoint's `host` metric label.
    pub host: Arc<str>,
    pub positions: Arc<Positions>,
    pub metrics: Arc<Metrics>,
}

impl SenderCtx {
    pub fn new(
        endpoint: Endpoint,
        positions: Arc<Positions>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::AgentError> {
        let client = LokiClient::new(&endpoint)?;
        Ok(SenderCtx {
            host: Arc::from(client.host()),
            client,
            endpoint: Arc::new(endpoint),
            positions,
            metrics,
        })
    }
}

/// Pushes batches queued under `tenant` until the queue closes.
pub async fn run_sender(ctx: SenderCtx, queued: Arc<str>, mut rx: mpsc::Receiver<Batch>) {
    // The metric label; the request's tenant is resolved per push (a `tenant_id` from
    // `remote.kubernetes.*` data can change).
    let tenant = ctx.endpoint.tenant_for(&queued).to_string();
    ctx.metrics.tenant_started(&ctx.host, &tenant);
    while let Some(mut batch) = rx.recv().await {
        let max = ctx.endpoint.max_streams;
        if max > 0 {
            let (entries, bytes) = limit_streams(&mut batch, max);
            if entries > 0 {
                tracing::warn!(
                    tenant,
                    max_streams = max,
                    entries,
                    "streams limit exceeded; entries dropped"
                );
                ctx.metrics
                    .batch_dropped(&ctx.host, &tenant, "stream_limited", entries, bytes);
            }
        }
        if batch.entries > 0 {
            deliver(&ctx, &tenant, &queued, &batch).await;
        }
        for (id, offset) in batch.commits() {
            ctx.positions.ack(id, offset);
        }
    }
}

/// Alloy's `max_streams`: a batch takes entries of at most `max` distinct label sets; an
/// entry of a further stream is dropped (Alloy drops it as `stream_limited` rather than
/// starting a new batch). Returns the dropped entries and line bytes.
pub fn limit_streams(batch: &mut Batch, max: usize) -> (usize, usize) {
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    let (mut entries, mut bytes) = (0, 0);
    for c in &mut batch.chunks {
        let labels = c.file.labels.clone();
        let before = c.entries.len();
        let mut dropped_bytes = 0;
        let mut keep = Vec::with_capacity(before);
        for e in &c.entries {
            let l = &labels[e.stream as usize];
            if seen.contains(l) || (seen.len() < max && seen.insert(l.clone())) {
                keep.push(*e);
            } else {
                // The chunk's own size measure (line plus structured metadata bytes).
                dropped_bytes += c.entry_bytes(e);
            }
        }
        c.entries = keep;
        c.line_bytes -= dropped_bytes;
        entries += before - c.entries.len();
        bytes += dropped_bytes;
    }
    batch.entries -= entries;
    batch.line_bytes -= bytes;
    (entries, bytes)
}

/// Sends one batch until it is accepted or dropped.
async fn deliver(ctx: &SenderCtx, tenant: &str, queued: &str, batch: &Batch) {
    let body = Bytes::from(loki_wire::snappy::compress(&batch.encode()));
    let s = &ctx.endpoint;
    let host = &*ctx.host;
    let mut backoff = Backoff::new(s.min_backoff, s.max_backoff);
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let a = ctx.client.push(body.clone(), queued).await;
        let status = match a.outcome {
            retry::Outcome::Status { code, .. } => Some(code),
            retry::Outcome::Connection => None,
        };
        ctx.metrics
            .request_done(host, tenant, status, a.took, body.len());
        let detail = short(&a.detail);
        match decide(a.outcome, s.retry_on_429) {
            Decision::Success => {
                ctx.metrics
                    .batch_sent(host, tenant, batch.entries, batch.line_bytes);
                return;
            }
            Decision::Drop(reason) => {
                // A 400 may refuse only some entries: count those, the rest were stored.
                let refused = match status {
                    Some(400) => rejected_entries(&a.detail, batch.entries),
                    _ => batch.entries,
                };
                let refused_bytes = proportion(batch.line_bytes, refused, batch.entries);
                tracing::warn!(
                    host,
                    tenant,
                    ?status,
                    reason,
                    entries = batch.entries,
                    refused,
                    detail,
                    "entries refused by Loki; dropped"
                );
                ctx.metrics
                    .batch_dropped(host, tenant, reason, refused, refused_bytes);
                if refused < batch.entries {
                    ctx.metrics.batch_sent(
                        host,
                        tenant,
                        batch.entries - refused,
                        batch.line_bytes - refused_bytes,
                    );
                }
                return;
            }
            // Only when a limit was configured (Alloy's `max_backoff_retries`): the default
            // retries for as long as it takes, reading paused, positions held.
            Decision::Retry if s.max_retries != 0 && attempts >= s.max_retries => {
                let reason = exhausted_reason(a.outcome);
                tracing::error!(
                    host,
                    tenant,
                    ?status,
                    attempts,
                    reason,
                    entries = batch.entries,
                    detail,
                    "retries exhausted (max_backoff_retries); batch dropped"
                );
                ctx.metrics
                    .batch_dropped(host, tenant, reason, batch.entries, batch.line_bytes);
                return;
            }
            Decision::Retry => {
                let delay = backoff.delay_for(a.outcome, rand::rng().random::<f64>());
                tracing::warn!(
                    host,
                    tenant,
                    ?status,
                    attempts,
                    ?delay,
                    detail,
                    "push failed; retrying"
                );
                ctx.metrics.batch_retried(host, tenant);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The start of a response body, for log lines.
fn short(detail: &str) -> &str {
    let mut end = detail.len().min(512);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    &detail[..end]
}

/// `total * part / whole`, without overflow.
fn proportion(total: usize, part: usize, whole: usize) -> usize {
    if whole == 0 {
        return total;
    }
    ((total as u128 * part as u128) / whole as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Chunk, Entry, FileMeta, Stream};

    fn chunk(labels: [&str; 3], lines: &[(&str, Stream)]) -> Chunk {
        let mut data = Vec::new();
        let mut entries = Vec::new();
        for (l, s) in lines {
            let start = data.len() as u32;
            data.extend_from_slice(l.as_bytes());
            entries.push(Entry {
                ts_ns: 1,
                start,
                end: data.len() as u32,
                stream: *s,
                metadata: crate::chunk::NO_METADATA,
            });
        }
        Chunk {
            file: Arc::new(FileMeta {
                id: 1,
                path: "/f".into(),
                tenant: Arc::from(""),
                labels: labels.map(Arc::from),
            }),
            line_bytes: data.len(),
            data,
            entries,
            commit_offset: 9,
            metadata: Vec::new(),
        }
    }

    #[test]
    fn max_streams_keeps_the_first_streams_and_drops_entries_of_later_ones() {
        let mut b = Batch::default();
        b.push(chunk(
            ["{a=\"1\"}", "{a=\"2\"}", "{a=\"3\"}"],
            &[
                ("x", Stream::Stdout),
                ("yy", Stream::Stderr),
                ("zzz", Stream::Unknown),
                ("w", Stream::Stdout),
            ],
        ));
        b.push(chunk(
            ["{a=\"2\"}", "{a=\"4\"}", "{a=\"1\"}"],
            &[
                ("v", Stream::Stdout),
                ("uu", Stream::Stderr),
                ("t", Stream::Unknown),
            ],
        ));
        assert_eq!(limit_streams(&mut b, 2), (2, 5));
        let kept: Vec<&[u8]> = b
            .chunks
            .iter()
            .flat_map(|c| c.entries.iter().map(move |e| c.line(e)))
            .collect();
        assert_eq!(kept, [&b"x"[..], b"yy", b"w", b"v", b"t"]);
        assert_eq!((b.entries, b.line_bytes), (5, 6));
        assert_eq!(
            b.commits(),
            vec![(1, 9)],
            "commits are kept: the drop is counted"
        );
        assert_eq!(limit_streams(&mut b, 2), (0, 0));
    }
}
