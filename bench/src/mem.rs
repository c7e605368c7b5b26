//! Memory per stored entry in fake-loki: ingest N entries through the push path and
//! compare the store's heap to the line bytes it holds.

use std::time::Instant;

use anyhow::{bail, Result};
use fake_loki::{Config, State};

use crate::data::{self, PushShape};
use crate::procfs;

/// What `bench mem` measured.
#[derive(Debug, Clone, Copy)]
pub struct MemReport {
    pub entries: u64,
    pub line_bytes: u64,
    /// `TenantData::heap_bytes()` after ingest.
    pub heap_bytes: u64,
    /// `(heap_bytes - line_bytes) / entries`.
    pub overhead_per_entry: f64,
    /// `heap_bytes / entries`.
    pub heap_per_entry: f64,
    /// Process RSS growth over the ingest, per entry (includes allocator slack).
    pub rss_per_entry: f64,
    pub ingest_entries_per_s: f64,
}

/// Ingests `entries` (rounded up to whole ~1 MiB pushes of 100 streams) of `line_bytes`.
pub fn measure(entries: u64, line_bytes: usize) -> Result<MemReport> {
    let shape = PushShape {
        line_bytes,
        ..PushShape::ONE_MIB
    };
    let per_push = shape.entries() as u64;
    let rounds = entries.div_ceil(per_push);
    let tck = procfs::clk_tck();
    let state = State::new(Config::for_tests())?;
    let base = data::base_ts_ns();
    let before = procfs::sample_self(tck)?;
    let mut busy = std::time::Duration::ZERO;
    for r in 0..rounds {
        let body = data::push_body(shape, base, r, 0);
        let t = Instant::now();
        let out = data::decode_and_ingest(&state, "bench", &body).map_err(anyhow::Error::msg)?;
        busy += t.elapsed();
        if out.stored != per_push {
            bail!(
                "push {r}: status {} stored {}: {}",
                out.status,
                out.stored,
                out.body
            );
        }
    }
    let after = procfs::sample_self(tck)?;
    let store = state.store.read();
    let Some(t) = store.tenant("bench") else {
        bail!("no tenant data after ingest");
    };
    let n = t.entries;
    let heap = t.heap_bytes() as u64;
    Ok(MemReport {
        entries: n,
        line_bytes: t.bytes,
        heap_bytes: heap,
        overhead_per_entry: (heap as f64 - t.bytes as f64) / n as f64,
        heap_per_entry: heap as f64 / n as f64,
        rss_per_entry: after.rss.saturating_sub(before.rss) as f64 / n as f64,
        ingest_entries_per_s: n as f64 / busy.as_secs_f64(),
    })
}
