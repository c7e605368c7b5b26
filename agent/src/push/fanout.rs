//! Several endpoints: every chunk goes to every endpoint's own batcher, through a
//! per-endpoint buffer of `queue_config.capacity` bytes.
//!
//! Each copy shares the chunk's `Arc<FileMeta>`, and the Alloy router acknowledges a file
//! offset only once no output chunk holding that meta is alive, so a position advances only
//! after *every* endpoint has acknowledged (or dropped, counted) its copy. A slow or dead
//! endpoint does not stop the others until its buffer is full; then, like Alloy (whose
//! fan-out sends to each endpoint in turn and blocks on a full one), reading pauses for all —
//! unless that endpoint has `block_on_overflow = false`, in which case its copies are dropped
//! as `queue_is_full` and the others go on.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::chunk::Chunk;
use crate::metrics::Metrics;

/// One endpoint's side of the fan-out.
pub struct Lane {
    /// The endpoint's batcher queue.
    pub out: mpsc::Sender<Chunk>,
    /// Buffer size in line bytes (`queue_config.capacity`).
    pub capacity: usize,
    /// Wait for room (true) or drop this endpoint's copy when the buffer is full.
    pub block_on_overflow: bool,
    /// `host` and tenant labels for the `queue_is_full` drop counter.
    pub host: Arc<str>,
    pub tenant: String,
}

/// A copy of a chunk sharing its file meta (so acknowledgement waits for every copy).
pub fn copy_chunk(c: &Chunk) -> Chunk {
    Chunk {
        file: c.file.clone(),
        data: c.data.clone(),
        entries: c.entries.clone(),
        commit_offset: c.commit_offset,
        line_bytes: c.line_bytes,
        metadata: c.metadata.clone(),
    }
}

