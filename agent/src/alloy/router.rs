//! Running an Alloy config's routes inside the agent: a task per tenant queue that takes the
//! tailer's parsed chunks, runs every entry through its source's [`Route`]s, and sends the
//! results to per-tenant batchers (the tenant may now come from `stage.tenant`).
//!
//! Positions still advance only after acknowledgement. Every input chunk gets a sequence
//! number that travels with its entries ([`Entry::origin`]); the chunk's commit offset is
//! acknowledged once (a) no stage holds an entry of it or of an earlier chunk (multiline
//! buffers) and (b) every output chunk built from its entries has been pushed and dropped by
//! its sender. Commits are released in sequence order, so an entry merged into an earlier
//! held one is covered too. Entries dropped by a stage count as handled.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use loki_wire::LabelSet;
use tokio::sync::mpsc;

use super::pipeline::{Entry, Route};
use super::relabel::Labels;
use super::stages::TENANT_LABEL;
use crate::chunk::{Chunk, FileMeta, Stream};
use crate::metrics::Metrics;

/// Target label naming the source (index into the route table) of a file, added by
/// [`AlloyDiscovery`](super::targets::AlloyDiscovery) when a config has several sources.
pub const SOURCE_LABEL: &str = "__agent_source__";

/// Id of the output chunks' file meta: acknowledgements of it are ignored by the positions
/// store (the router acknowledges the real files itself).
pub const VIRTUAL_FILE_ID: u64 = u64::MAX;

/// How often held entries are checked for `max_wait_time` and acknowledgements collected.
const TICK: Duration = Duration::from_millis(50);

/// Creates the batcher+sender of an output tenant and returns its chunk queue.
pub type OutputFactory = Box<dyn FnMut(&Arc<str>) -> mpsc::Sender<Chunk> + Send>;

/// Records that a file is acknowledged up to an offset.
pub type AckFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Everything a router task needs.
pub struct RouterCtx {
    /// Tenant of the input queue (used when no `__tenant_id__` label is set).
    pub tenant: Arc<str>,
    /// Routes per source index; usually `[[route]]`.
    pub routes: Vec<Vec<Route>>,
    /// `loki.write` external labels, re-added when a stage dropped them.
    pub external_labels: BTreeMap<String, String>,
    /// Acknowledges `(file id, offset)` (the positions store in the agent).
    pub ack: AckFn,
    pub metrics: Arc<Metrics>,
    /// Makes the per-tenant output pipelines.
    pub outputs: OutputFactory,
    /// Tells the tailer the input queue has room.
    pub wake: std::sync::mpsc::SyncSender<()>,
    /// Set when the agent aborts its pipelines: output chunks dropped from then on were not
    /// delivered, so nothing may be acknowledged any more.
    pub aborting: Arc<AtomicBool>,
}

/// One input chunk whose commit waits for its outputs.
struct Pending {
    seq: u64,
    file: u64,
    commit: u64,
    /// File metas of output chunks carrying entries of this (or a later) chunk; the chunk's
    /// entries are delivered once only this copy of each is left.
    guards: Vec<Arc<FileMeta>>,
}

