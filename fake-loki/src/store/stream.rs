//! One stream's entries: a mutable head block and sealed, immutable blocks behind `Arc`s.
//!
//! Each block keeps its lines in one byte buffer and a fixed 24-byte record per entry,
//! sorted by timestamp (ties in arrival order). The head is cut into a sealed block at
//! [`BLOCK_TARGET_BYTES`] of lines. A query takes a [`StreamView`] (cloned `Arc`s: no
//! copy of entries) under the store lock and scans it after the lock is released; a
//! push that finds the head shared with a view copies it first (copy on write), so the
//! view never changes under the query.
//!
//! Loki's model of a stream is a set of `(timestamp, line, structured metadata)`: an
//! exact repeat is dropped, the same timestamp with another line is kept. Blocks may
//! overlap in time (out-of-order entries go to the head); reads merge them.

use std::collections::HashMap;
use std::sync::Arc;

use loki_wire::LabelSet;

/// Lines per block before the head is cut (Loki's default `chunk_block_size`).
pub const BLOCK_TARGET_BYTES: usize = 256 * 1024;
const NO_METADATA: u32 = u32::MAX;

/// Structured metadata of one entry, as (name, value) pairs in arrival order.
pub type Metadata = Vec<(String, String)>;

#[derive(Debug, Clone, Copy)]
struct Slot {
    ts: i64,
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

/// Entries in time order with their lines in one buffer.
#[derive(Debug, Clone, Default)]
pub struct Block {
    slots: Vec<Slot>,
    lines: Vec<u8>,
    metadata: Vec<Metadata>,
    /// Interning table of the head; emptied when the block is sealed.
    metadata_index: HashMap<Metadata, u32>,
}

impl Block {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Oldest and newest timestamps.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        Some((self.slots.first()?.ts, self.slots.last()?.ts))
    }

    /// Bytes of lines held.
    pub fn line_bytes(&self) -> usize {
        self.lines.len()
    }

    fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.lines.capacity()
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

    /// Index range of entries with `start <= ts < end`.
    fn bounds(&self, start: i64, end: i64) -> (usize, usize) {
        let lo = self.slots.partition_point(|s| s.ts < start);
        let hi = self.slots.partition_point(|s| s.ts < end).max(lo);
        (lo, hi)
    }

    /// Whether an identical entry is stored.
    fn contains(&self, ts: i64, line: &str, metadata: &[(String, String)]) -> bool {
        let (lo, hi) = self.bounds(ts, ts.saturating_add(1));
        self.slots[lo..hi]
            .iter()
            .any(|s| self.line_of(s) == line && self.metadata_of(s) == metadata)
    }

    /// Inserts after any entries with the same timestamp.
    fn insert(&mut self, ts: i64, line: &str, metadata: &[(String, String)]) {
        let at = match self.slots.last() {
            Some(last) if last.ts <= ts => self.slots.len(),
            None => 0,
            _ => self.slots.partition_point(|s| s.ts <= ts),
        };
        let offset = self.lines.len() as u32;
        self.lines.extend_from_slice(line.as_bytes());
        let slot = Slot {
            ts,
            offset,
            len: line.len() as u32,
            metadata: self.intern_metadata(metadata),
        };
        self.slots.insert(at, slot);
    }

    /// A copy holding only the entries with `ts >= cutoff` (sealed if `sealed`).
    fn without_older_than(&self, cutoff: i64, sealed: bool) -> Block {
        let mut out = Block::default();
        let lo = self.slots.partition_point(|s| s.ts < cutoff);
        for i in lo..self.slots.len() {
            let e = self.entry(i);
            out.insert(e.ts, e.line, e.metadata);
        }
        if sealed {
            out.seal();
        }
        out
    }

    /// Lines and line bytes of entries with `ts < cutoff`.
    fn count_older_than(&self, cutoff: i64) -> (usize, u64) {
        let lo = self.slots.partition_point(|s| s.ts < cutoff);
        let bytes = self.slots[..lo].iter().map(|s| s.len as u64).sum();
        (lo, bytes)
    }

