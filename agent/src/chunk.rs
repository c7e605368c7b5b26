//! The unit handed from the tailer to the batcher: many parsed entries of one file in one
//! buffer, plus the file offset that becomes safe to commit once they are acknowledged.
//!
//! Entries are ranges into `data`, so a chunk costs one allocation however many lines it holds.

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
}

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
    /// Sum of entry line lengths (Alloy's batch size measure).
    pub line_bytes: usize,
}

impl Chunk {
    /// The line bytes of an entry.
    pub fn line(&self, e: &Entry) -> &[u8] {
        &self.data[e.start as usize..e.end as usize]
    }
}
