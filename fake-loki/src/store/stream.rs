//! One stream's entries, stored compactly: lines live in a chunked byte arena and each
//! entry costs a fixed 24-byte record, kept sorted by timestamp (ties in arrival order).
//!
//! Loki's model of a stream is a set of `(timestamp, line, structured metadata)`: an
//! exact repeat is dropped, the same timestamp with another line is kept.

use std::collections::HashMap;

use loki_wire::LabelSet;

/// Arena chunk size: large enough to amortise allocation, small enough to waste little.
const CHUNK_BYTES: usize = 1 << 20;
const NO_METADATA: u32 = u32::MAX;

/// Structured metadata of one entry, as (name, value) pairs in arrival order.
pub type Metadata = Vec<(String, String)>;

#[derive(Debug, Clone, Copy)]
struct Slot {
    ts: i64,
    chunk: u32,
    offset: u32,
    len: u32,
    metadata: u32,
}

/// A borrowed view of one stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub ts: i64,
    pub line: &'a str,
    pub metadata: &'a [(String, String)],
}

/// One stream: its labels and its entries.
#[derive(Debug)]
pub struct Stream {
    pub labels: LabelSet,
    /// Canonical label string, computed once.
    pub labels_string: String,
    slots: Vec<Slot>,
    chunks: Vec<Vec<u8>>,
    metadata: Vec<Metadata>,
    metadata_index: HashMap<Metadata, u32>,
    bytes: u64,
}

impl Stream {
    pub fn new(labels: LabelSet) -> Self {
        let labels_string = labels.to_string();
        Stream {
            labels,
            labels_string,
            slots: Vec::new(),
            chunks: Vec::new(),
            metadata: Vec::new(),
            metadata_index: HashMap::new(),
            bytes: 0,
        }
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sum of stored line bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Oldest and newest timestamps.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        Some((self.slots.first()?.ts, self.slots.last()?.ts))
    }

    /// Inserts an entry unless an identical one (timestamp, line and metadata) is stored.
    /// Returns whether it was stored.
    pub fn insert(&mut self, ts: i64, line: &str, metadata: &[(String, String)]) -> bool {
        // Fast path: in-order appends (the common case) only look at the tail.
        let at = match self.slots.last() {
            Some(last) if last.ts < ts => self.slots.len(),
            None => 0,
            _ => self.slots.partition_point(|s| s.ts <= ts),
        };
        let mut i = at;
        while i > 0 && self.slots[i - 1].ts == ts {
            i -= 1;
            let slot = self.slots[i];
            if self.line_of(&slot) == line && self.metadata_of(&slot) == metadata {
                return false;
            }
        }
        let slot = Slot {
            ts,
            metadata: self.intern_metadata(metadata),
            ..self.store_line(line.as_bytes())
        };
        self.slots.insert(at, slot);
        self.bytes += line.len() as u64;
        true
    }

    /// Entries with `start <= ts < end`, oldest first.
    pub fn range(
        &self,
        start: i64,
        end: i64,
    ) -> impl DoubleEndedIterator<Item = EntryRef<'_>> + ExactSizeIterator + '_ {
        let lo = self.slots.partition_point(|s| s.ts < start);
        let hi = self.slots.partition_point(|s| s.ts < end).max(lo);
        self.slots[lo..hi].iter().map(move |s| self.entry(s))
    }

    /// All entries, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = EntryRef<'_>> + ExactSizeIterator + '_ {
        self.slots.iter().map(move |s| self.entry(s))
    }

    /// Approximate heap bytes held, for the memory-per-entry measurement.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.chunks.iter().map(Vec::capacity).sum::<usize>()
            + self
                .metadata
                .iter()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| k.capacity() + v.capacity() + 48)
                        .sum::<usize>()
                })
                .sum::<usize>()
                * 2
    }

    fn entry(&self, s: &Slot) -> EntryRef<'_> {
        EntryRef {
            ts: s.ts,
            line: self.line_of(s),
            metadata: self.metadata_of(s),
        }
    }

    fn line_of(&self, s: &Slot) -> &str {
        let chunk = &self.chunks[s.chunk as usize];
        let bytes = &chunk[s.offset as usize..(s.offset + s.len) as usize];
        // Only whole `&str`s are ever copied in, so every slot covers valid UTF-8.
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    fn metadata_of(&self, s: &Slot) -> &[(String, String)] {
        if s.metadata == NO_METADATA {
            &[]
        } else {
            &self.metadata[s.metadata as usize]
        }
    }

    fn intern_metadata(&mut self, metadata: &[(String, String)]) -> u32 {
        if metadata.is_empty() {
            return NO_METADATA;
        }
        if let Some(&i) = self.metadata_index.get(metadata) {
            return i;
        }
        let i = self.metadata.len() as u32;
        self.metadata.push(metadata.to_vec());
        self.metadata_index.insert(metadata.to_vec(), i);
        i
    }

    fn store_line(&mut self, line: &[u8]) -> Slot {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= line.len());
        if !fits {
            self.chunks
                .push(Vec::with_capacity(CHUNK_BYTES.max(line.len())));
        }
        let chunk_index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[chunk_index];
        let offset = chunk.len();
        chunk.extend_from_slice(line);
        Slot {
            ts: 0,
            chunk: chunk_index as u32,
            offset: offset as u32,
            len: line.len() as u32,
            metadata: NO_METADATA,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream() -> Stream {
        Stream::new(LabelSet::from_pairs([("a", "b")]))
    }

    #[test]
    fn exact_duplicates_are_dropped_other_lines_at_same_ts_kept() {
        let mut s = stream();
        assert!(s.insert(5, "x", &[]));
        assert!(!s.insert(5, "x", &[]));
        assert!(s.insert(5, "y", &[]));
        assert!(s.insert(5, "x", &[("k".into(), "v".into())]));
        assert!(s.insert(3, "early", &[]));
        assert!(!s.insert(5, "y", &[]));
        let got: Vec<(i64, &str)> = s.iter().map(|e| (e.ts, e.line)).collect();
        assert_eq!(got, [(3, "early"), (5, "x"), (5, "y"), (5, "x")]);
    }

    #[test]
    fn range_is_start_inclusive_end_exclusive() {
        let mut s = stream();
        for ts in 0..10 {
            s.insert(ts, "l", &[]);
        }
        let got: Vec<i64> = s.range(3, 6).map(|e| e.ts).collect();
        assert_eq!(got, [3, 4, 5]);
        assert_eq!(s.range(6, 3).count(), 0);
    }

    proptest! {
        #[test]
        fn stores_the_set_of_distinct_entries_in_time_order(
            entries in proptest::collection::vec((0i64..20, "[ab]{0,2}"), 0..60)
        ) {
            let mut s = stream();
            let mut model: Vec<(i64, String)> = Vec::new();
            for (ts, line) in &entries {
                let new = !model.iter().any(|(t, l)| t == ts && l == line);
                prop_assert_eq!(s.insert(*ts, line, &[]), new);
                if new {
                    model.push((*ts, line.clone()));
                }
            }
            model.sort_by_key(|(t, _)| *t); // stable: ties stay in arrival order
            let got: Vec<(i64, String)> = s.iter().map(|e| (e.ts, e.line.to_string())).collect();
            prop_assert_eq!(got, model);
        }
    }
}