    fn seal(&mut self) {
        self.metadata_index = HashMap::new();
        self.slots.shrink_to_fit();
        self.lines.shrink_to_fit();
        self.metadata.shrink_to_fit();
    }

    fn entry(&self, i: usize) -> EntryRef<'_> {
        let s = &self.slots[i];
        EntryRef {
            ts: s.ts,
            line: self.line_of(s),
            metadata: self.metadata_of(s),
        }
    }

    fn line_of(&self, s: &Slot) -> &str {
        let bytes = &self.lines[s.offset as usize..(s.offset + s.len) as usize];
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
}

/// One stream: its labels and its entries.
#[derive(Debug)]
pub struct Stream {
    pub labels: LabelSet,
    /// Canonical label string, computed once.
    pub labels_string: String,
    sealed: Vec<Arc<Block>>,
    head: Arc<Block>,
    len: usize,
    bytes: u64,
    min_ts: i64,
    max_ts: i64,
    /// Where the head is cut ([`BLOCK_TARGET_BYTES`]; tests use small blocks).
    block_bytes: usize,
}

impl Stream {
    pub fn new(labels: LabelSet) -> Self {
        Stream::with_block_bytes(labels, BLOCK_TARGET_BYTES)
    }

    /// A stream whose head is cut at `block_bytes` of lines.
    pub fn with_block_bytes(labels: LabelSet, block_bytes: usize) -> Self {
        let labels_string = labels.to_string();
        Stream {
            labels,
            labels_string,
            sealed: Vec::new(),
            head: Arc::new(Block::default()),
            len: 0,
            bytes: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            block_bytes,
        }
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of stored line bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Sealed blocks and the head.
    pub fn block_count(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Oldest and newest timestamps.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        (self.len > 0).then_some((self.min_ts, self.max_ts))
    }

    /// Inserts an entry unless an identical one (timestamp, line and metadata) is stored.
    /// Returns whether it was stored.
    pub fn insert(&mut self, ts: i64, line: &str, metadata: &[(String, String)]) -> bool {
        // In-order appends (the common case) cannot repeat a stored entry.
        if ts <= self.max_ts
            && self.blocks().any(|b| {
                b.time_bounds().is_some_and(|(lo, hi)| lo <= ts && ts <= hi)
                    && b.contains(ts, line, metadata)
            })
        {
            return false;
        }
        let head = Arc::make_mut(&mut self.head);
        head.insert(ts, line, metadata);
        self.len += 1;
        self.bytes += line.len() as u64;
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        if head.line_bytes() >= self.block_bytes {
            let mut full = std::mem::take(&mut self.head);
            Arc::make_mut(&mut full).seal();
            self.sealed.push(full);
        }
        true
    }

    /// Deletes every entry with `ts < cutoff`: sealed blocks that hold only such
    /// entries are dropped whole, a block that straddles `cutoff` is rebuilt without
    /// them (so its memory is handed back too). Returns the entries and line bytes
    /// removed. Views taken before keep the old blocks alive until they are dropped.
    pub fn expire_before(&mut self, cutoff: i64) -> (usize, u64) {
        if self.len == 0 || self.min_ts >= cutoff {
            return (0, 0);
        }
        let (mut n, mut bytes) = (0usize, 0u64);
        let mut kept = Vec::with_capacity(self.sealed.len());
        for b in self.sealed.drain(..) {
            let (old, old_bytes) = b.count_older_than(cutoff);
            n += old;
            bytes += old_bytes;
            if old == b.len() {
                continue;
            }
            kept.push(if old == 0 {
                b
            } else {
                Arc::new(b.without_older_than(cutoff, true))
            });
        }
        self.sealed = kept;
        let (old, old_bytes) = self.head.count_older_than(cutoff);
        if old > 0 {
            n += old;
            bytes += old_bytes;
            self.head = Arc::new(self.head.without_older_than(cutoff, false));
        }
        self.len -= n;
        self.bytes -= bytes;
        match self
            .blocks()
            .filter_map(Block::time_bounds)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        {
            Some((lo, hi)) => {
                self.min_ts = lo;
                self.max_ts = hi;
            }
            None => {
                self.min_ts = i64::MAX;
                self.max_ts = i64::MIN;
            }
        }
        (n, bytes)
    }

    /// A consistent, immutable view of the stream as it is now (no entries copied).
    pub fn view(&self) -> StreamView {
        let mut blocks = Vec::with_capacity(self.sealed.len() + 1);
        blocks.extend(self.sealed.iter().cloned());
        if !self.head.is_empty() {
            blocks.push(self.head.clone());
        }
        StreamView {
            labels: self.labels.clone(),
            blocks,
            floor: i64::MIN,
        }
    }

    /// Entries with `start <= ts < end`, oldest first.
    pub fn range(&self, start: i64, end: i64) -> Range<'_> {
        Range::new(self.blocks(), start, end)
    }

