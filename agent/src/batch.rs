//! Batching per tenant: chunks accumulate until the next one would exceed `batch_bytes` (line
//! bytes plus structured metadata bytes, Alloy's measure) or the oldest is `batch_wait` old; a
//! batch then goes to the sender queue.
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
    /// Sum of the chunks' [`Chunk::line_bytes`] (lines plus structured metadata).
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
    /// merged into one stream, keeping file order within each stream; structured metadata
    /// goes out in name order (Alloy appends it in Go map order, which is random).
    pub fn encode(&self) -> Vec<u8> {
        // `EntryRef` borrows `(&str, &str)` pairs: build them first, only for chunks that
        // carry metadata (none of the tailer's do).
        let pairs: Vec<Vec<Vec<(&str, &str)>>> = self
            .chunks
            .iter()
            .map(|c| {
                c.metadata
                    .iter()
                    .map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                    .collect()
            })
            .collect();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut streams: Vec<(&str, Vec<EntryRef<'_>>)> = Vec::new();
        for (c, pairs) in self.chunks.iter().zip(&pairs) {
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
                let structured_metadata = e
                    .metadata
                    .checked_sub(1)
                    .and_then(|m| pairs.get(m as usize))
                    .map_or(&[][..], Vec::as_slice);
                streams[i].1.push(EntryRef {
                    ts_ns: e.ts_ns,
                    line: c.line(e),
                    structured_metadata,
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
/// `wake` tells the tailer that the queue, full before, has room again.
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
                // The tailer parks a chunk only when this queue is full, so only a receive
                // from a full queue has a parked chunk to let in. Waking it for every chunk
                // cost an empty pass and two context switches per chunk at low rates.
                if rx.len() + 1 >= rx.max_capacity() {
                    let _ = wake.try_send(());
                }
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
                metadata: crate::chunk::NO_METADATA,
            });
        }
        Chunk {
            file: meta,
            line_bytes: data.len(),
            data,
            entries,
            commit_offset: offset,
            metadata: Vec::new(),
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

    /// `chunk` whose entries carry the given metadata (by position; `None` = none).
    fn chunk_with_metadata(lines: &[&str], metadata: &[Option<&[(&str, &str)]>]) -> Chunk {
        let mut c = chunk(1, "{a=\"1\"}", lines, 1);
        c.file = Arc::new(FileMeta {
            id: 1,
            path: "/f".into(),
            tenant: Arc::from("t"),
            labels: [
                Arc::from("{a=\"1\"}"),
                Arc::from("{a=\"1\"}"),
                Arc::from("{a=\"1\"}"),
            ],
        });
        for (i, m) in metadata.iter().enumerate() {
            if let Some(m) = m {
                let m: crate::chunk::Metadata = m
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                c.line_bytes += crate::chunk::metadata_bytes(&m);
                c.entries[i].metadata = c.add_metadata(m);
            }
        }
        c
    }

    #[test]
    fn structured_metadata_is_encoded_per_entry_and_counted_in_the_size() {
        let mut b = Batch::default();
        b.push(chunk_with_metadata(
            &["x", "y", "z"],
            &[
                Some(&[("lvl", "info"), ("trace", "t1")]),
                None,
                Some(&[("lvl", "warn")]),
            ],
        ));
        // 3 line bytes + (5+6 + 7+4) + (5+6): each pair counts as its encoded LabelAdapter
        // (key, length and bytes of the name, the same for the value).
        assert_eq!(b.line_bytes, 3 + 22 + 11);
        let req = PushRequest::decode(b.encode().as_slice()).expect("decode");
        let got: Vec<(String, Vec<(String, String)>)> = req.streams[0]
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.line).into_owned(),
                    e.structured_metadata
                        .iter()
                        .map(|p| (p.name.clone(), p.value.clone()))
                        .collect(),
                )
            })
            .collect();
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            got,
            vec![
                ("x".into(), vec![pair("lvl", "info"), pair("trace", "t1")]),
                ("y".into(), vec![]),
                ("z".into(), vec![pair("lvl", "warn")]),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn structured_metadata_bytes_count_towards_the_batch_size_cut() {
        let (tx, rx) = mpsc::channel(8);
        let (btx, mut brx) = mpsc::channel(8);
        let (wtx, _wrx) = std_mpsc::sync_channel(1);
        // 2 line bytes + 11 metadata bytes each: the second chunk would make 26 > 20.
        tokio::spawn(run_batcher(rx, btx, 20, Duration::from_secs(60), wtx));
        for _ in 0..2 {
            tx.send(chunk_with_metadata(&["ab"], &[Some(&[("lvl", "info")])]))
                .await
                .expect("send");
        }
        let b = brx.recv().await.expect("size-cut batch");
        assert_eq!((b.entries, b.line_bytes), (1, 13));
    }

    /// The tailer is woken only when it may have parked a chunk (the queue was full): a
    /// wake-up per chunk made every small write cost two context switches and a pass.
    #[tokio::test(start_paused = true)]
    async fn the_tailer_is_woken_only_by_a_receive_from_a_full_queue() {
        let (tx, rx) = mpsc::channel(2);
        let (btx, mut brx) = mpsc::channel(8);
        let (wtx, wrx) = std_mpsc::sync_channel(1);
        tokio::spawn(run_batcher(rx, btx, 1 << 20, Duration::from_secs(1), wtx));
        tx.send(chunk(1, "{a=\"1\"}", &["x"], 2))
            .await
            .expect("send");
        assert_eq!(brx.recv().await.expect("age-cut batch").entries, 1);
        assert!(wrx.try_recv().is_err(), "no wake-up for a queue with room");
        // Fill the queue before the batcher runs again: its first receive frees a slot.
        tx.try_send(chunk(1, "{a=\"1\"}", &["y"], 4)).expect("room");
        tx.try_send(chunk(1, "{a=\"1\"}", &["z"], 6)).expect("room");
        assert!(tx.try_send(chunk(1, "{a=\"1\"}", &["w"], 8)).is_err());
        assert_eq!(brx.recv().await.expect("age-cut batch").entries, 2);
        assert!(
            wrx.try_recv().is_ok(),
            "a full queue got room: the tailer is woken"
        );
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