struct Buffer {
    tx: mpsc::UnboundedSender<(Chunk, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    capacity: u32,
    block: bool,
    host: Arc<str>,
    tenant: String,
}

/// Starts the fan-out to `lanes`; returns its input queue and its tasks (for draining).
pub fn spawn(
    handle: &tokio::runtime::Handle,
    lanes: Vec<Lane>,
    queue: usize,
    metrics: Arc<Metrics>,
) -> (mpsc::Sender<Chunk>, Vec<JoinHandle<()>>) {
    let (tx, mut rx) = mpsc::channel::<Chunk>(queue.max(1));
    let mut tasks = Vec::with_capacity(lanes.len() + 1);
    let mut buffers = Vec::with_capacity(lanes.len());
    for lane in lanes {
        let capacity = u32::try_from(lane.capacity.max(1)).unwrap_or(u32::MAX);
        let budget = Arc::new(Semaphore::new(capacity as usize));
        let (btx, mut brx) = mpsc::unbounded_channel::<(Chunk, OwnedSemaphorePermit)>();
        let out = lane.out;
        // Moves buffered chunks into the batcher; the room is given back once it took one.
        tasks.push(handle.spawn(async move {
            while let Some((chunk, permit)) = brx.recv().await {
                if out.send(chunk).await.is_err() {
                    return;
                }
                drop(permit);
            }
        }));
        buffers.push(Buffer {
            tx: btx,
            budget,
            capacity,
            block: lane.block_on_overflow,
            host: lane.host,
            tenant: lane.tenant,
        });
    }
    tasks.push(handle.spawn(async move {
        while let Some(chunk) = rx.recv().await {
            let last = buffers.len().saturating_sub(1);
            let mut original = Some(chunk);
            for (i, b) in buffers.iter().enumerate() {
                let Some((entries, bytes)) =
                    original.as_ref().map(|c| (c.entries.len(), c.line_bytes))
                else {
                    break;
                };
                // A chunk larger than the whole buffer still fits alone.
                let cost = u32::try_from(bytes.max(1))
                    .unwrap_or(u32::MAX)
                    .min(b.capacity);
                let permit = if b.block {
                    match b.budget.clone().acquire_many_owned(cost).await {
                        Ok(p) => p,
                        Err(_) => continue,
                    }
                } else {
                    match b.budget.clone().try_acquire_many_owned(cost) {
                        Ok(p) => p,
                        Err(_) => {
                            metrics.batch_dropped(
                                &b.host,
                                &b.tenant,
                                "queue_is_full",
                                entries,
                                bytes,
                            );
                            continue;
                        }
                    }
                };
                let copy = if i == last {
                    original.take()
                } else {
                    original.as_ref().map(copy_chunk)
                };
                if let Some(copy) = copy {
                    let _ = b.tx.send((copy, permit));
                }
            }
        }
        // Dropping the buffers closes them: the forwarders finish and close the batchers.
    }));
    (tx, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Entry, FileMeta, Stream};

    fn chunk(meta: &Arc<FileMeta>, line: &str) -> Chunk {
        Chunk {
            file: meta.clone(),
            data: line.as_bytes().to_vec(),
            entries: vec![Entry {
                ts_ns: 1,
                start: 0,
                end: line.len() as u32,
                stream: Stream::Unknown,
                metadata: crate::chunk::NO_METADATA,
            }],
            commit_offset: 1,
            line_bytes: line.len(),
            metadata: Vec::new(),
        }
    }

    fn meta() -> Arc<FileMeta> {
        Arc::new(FileMeta {
            id: 7,
            path: "/f".into(),
            tenant: Arc::from("t"),
            labels: [Arc::from("{}"), Arc::from("{}"), Arc::from("{}")],
        })
    }

    fn lane(out: mpsc::Sender<Chunk>, capacity: usize, block: bool) -> Lane {
        Lane {
            out,
            capacity,
            block_on_overflow: block,
            host: Arc::from("h"),
            tenant: "t".into(),
        }
    }

    #[tokio::test]
    async fn every_lane_gets_a_copy_and_the_meta_lives_until_all_are_gone() {
        let (a_tx, mut a_rx) = mpsc::channel(4);
        let (b_tx, mut b_rx) = mpsc::channel(4);
        let metrics = Arc::new(Metrics::new("h"));
        let (tx, _tasks) = spawn(
            &tokio::runtime::Handle::current(),
            vec![lane(a_tx, 100, true), lane(b_tx, 100, true)],
            4,
            metrics,
        );
        let m = meta();
        tx.send(chunk(&m, "hello")).await.unwrap();
        let a = a_rx.recv().await.unwrap();
        let b = b_rx.recv().await.unwrap();
        assert_eq!(
            (a.data.as_slice(), b.data.as_slice()),
            (&b"hello"[..], &b"hello"[..])
        );
        assert!(Arc::ptr_eq(&a.file, &m) && Arc::ptr_eq(&b.file, &m));
        drop(a);
        assert_eq!(
            Arc::strong_count(&m),
            2,
            "b's copy still holds the position"
        );
        drop(b);
        assert_eq!(Arc::strong_count(&m), 1);
    }

    #[tokio::test]
    async fn a_stuck_lane_does_not_stop_the_other_until_its_buffer_is_full() {
        // Lane a's batcher never reads (queue of 1); its buffer holds 10 bytes.
        let (a_tx, _a_rx) = mpsc::channel(1);
        let (b_tx, mut b_rx) = mpsc::channel(64);
        let metrics = Arc::new(Metrics::new("h"));
        let (tx, _tasks) = spawn(
            &tokio::runtime::Handle::current(),
            vec![lane(a_tx, 10, true), lane(b_tx, 100, true)],
            1,
            metrics,
        );
        let m = meta();
        // 1 chunk sits in a's batcher queue, 10 bytes wait in its buffer (one of them in the
        // forwarder's hand): 11 chunks reach b; the 12th waits for room at a, ahead of b.
        let sender = tokio::spawn(async move {
            for _ in 0..13 {
                if tx.send(chunk(&m, "x")).await.is_err() {
                    return;
                }
            }
        });
        let mut got = 0;
        while let Ok(Some(_)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), b_rx.recv()).await
        {
            got += 1;
        }
        assert_eq!(got, 11);
        sender.abort();
    }

    #[tokio::test]
    async fn a_full_non_blocking_lane_drops_its_copy_and_counts_it() {
        let (a_tx, _a_rx) = mpsc::channel(1);
        let (b_tx, mut b_rx) = mpsc::channel(64);
        let metrics = Arc::new(Metrics::new("h"));
        let (tx, _tasks) = spawn(
            &tokio::runtime::Handle::current(),
            vec![lane(a_tx, 3, false), lane(b_tx, 100, true)],
            64,
            metrics.clone(),
        );
        let m = meta();
        for _ in 0..10 {
            tx.send(chunk(&m, "xy")).await.unwrap();
        }
        for _ in 0..10 {
            b_rx.recv().await.unwrap();
        }
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("loki_write_dropped_entries_total") && l.contains("queue_is_full")
            })
            .unwrap_or_default()
            .to_string();
        // a's 3-byte buffer holds one 2-byte chunk at a time, plus one chunk in its batcher
        // queue once the forwarder got to run: 8 or 9 of the 10 copies are dropped.
        assert!(line.ends_with(" 8") || line.ends_with(" 9"), "{line}");
    }
}