    /// All entries, oldest first.
    pub fn iter(&self) -> Range<'_> {
        Range::all(self.blocks())
    }

    /// Approximate heap bytes held, for the memory-per-entry measurement.
    pub fn heap_bytes(&self) -> usize {
        self.blocks().map(Block::heap_bytes).sum::<usize>()
            + self.sealed.capacity() * std::mem::size_of::<Arc<Block>>()
    }

    fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.sealed
            .iter()
            .map(|b| b.as_ref())
            .chain(std::iter::once(self.head.as_ref()))
    }
}

/// A stream's labels and blocks as they were when the view was taken, seen from a
/// floor: entries older than it (expired, or past the query lookback) do not exist
/// for the reader, whether or not the sweep has deleted them yet.
#[derive(Debug, Clone)]
pub struct StreamView {
    pub labels: LabelSet,
    blocks: Vec<Arc<Block>>,
    floor: i64,
}

impl StreamView {
    /// The same view without entries older than `floor` (ns).
    pub fn with_floor(mut self, floor: i64) -> StreamView {
        self.floor = self.floor.max(floor);
        self
    }

    /// Entries with `start <= ts < end`, oldest first.
    pub fn range(&self, start: i64, end: i64) -> Range<'_> {
        Range::new(
            self.blocks.iter().map(|b| b.as_ref()),
            start.max(self.floor),
            end,
        )
    }

    /// All entries, oldest first.
    pub fn iter(&self) -> Range<'_> {
        if self.floor == i64::MIN {
            return Range::all(self.blocks.iter().map(|b| b.as_ref()));
        }
        Range::of_parts(self.blocks.iter().map(|b| {
            let lo = b.slots.partition_point(|s| s.ts < self.floor);
            (b.as_ref(), lo, b.slots.len())
        }))
    }

    /// Whether any entry is visible.
    pub fn is_empty(&self) -> bool {
        self.blocks
            .iter()
            .all(|b| b.time_bounds().is_none_or(|(_, hi)| hi < self.floor))
    }

    /// Whether a block's time bounds (raised to the floor) overlap `[start, end)`: the
    /// granularity at which Loki's store answers label queries for flushed chunks.
    pub fn blocks_overlap(&self, start: i64, end: i64) -> bool {
        self.blocks.iter().any(|b| {
            b.time_bounds()
                .is_some_and(|(lo, hi)| hi >= self.floor && hi >= start && lo.max(self.floor) < end)
        })
    }
}

/// Entries of some blocks in time order (ties in arrival order), from either end.
pub struct Range<'a> {
    parts: Vec<(&'a Block, usize, usize)>,
    /// Set when blocks overlap in time: the entries merged up front.
    merged: Option<std::vec::IntoIter<EntryRef<'a>>>,
    front: usize,
    back: usize,
    len: usize,
}

