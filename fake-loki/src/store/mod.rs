//! Per-tenant stream storage: streams by label string, with the per-tenant statistics
//! the stats endpoint and completeness checks read.

mod stream;

use std::collections::HashMap;

use loki_wire::LabelSet;

pub use stream::{Block, EntryRef, Metadata, Range, Stream, StreamView, BLOCK_TARGET_BYTES};

/// One tenant's streams.
#[derive(Debug, Default)]
pub struct TenantData {
    streams: Vec<Stream>,
    index: HashMap<String, usize>,
    /// Newest timestamp seen per stream (Loki's out-of-order window is relative to it).
    max_ts: Vec<i64>,
    /// Wall-clock time each stream last stored an entry, ns since the epoch.
    last_push: Vec<i64>,
    pub entries: u64,
    pub bytes: u64,
    pub pushes: u64,
    /// Entries and line bytes deleted by retention so far.
    pub expired_entries: u64,
    pub expired_bytes: u64,
    /// Wall-clock time of the last accepted push, ns since the epoch.
    pub last_push_ns: Option<i64>,
}

impl TenantData {
    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// The index of the stream with this canonical label string.
    pub fn find(&self, labels_string: &str) -> Option<usize> {
        self.index.get(labels_string).copied()
    }

    /// Creates a stream (the caller checked it does not exist) and returns its index.
    pub fn create(&mut self, labels: LabelSet) -> usize {
        let s = Stream::new(labels);
        let i = self.streams.len();
        self.index.insert(s.labels_string.clone(), i);
        self.streams.push(s);
        self.max_ts.push(i64::MIN);
        self.last_push.push(i64::MIN);
        i
    }

    /// Records that stream `i` stored entries at wall-clock `now_ns`.
    pub fn touch(&mut self, i: usize, now_ns: i64) {
        self.last_push[i] = now_ns;
    }

    /// When stream `i` last stored entries (None before its first).
    pub fn last_push(&self, i: usize) -> Option<i64> {
        Some(self.last_push[i]).filter(|t| *t != i64::MIN)
    }

    /// The stream's newest timestamp so far.
    pub fn max_ts(&self, i: usize) -> i64 {
        self.max_ts[i]
    }

    /// Inserts an entry into stream `i`; returns whether it was new (not a duplicate).
    pub fn insert(&mut self, i: usize, ts: i64, line: &str, metadata: &[(String, String)]) -> bool {
        let stored = self.streams[i].insert(ts, line, metadata);
        if ts > self.max_ts[i] {
            self.max_ts[i] = ts;
        }
        if stored {
            self.entries += 1;
            self.bytes += line.len() as u64;
        }
        stored
    }

    /// Deletes the entries of each stream older than `cutoff_for(labels)` (entries
    /// with `ts < cutoff` go; `i64::MIN` keeps everything) and returns what went.
    /// An emptied stream keeps its label set (a few hundred bytes), so its rate bucket
    /// and out-of-order window stay valid; it is no longer listed or counted.
    /// `on_stream` hears each stream's label string, entries and bytes deleted.
    pub fn expire(
        &mut self,
        cutoff_for: impl Fn(&LabelSet) -> i64,
        mut on_stream: impl FnMut(&str, u64, u64),
    ) -> Expired {
        let mut out = Expired::default();
        for s in &mut self.streams {
            let cutoff = cutoff_for(&s.labels);
            if cutoff == i64::MIN {
                continue;
            }
            let had = !s.is_empty();
            let (n, bytes) = s.expire_before(cutoff);
            if n > 0 {
                on_stream(&s.labels_string, n as u64, bytes);
            }
            out.entries += n as u64;
            out.bytes += bytes;
            if had && s.is_empty() {
                out.streams_emptied += 1;
            }
        }
        self.entries -= out.entries;
        self.bytes -= out.bytes;
        self.expired_entries += out.entries;
        self.expired_bytes += out.bytes;
        out
    }

    /// Streams holding at least one entry.
    pub fn live_streams(&self) -> usize {
        self.streams.iter().filter(|s| !s.is_empty()).count()
    }

    /// Oldest and newest entry timestamps over all streams.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        self.streams
            .iter()
            .filter_map(Stream::time_bounds)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
    }

    /// Approximate heap bytes held by this tenant's entries.
    pub fn heap_bytes(&self) -> usize {
        self.streams.iter().map(Stream::heap_bytes).sum()
    }
}

/// What a retention sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub entries: u64,
    /// Line bytes.
    pub bytes: u64,
    /// Streams left without entries.
    pub streams_emptied: u64,
}

/// All tenants.
#[derive(Debug, Default)]
pub struct Store {
    pub tenants: HashMap<String, TenantData>,
}

impl Store {
    pub fn tenant_mut(&mut self, tenant: &str) -> &mut TenantData {
        if !self.tenants.contains_key(tenant) {
            self.tenants
                .insert(tenant.to_string(), TenantData::default());
        }
        // Inserted just above when missing.
        self.tenants.get_mut(tenant).expect("tenant present")
    }

    pub fn tenant(&self, tenant: &str) -> Option<&TenantData> {
        self.tenants.get(tenant)
    }
}
