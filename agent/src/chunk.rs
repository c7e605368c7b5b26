//! The unit handed from the tailer to the batcher: many parsed entries of one file in one
//! buffer, plus the file offset that becomes safe to commit once they are acknowledged.
//!
//! Entries are ranges into `data`, so a chunk costs one allocation however many lines it holds.
//! Structured metadata (set by Alloy pipelines) lives in a side table that entries index into;
//! the tailer's chunks leave it empty, so the common path pays nothing for it.

use std::sync::Arc;

/// The stream an entry came from; selects one of a file's three label strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
    /// Plain lines and unparsable records: no `stream` label.
    Unknown = 2,
}

/// One log entry: a timestamp and a byte range of the chunk's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub ts_ns: i64,
    pub start: u32,
    pub end: u32,
    pub stream: Stream,
    /// [`NO_METADATA`], or `n`: the entry's structured metadata is `Chunk::metadata[n - 1]`.
    /// A `u32` fits in the padding after `stream`, so entries stay 24 bytes.
    pub metadata: u32,
}

/// [`Entry::metadata`] of an entry without structured metadata.
pub const NO_METADATA: u32 = 0;

/// Structured metadata of one entry: `(name, value)` pairs in name order.
pub type Metadata = Vec<(String, String)>;

/// What the pipeline knows about a tailed file; shared by all its chunks.
#[derive(Debug)]
pub struct FileMeta {
    /// Process-local id, the key of the positions store.
    pub id: u64,
    /// Path when the file was opened (for logs and metrics).
    pub path: String,
    /// Tenant for `X-Scope-OrgID`.
    pub tenant: Arc<str>,
    /// Canonical label strings indexed by [`Stream`].
    pub labels: [Arc<str>; 3],
}

/// Parsed entries of one file, in file order.
#[derive(Debug)]
pub struct Chunk {
    pub file: Arc<FileMeta>,
    pub data: Vec<u8>,
    pub entries: Vec<Entry>,
    /// Offset up to which the file is fully represented by this and earlier chunks.
    pub commit_offset: u64,
    /// Alloy's batch size measure: the sum of entry line lengths plus the encoded size of
    /// their structured metadata pairs (see [`metadata_bytes`]).
    pub line_bytes: usize,
    /// Structured metadata sets, indexed by [`Entry::metadata`]; empty for tailed files.
    pub metadata: Vec<Metadata>,
}

impl Chunk {
    /// The line bytes of an entry.
    pub fn line(&self, e: &Entry) -> &[u8] {
        &self.data[e.start as usize..e.end as usize]
    }

    /// The structured metadata of an entry (empty for most).
    pub fn metadata(&self, e: &Entry) -> &[(String, String)] {
        match e.metadata.checked_sub(1) {
            Some(i) => self.metadata.get(i as usize).map_or(&[], Vec::as_slice),
            None => &[],
        }
    }

    /// Stores a structured metadata set and returns the [`Entry::metadata`] value naming it.
    /// An empty set costs nothing and yields [`NO_METADATA`].
    pub fn add_metadata(&mut self, m: Metadata) -> u32 {
        if m.is_empty() {
            return NO_METADATA;
        }
        self.metadata.push(m);
        // More than u32::MAX sets in one chunk cannot happen: entries address `data` with u32.
        u32::try_from(self.metadata.len()).unwrap_or(u32::MAX)
    }

    /// What one entry adds to the batch size: line length plus structured metadata bytes.
    pub fn entry_bytes(&self, e: &Entry) -> usize {
        (e.end - e.start) as usize + metadata_bytes(self.metadata(e))
    }
}

/// Bytes structured metadata adds to Alloy's batch size: per pair, the size of its encoded
/// protobuf `LabelAdapter` (promtail's and Alloy's `entrySize` sum `label.Size()` this way).
pub fn metadata_bytes(m: &[(String, String)]) -> usize {
    m.iter()
        .map(|(name, value)| field_len(name.len()) + field_len(value.len()))
        .sum()
}

/// A protobuf string field: key byte, varint length, payload; absent when empty (proto3).
fn field_len(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let mut varint = 1;
    let mut v = len >> 7;
    while v > 0 {
        varint += 1;
        v >>= 7;
    }
    1 + varint + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_stays_24_bytes_with_the_metadata_index() {
        // Before the index existed the entry was 24 bytes too (i64 + 2 × u32 + u8, padded).
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn metadata_bytes_are_encoded_label_adapter_sizes() {
        let long = "v".repeat(128);
        let cases: Vec<(Vec<(&str, &str)>, usize)> = vec![
            (vec![], 0),
            // 1 key + 1 length + 3 name, 1 + 1 + 2 value.
            (vec![("lvl", "ok")], 9),
            // An empty value is not encoded at all (proto3).
            (vec![("k", "")], 3),
            (vec![("a", "b"), ("c", "d")], 12),
            // A 128-byte value needs a two-byte length.
            (vec![("k", long.as_str())], 3 + 1 + 2 + 128),
        ];
        for (pairs, want) in cases {
            let m: Metadata = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(metadata_bytes(&m), want, "{pairs:?}");
        }
    }

    #[test]
    fn entries_index_their_metadata_and_others_have_none() {
        let mut c = Chunk {
            file: Arc::new(FileMeta {
                id: 1,
                path: "/f".into(),
                tenant: Arc::from("t"),
                labels: [Arc::from("{}"), Arc::from("{}"), Arc::from("{}")],
            }),
            data: b"abcd".to_vec(),
            entries: Vec::new(),
            commit_offset: 0,
            line_bytes: 0,
            metadata: Vec::new(),
        };
        assert_eq!(c.add_metadata(Vec::new()), NO_METADATA);
        let i = c.add_metadata(vec![("k".into(), "v".into())]);
        let with = Entry {
            ts_ns: 1,
            start: 0,
            end: 2,
            stream: Stream::Unknown,
            metadata: i,
        };
        let without = Entry {
            metadata: NO_METADATA,
            start: 2,
            end: 4,
            ..with
        };
        assert_eq!(c.metadata(&with), &[("k".to_string(), "v".to_string())]);
        assert!(c.metadata(&without).is_empty());
        assert_eq!(c.entry_bytes(&with), 2 + 6);
        assert_eq!(c.entry_bytes(&without), 2);
    }
}