impl<'a> Range<'a> {
    fn new(blocks: impl Iterator<Item = &'a Block>, start: i64, end: i64) -> Range<'a> {
        Range::of_parts(blocks.map(|b| {
            let (lo, hi) = b.bounds(start, end);
            (b, lo, hi)
        }))
    }

    fn all(blocks: impl Iterator<Item = &'a Block>) -> Range<'a> {
        Range::of_parts(blocks.map(|b| (b, 0, b.slots.len())))
    }

    fn of_parts(all: impl Iterator<Item = (&'a Block, usize, usize)>) -> Range<'a> {
        let parts: Vec<(&Block, usize, usize)> = all.filter(|(_, lo, hi)| lo < hi).collect();
        let len = parts.iter().map(|(_, lo, hi)| hi - lo).sum();
        // Blocks are in arrival order; in time order too unless entries came late.
        let ordered = parts.windows(2).all(|w| {
            let (a, _, ah) = w[0];
            let (b, bl, _) = w[1];
            a.slots[ah - 1].ts <= b.slots[bl].ts
        });
        let merged = (!ordered).then(|| merge(&parts).into_iter());
        let back = parts.len();
        Range {
            parts,
            merged,
            front: 0,
            back,
            len,
        }
    }
}

/// k-way merge by timestamp; ties go to the earlier block (it arrived first).
fn merge<'a>(parts: &[(&'a Block, usize, usize)]) -> Vec<EntryRef<'a>> {
    let mut out: Vec<(i64, usize, usize, EntryRef<'a>)> = Vec::new();
    for (bi, (b, lo, hi)) in parts.iter().enumerate() {
        for i in *lo..*hi {
            out.push((b.slots[i].ts, bi, i, b.entry(i)));
        }
    }
    out.sort_by_key(|(ts, bi, i, _)| (*ts, *bi, *i));
    out.into_iter().map(|(_, _, _, e)| e).collect()
}

impl<'a> Iterator for Range<'a> {
    type Item = EntryRef<'a>;

    fn next(&mut self) -> Option<EntryRef<'a>> {
        if let Some(m) = &mut self.merged {
            return m.next();
        }
        while self.front < self.back {
            let (b, lo, hi) = &mut self.parts[self.front];
            if *lo < *hi {
                let e = b.entry(*lo);
                *lo += 1;
                self.len -= 1;
                return Some(e);
            }
            self.front += 1;
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.merged {
            Some(m) => m.len(),
            None => self.len,
        };
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if let Some(m) = &mut self.merged {
            return m.next_back();
        }
        while self.back > self.front {
            let (b, lo, hi) = &mut self.parts[self.back - 1];
            if *lo < *hi {
                *hi -= 1;
                self.len -= 1;
                return Some(b.entry(*hi));
            }
            self.back -= 1;
        }
        None
    }
}

impl ExactSizeIterator for Range<'_> {}

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

