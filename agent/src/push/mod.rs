//! Delivery: one sender task per tenant pushes its batches one at a time, in order, retrying
//! per [`retry::decide`], and acknowledges file positions only after Loki accepted the batch
//! or it was dropped with a counted reason.

pub mod client;
pub mod retry;

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::tail::positions::Positions;
use client::LokiClient;
use retry::{decide, exhausted_reason, Backoff, Decision};

/// Everything a tenant's sender needs.
#[derive(Clone)]
pub struct SenderCtx {
    pub client: LokiClient,
    pub settings: Arc<Settings>,
    pub positions: Arc<Positions>,
    pub metrics: Arc<Metrics>,
}

/// Pushes batches of `tenant` until the queue closes.
pub async fn run_sender(ctx: SenderCtx, tenant: Arc<str>, mut rx: mpsc::Receiver<Batch>) {
    ctx.metrics.tenant_started(&tenant);
    while let Some(batch) = rx.recv().await {
        if batch.entries > 0 {
            deliver(&ctx, &tenant, &batch).await;
        }
        for (id, offset) in batch.commits() {
            ctx.positions.ack(id, offset);
        }
    }
}

/// Sends one batch until it is accepted or dropped.
async fn deliver(ctx: &SenderCtx, tenant: &str, batch: &Batch) {
    let body = Bytes::from(loki_wire::snappy::compress(&batch.encode()));
    let s = &ctx.settings;
    let mut backoff = Backoff::new(s.min_backoff, s.max_backoff);
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let a = ctx.client.push(body.clone(), tenant).await;
        let status = match a.outcome {
            retry::Outcome::Status { code, .. } => Some(code),
            retry::Outcome::Connection => None,
        };
        ctx.metrics.request_done(tenant, status, a.took, body.len());
        match decide(a.outcome, s.retry_on_429) {
            Decision::Success => {
                ctx.metrics
                    .batch_sent(tenant, batch.entries, batch.line_bytes);
                return;
            }
            Decision::Drop(reason) => {
                tracing::warn!(tenant, ?status, reason, entries = batch.entries, detail = %a.detail, "batch dropped");
                ctx.metrics
                    .batch_dropped(tenant, reason, batch.entries, batch.line_bytes);
                return;
            }
            Decision::Retry if s.max_retries != 0 && attempts >= s.max_retries => {
                let reason = exhausted_reason(a.outcome);
                tracing::error!(tenant, ?status, attempts, reason, entries = batch.entries, detail = %a.detail, "retries exhausted; batch dropped");
                ctx.metrics
                    .batch_dropped(tenant, reason, batch.entries, batch.line_bytes);
                return;
            }
            Decision::Retry => {
                let delay = backoff.delay_for(a.outcome, rand::rng().random::<f64>());
                tracing::warn!(tenant, ?status, attempts, ?delay, detail = %a.detail, "push failed; retrying");
                ctx.metrics.batch_retried(tenant);
                tokio::time::sleep(delay).await;
            }
        }
    }
}
