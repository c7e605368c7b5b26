//! Batching per tenant: chunks accumulate until the next one would exceed `batch_bytes` of
//! line data or the oldest is `batch_wait` old; a batch then goes to the sender queue.
//!
//! A batch knows, per file, the offset that becomes safe once it is acknowledged.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use loki_wire::proto::{EntryRef, PushEncoder};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::chunk::Chunk;

/// Chunks of one tenant to be pushed together.
#[derive(Debug, Default)]
pub struct Batch {
    pub chunks: Vec<Chunk>,
    pub line_bytes: usize,
    pub entries: usize,
    /// When the first chunk arrived (for `batch_wait`).
    pub started: Option<Instant>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn push(&mut self, c: Chunk) {
        self.started.get_or_insert_with(Instant::now);
        self.line_bytes += c.line_bytes;
        self.entries += c.entries.len();
        self.chunks.push(c);
    }

    /// `(file id, offset)` to acknowledge, per file, in first-seen order.
    pub fn commits(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for c in &self.chunks {
            match out.iter_mut().find(|(id, _)| *id == c.file.id) {
                Some(slot) => slot.1 = c.commit_offset,
                None => out.push((c.file.id, c.commit_offset)),
            }
        }
        out
    }

    /// The protobuf `PushRequest` (not yet compressed). Entries of equal label strings are
    /// merged into one stream, keeping file order within each stream.
    pub fn encode(&self) -> Vec<u8> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut streams: Vec<(&str, Vec<EntryRef<'_>>)> = Vec::new();
        for c in &self.chunks {
            // Look each of the file's three label strings up once per chunk, not per entry.
            let mut slot: [Option<usize>; 3] = [None; 3];
            for e in &c.entries {
                let s = e.stream as usize;
                let i = match slot[s] {
                    Some(i) => i,
                    None => {
                        let labels: &str = &c.file.labels[s];
                        let i = *index.entry(labels).or_insert_with(|| {
                            streams.push((labels, Vec::new()));
                            streams.len() - 1
                        });
                        slot[s] = Some(i);
                        i
                    }
                };
                streams[i].1.push(EntryRef {
                    ts_ns: e.ts_ns,
                    line: c.line(e),
                    structured_metadata: &[],
                });
            }
        }
        let mut enc = PushEncoder::with_buffer(Vec::with_capacity(
            self.line_bytes + self.entries * 16 + 256,
        ));
        for (labels, entries) in &streams {
            enc.push_stream(labels, entries);
        }
        enc.finish()
    }
}

/// Runs one tenant's batcher until its chunk queue closes, then flushes the last batch.
/// `wake` tells the tailer that the queue has room again.
pub async fn run_batcher(
    mut rx: mpsc::Receiver<Chunk>,
    out: mpsc::Sender<Batch>,
    batch_bytes: usize,
    batch_wait: Duration,
    wake: std_mpsc::SyncSender<()>,
) {
    let mut batch = Batch::default();
    loop {
        let deadline = batch.started.map(|s| s + batch_wait);
        tokio::select! {
            c = rx.recv() => {
                let Some(c) = c else { break };
                let _ = wake.try_send(());
                if !batch.is_empty() && batch.line_bytes + c.line_bytes > batch_bytes
                    && out.send(std::mem::take(&mut batch)).await.is_err() {
                    return;
                }
                batch.push(c);
                if batch.line_bytes >= batch_bytes && out.send(std::mem::take(&mut batch)).await.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                if out.send(std::mem::take(&mut batch)).await.is_err() {
                    return;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = out.send(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chunk::{Entry, FileMeta, Stream};
    use loki_wire::proto::PushRequest;
    use prost::Message;

    fn chunk(id: u64, labels: &str, lines: &[&str], offset: u64) -> Chunk {
        let meta = Arc::new(FileMeta {
            id,
            path: format!("/f{id}"),
            tenant: Arc::from("t"),
            labels: [
                Arc::from(labels),
                Arc::from("{x=\"err\"}"),
                Arc::from("{x=\"plain\"}"),
            ],
        });
        let mut data = Vec::new();
        let mut entries = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let start = data.len() as u32;
            data.extend_from_slice(l.as_bytes());
            entries.push(Entry {
                ts_ns: i as i64 + 1,
                start,
                end: data.len() as u32,
                stream: Stream::Stdout,
            });
        }
        Chunk {
            file: meta,
            line_bytes: data.len(),
            data,
            entries,
            commit_offset: offset,
        }
    }

    #[test]
    fn equal_labels_from_two_files_become_one_stream_in_order() {
        let mut b = Batch::default();
        b.push(chunk(1, "{a=\"1\"}", &["x", "y"], 4));
        b.push(chunk(2, "{a=\"1\"}", &["z"], 2));
        b.push(chunk(1, "{a=\"1\"}", &["w"], 6));
        let req = PushRequest::decode(b.encode().as_slice()).expect("decode");
        assert_eq!(req.streams.len(), 1);
        let lines: Vec<_> = req.streams[0]
            .entries
            .iter()
            .map(|e| e.line.to_vec())
            .collect();
        assert_eq!(
            lines,
            vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec(), b"w".to_vec()]
        );
        assert_eq!(b.commits(), vec![(1, 6), (2, 2)]);
    }

    #[tokio::test(start_paused = true)]
    async fn batch_is_cut_by_size_and_by_age() {
        let (tx, rx) = mpsc::channel(8);
        let (btx, mut brx) = mpsc::channel(8);
        let (wtx, _wrx) = std_mpsc::sync_channel(1);
        tokio::spawn(run_batcher(rx, btx, 4, Duration::from_secs(1), wtx));
        tx.send(chunk(1, "{a=\"1\"}", &["ab", "cd"], 5))
            .await
            .expect("send");
        let b = brx.recv().await.expect("size-cut batch");
        assert_eq!(b.entries, 2);
        tx.send(chunk(1, "{a=\"1\"}", &["e"], 7))
            .await
            .expect("send");
        let before = Instant::now();
        let b = brx.recv().await.expect("age-cut batch");
        assert_eq!(b.entries, 1);
        assert!(before.elapsed() >= Duration::from_secs(1));
    }
}