    fn all<'a>(r: impl Iterator<Item = EntryRef<'a>>) -> Vec<(i64, String)> {
        r.map(|e| (e.ts, e.line.to_string())).collect()
    }

    #[test]
    fn a_view_does_not_change_when_the_stream_does() {
        let mut s = Stream::with_block_bytes(LabelSet::from_pairs([("a", "b")]), 4);
        s.insert(1, "ab", &[]);
        s.insert(2, "cd", &[]); // cuts the head
        s.insert(3, "e", &[]);
        let view = s.view();
        s.insert(4, "f", &[]);
        s.insert(0, "g", &[]);
        let seen: Vec<i64> = view.iter().map(|e| e.ts).collect();
        assert_eq!(seen, [1, 2, 3]);
        let now: Vec<i64> = s.iter().map(|e| e.ts).collect();
        assert_eq!(now, [0, 1, 2, 3, 4]);
        assert_eq!(s.block_count(), 2);
    }

    #[test]
    fn expiry_drops_whole_blocks_and_rebuilds_the_straddling_one() {
        let mut s = Stream::with_block_bytes(LabelSet::from_pairs([("a", "b")]), 4);
        for ts in 0..10 {
            s.insert(ts, "ab", &[]); // two entries per sealed block
        }
        s.insert(10, "c", &[]); // head
        assert_eq!(s.block_count(), 6);
        let before = s.view();
        assert_eq!(s.expire_before(5), (5, 10));
        // Blocks [0,1] and [2,3] dropped, [4,5] rebuilt as [5].
        assert_eq!(s.block_count(), 4);
        assert_eq!((s.len(), s.bytes()), (6, 11));
        assert_eq!(s.time_bounds(), Some((5, 10)));
        let got: Vec<i64> = s.iter().map(|e| e.ts).collect();
        assert_eq!(got, [5, 6, 7, 8, 9, 10]);
        // A view taken before the sweep is unchanged.
        assert_eq!(before.iter().count(), 11);
        assert_eq!(s.expire_before(100), (6, 11));
        assert!(s.is_empty());
        assert_eq!(s.time_bounds(), None);
        assert!(s.insert(3, "back", &[]));
        assert_eq!(s.time_bounds(), Some((3, 3)));
    }

    #[test]
    fn a_floor_hides_older_entries_from_every_read() {
        let mut s = Stream::with_block_bytes(LabelSet::from_pairs([("a", "b")]), 4);
        for ts in 0..6 {
            s.insert(ts, "ab", &[]);
        }
        let v = s.view().with_floor(3);
        assert_eq!(all(v.iter()), all(s.range(3, i64::MAX)));
        assert_eq!(v.range(0, 5).map(|e| e.ts).collect::<Vec<_>>(), [3, 4]);
        assert!(!v.is_empty());
        assert!(s.view().with_floor(6).is_empty());
        // Block [2,3] overlaps [0,3) by its bounds, but only 3 is visible: raised to 3.
        assert!(!v.blocks_overlap(0, 3));
        assert!(v.blocks_overlap(0, 4));
        assert!(s.view().blocks_overlap(1, 2)); // block [0,1] ends at 1
        assert!(!s.view().blocks_overlap(6, 9));
    }

    proptest! {
        #[test]
        fn expiry_and_floor_agree_with_a_filter(
            entries in proptest::collection::vec((0i64..40, "[ab]{0,3}"), 0..80),
            block_bytes in 1usize..12,
            cutoff in 0i64..42,
        ) {
            let mut s = Stream::with_block_bytes(LabelSet::from_pairs([("a", "b")]), block_bytes);
            for (ts, line) in &entries {
                s.insert(*ts, line, &[]);
            }
            let want: Vec<(i64, String)> = all(s.iter()).into_iter().filter(|(t, _)| *t >= cutoff).collect();
            prop_assert_eq!(all(s.view().with_floor(cutoff).iter()), want.clone());
            let (n, bytes) = s.expire_before(cutoff);
            prop_assert_eq!(all(s.iter()), want.clone());
            prop_assert_eq!(s.len(), want.len());
            prop_assert_eq!(s.bytes(), want.iter().map(|(_, l)| l.len() as u64).sum::<u64>());
            let total: usize = entries.len();
            prop_assert!(n <= total);
            prop_assert!(bytes <= entries.iter().map(|(_, l)| l.len() as u64).sum::<u64>());
            prop_assert_eq!(all(s.view().iter()), want);
        }

        #[test]
        fn blocks_read_back_like_one_sorted_set(
            entries in proptest::collection::vec((0i64..30, "[ab]{0,3}"), 0..80),
            block_bytes in 1usize..12,
            (start, end) in (0i64..32, 0i64..32),
        ) {
            let mut one = stream();
            let mut cut = Stream::with_block_bytes(LabelSet::from_pairs([("a", "b")]), block_bytes);
            for (ts, line) in &entries {
                prop_assert_eq!(cut.insert(*ts, line, &[]), one.insert(*ts, line, &[]));
            }
            prop_assert_eq!(all(cut.iter()), all(one.iter()));
            prop_assert_eq!(all(cut.view().iter()), all(one.iter()));
            let mut both = cut.range(start, end);
            let mut mixed = Vec::new();
            while let Some(e) = both.next() {
                mixed.push(e.ts);
                if let Some(b) = both.next_back() {
                    mixed.push(b.ts);
                }
            }
            prop_assert_eq!(mixed.len(), one.range(start, end).len());
            prop_assert_eq!(all(cut.range(start, end)), all(one.range(start, end)));
            let view = cut.view();
            let mut back = all(view.range(start, end).rev());
            back.reverse();
            prop_assert_eq!(back, all(one.range(start, end)));
            prop_assert_eq!(cut.range(start, end).len(), one.range(start, end).len());
        }

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