/// The router's state (separate from the task so it can be tested synchronously).
pub struct Router {
    ctx: RouterCtx,
    seq: u64,
    pending: VecDeque<Pending>,
    outputs: HashMap<Arc<str>, mpsc::Sender<Chunk>>,
    /// Parsed input labels per file, indexed by [`Stream`]; evicted once the tailer and every
    /// chunk let go of the file meta.
    labels: HashMap<u64, (Arc<FileMeta>, usize, [Labels; 3])>,
    dropped_reported: BTreeMap<String, u64>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn parse_labels(s: &str) -> Labels {
    LabelSet::parse(s)
        .map(|l| {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Output entries grouped into chunks by (tenant, label string), in arrival order.
#[derive(Default)]
struct Outgoing {
    groups: Vec<(Arc<str>, Arc<str>, Chunk, u64)>,
    index: HashMap<(Arc<str>, Arc<str>), usize>,
}

impl Router {
    pub fn new(ctx: RouterCtx) -> Self {
        Router {
            ctx,
            seq: 0,
            pending: VecDeque::new(),
            outputs: HashMap::new(),
            labels: HashMap::new(),
            dropped_reported: BTreeMap::new(),
        }
    }

    /// Runs one input chunk through its routes; returns the output chunks to send.
    fn process(&mut self, chunk: Chunk, now: i64) -> Vec<(Arc<str>, Chunk, u64)> {
        self.seq += 1;
        let seq = self.seq;
        self.pending.push_back(Pending {
            seq,
            file: chunk.file.id,
            commit: chunk.commit_offset,
            guards: Vec::new(),
        });
        let (source, _, parsed) = {
            let meta = &chunk.file;
            let entry = self.labels.entry(meta.id).or_insert_with(|| {
                let mut parsed = [
                    parse_labels(&meta.labels[0]),
                    parse_labels(&meta.labels[1]),
                    parse_labels(&meta.labels[2]),
                ];
                let source = parsed[2]
                    .get(SOURCE_LABEL)
                    .and_then(|s| s.parse::<usize>().ok())
                    .unwrap_or(0);
                for p in &mut parsed {
                    p.remove(SOURCE_LABEL);
                }
                (meta.clone(), source, parsed)
            });
            (entry.1, (), entry.2.clone())
        };
        let mut out = Outgoing::default();
        let n_routes = self.ctx.routes.get(source).map_or(0, Vec::len);
        for ce in &chunk.entries {
            let line = String::from_utf8_lossy(chunk.line(ce)).into_owned();
            let mut e = Entry::new(parsed[ce.stream as usize].clone(), ce.ts_ns, line);
            e.origin = seq;
            for r in 0..n_routes {
                let e = if r + 1 == n_routes {
                    std::mem::take(&mut e)
                } else {
                    e.clone()
                };
                let res = self.ctx.routes[source][r].process(e, now);
                self.collect(res, &chunk.file.path, &mut out);
            }
            if n_routes == 0 {
                self.collect(vec![e], &chunk.file.path, &mut out);
            }
        }
        self.finish(out)
    }

    /// Releases held entries whose wait is over (all with `force`).
    fn flush(&mut self, now: i64, force: bool) -> Vec<(Arc<str>, Chunk, u64)> {
        let mut out = Outgoing::default();
        for s in 0..self.ctx.routes.len() {
            for r in 0..self.ctx.routes[s].len() {
                let res = self.ctx.routes[s][r].flush(now, force);
                self.collect(res, "", &mut out);
            }
        }
        self.finish(out)
    }

    fn collect(&self, entries: Vec<Entry>, path: &str, out: &mut Outgoing) {
        for mut e in entries {
            let tenant: Arc<str> = match e.labels.remove(TENANT_LABEL) {
                Some(t) => Arc::from(t),
                None => self.ctx.tenant.clone(),
            };
            e.labels.retain(|k, _| !k.starts_with("__"));
            for (k, v) in &self.ctx.external_labels {
                e.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let ls: Arc<str> = Arc::from(LabelSet::from_pairs(e.labels).to_string());
            let key = (tenant.clone(), ls.clone());
            let i = *out.index.entry(key).or_insert_with(|| {
                let meta = Arc::new(FileMeta {
                    id: VIRTUAL_FILE_ID,
                    path: path.to_string(),
                    tenant: tenant.clone(),
                    labels: [ls.clone(), ls.clone(), ls.clone()],
                });
                out.groups.push((
                    tenant,
                    ls,
                    Chunk {
                        file: meta,
                        data: Vec::new(),
                        entries: Vec::new(),
                        commit_offset: 0,
                        line_bytes: 0,
                    },
                    u64::MAX,
                ));
                out.groups.len() - 1
            });
            let g = &mut out.groups[i];
            let c = &mut g.2;
            let start = u32::try_from(c.data.len()).unwrap_or(u32::MAX);
            c.data.extend_from_slice(e.line.as_bytes());
            let end = u32::try_from(c.data.len()).unwrap_or(u32::MAX);
            c.line_bytes += e.line.len();
            c.entries.push(crate::chunk::Entry {
                ts_ns: e.ts,
                start,
                end,
                stream: Stream::Unknown,
            });
            g.3 = g.3.min(e.origin);
        }
    }

    /// Attaches every output chunk to the pending input chunk of its oldest entry.
    fn finish(&mut self, out: Outgoing) -> Vec<(Arc<str>, Chunk, u64)> {
        let mut res = Vec::with_capacity(out.groups.len());
        for (tenant, _, chunk, origin) in out.groups {
            let front = self.pending.front().map_or(0, |p| p.seq);
            let idx = usize::try_from(origin.saturating_sub(front))
                .unwrap_or(usize::MAX)
                .min(self.pending.len().saturating_sub(1));
            if let Some(p) = self.pending.get_mut(idx) {
                p.guards.push(chunk.file.clone());
            }
            res.push((tenant, chunk, origin));
        }
        res
    }

    /// Acknowledges, in sequence order, every input chunk whose entries are all delivered.
    fn collect_acks(&mut self) {
        if self.ctx.aborting.load(Ordering::Relaxed) {
            return;
        }
        let held = self
            .ctx
            .routes
            .iter()
            .flatten()
            .filter_map(Route::min_held)
            .min()
            .unwrap_or(u64::MAX);
        let mut acks: Vec<(u64, u64)> = Vec::new();
        while let Some(p) = self.pending.front() {
            if p.seq >= held || p.guards.iter().any(|g| Arc::strong_count(g) > 1) {
                break;
            }
            match acks.iter_mut().find(|(f, _)| *f == p.file) {
                Some(a) => a.1 = p.commit,
                None => acks.push((p.file, p.commit)),
            }
            self.pending.pop_front();
        }
        if self.ctx.aborting.load(Ordering::Relaxed) {
            return;
        }
        for (file, offset) in acks {
            (self.ctx.ack)(file, offset);
        }
        self.labels
            .retain(|_, (meta, _, _)| Arc::strong_count(meta) > 1);
        // Stage drop counters → loki_process_dropped_lines_total{reason}.
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for r in self.ctx.routes.iter().flatten() {
            for (reason, n) in r.dropped() {
                *totals.entry(reason).or_default() += n;
            }
        }
        for (reason, n) in totals {
            let before = self.dropped_reported.insert(reason.clone(), n).unwrap_or(0);
            if n > before {
                self.ctx
                    .metrics
                    .process_dropped
                    .get_or_create(&vec![("reason", reason)])
                    .inc_by(n - before);
            }
        }
    }

    async fn send(&mut self, chunks: Vec<(Arc<str>, Chunk, u64)>) -> bool {
        for (tenant, chunk, _) in chunks {
            let outputs = &mut self.ctx.outputs;
            let tx = self
                .outputs
                .entry(tenant.clone())
                .or_insert_with(|| outputs(&tenant));
            if tx.send(chunk).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Runs a router until its input queue closes, then flushes held entries, closes its output
/// queues and keeps acknowledging until everything it sent was delivered (or the agent
/// aborts the pipelines at the drain timeout).
pub async fn run_router(ctx: RouterCtx, mut rx: mpsc::Receiver<Chunk>) {
    let mut r = Router::new(ctx);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            c = rx.recv() => {
                let Some(c) = c else { break };
                let _ = r.ctx.wake.try_send(());
                let out = r.process(c, now_ns());
                if !r.send(out).await {
                    return;
                }
            }
            _ = tick.tick() => {
                let out = r.flush(now_ns(), false);
                if !r.send(out).await {
                    return;
                }
                r.collect_acks();
            }
        }
    }
    let out = r.flush(now_ns(), true);
    if !r.send(out).await {
        return;
    }
    // Closing the output queues lets the batchers flush and the senders drain.
    r.outputs.clear();
    loop {
        r.collect_acks();
        if r.pending.is_empty() || r.ctx.aborting.load(Ordering::Relaxed) {
            return;
        }
        tick.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloy::pipeline::{Pipeline, Step};
    use crate::alloy::stages::{Multiline, Stage};
    use crate::chunk::Entry as CEntry;
    use parking_lot::Mutex;

    /// The last acknowledged offset of file 1.
    #[derive(Clone, Default)]
    struct Acks(Arc<Mutex<Option<u64>>>);

    impl Acks {
        fn get(&self) -> Option<u64> {
            *self.0.lock()
        }
    }

    fn chunk(meta: &Arc<FileMeta>, lines: &[&str], commit: u64) -> Chunk {
        let mut data = Vec::new();
        let mut entries = Vec::new();
        for l in lines {
            let start = data.len() as u32;
            data.extend_from_slice(l.as_bytes());
            entries.push(CEntry {
                ts_ns: 1,
                start,
                end: data.len() as u32,
                stream: Stream::Stdout,
            });
        }
        Chunk {
            file: meta.clone(),
            line_bytes: data.len(),
            data,
            entries,
            commit_offset: commit,
        }
    }

    fn router(stages: Vec<Stage>) -> (Router, Acks, mpsc::Receiver<Chunk>) {
        let acks = Acks::default();
        let a = acks.clone();
        let (tx, rx) = mpsc::channel(64);
        let (wake, _) = std::sync::mpsc::sync_channel(1);
        let route = Route {
            steps: vec![Step::Process {
                id: "loki.process.x".into(),
                pipeline: Pipeline::new(stages),
            }],
        };
        let r = Router::new(RouterCtx {
            tenant: Arc::from("t"),
            routes: vec![vec![route]],
            external_labels: BTreeMap::new(),
            ack: Arc::new(move |id, offset| {
                assert_eq!(id, 1);
                *a.0.lock() = Some(offset);
            }),
            metrics: Arc::new(Metrics::new("h")),
            outputs: Box::new(move |_| tx.clone()),
            wake,
            aborting: Arc::default(),
        });
        (r, acks, rx)
    }

    fn meta() -> Arc<FileMeta> {
        Arc::new(FileMeta {
            id: 1,
            path: "/f".into(),
            tenant: Arc::from("t"),
            labels: [
                Arc::from("{app=\"a\", stream=\"stdout\"}"),
                Arc::from("{app=\"a\", stream=\"stderr\"}"),
                Arc::from("{app=\"a\"}"),
            ],
        })
    }

    #[tokio::test]
    async fn held_multiline_entry_blocks_the_commit_until_emitted_and_delivered() {
        let ml = Stage::Multiline(Multiline {
            firstline: regex::Regex::new("^START").expect("regex"),
            max_lines: 128,
            max_wait: Duration::from_secs(3600),
            trim_newlines: true,
            buffers: BTreeMap::new(),
        });
        let (mut r, acks, mut rx) = router(vec![ml]);
        let m = meta();
        let out = r.process(chunk(&m, &["START a", "b"], 10), 1);
        assert!(out.is_empty(), "held");
        let out = r.process(chunk(&m, &["c"], 20), 2);
        assert!(out.is_empty());
        r.collect_acks();
        assert_eq!(acks.get(), None, "nothing acknowledged while held");
        let out = r.process(chunk(&m, &["START d"], 30), 3);
        assert_eq!(out.len(), 1);
        assert!(r.send(out).await);
        r.collect_acks();
        assert_eq!(acks.get(), None, "output not yet delivered");
        let c = rx.recv().await.expect("output chunk");
        assert_eq!(c.line(&c.entries[0]), b"START a\nb\nc");
        assert_eq!(&*c.file.labels[2], "{app=\"a\", stream=\"stdout\"}");
        drop(c);
        r.collect_acks();
        assert_eq!(
            acks.get(),
            Some(20),
            "up to the chunk before the held START d"
        );
        let out = r.flush(4, true);
        assert!(r.send(out).await);
        drop(rx.recv().await.expect("flushed"));
        r.collect_acks();
        assert_eq!(acks.get(), Some(30));
    }

    #[tokio::test]
    async fn dropped_entries_are_handled_and_counted_and_tenant_label_routes() {
        let drop_stage = Stage::Drop(crate::alloy::stages::DropStage {
            expression: Some(regex::Regex::new("debug").expect("regex")),
            reason: "noise".into(),
            ..Default::default()
        });
        let tenant = Stage::Tenant(crate::alloy::stages::TenantFrom::Value("other".into()));
        let (mut r, acks, mut rx) = router(vec![drop_stage, tenant]);
        let m = meta();
        let out = r.process(chunk(&m, &["debug x"], 7), 1);
        assert!(out.is_empty());
        r.collect_acks();
        assert_eq!(acks.get(), Some(7));
        let out = r.process(chunk(&m, &["info y"], 9), 1);
        assert_eq!(&*out[0].0, "other");
        assert!(r.send(out).await);
        let c = rx.recv().await.expect("chunk");
        assert_eq!(&*c.file.tenant, "other");
        assert!(!c.file.labels[2].contains("__"));
        drop(c);
        r.collect_acks();
        assert_eq!(acks.get(), Some(9));
        assert!(r.ctx.metrics.render().contains("reason=\"noise\"} 1"));
    }
}
