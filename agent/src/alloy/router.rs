//! Running an Alloy config's routes inside the agent: a task per tenant queue that takes the
//! tailer's parsed chunks, runs every entry through its source's [`Route`]s, and sends the
//! results to per-(writer, tenant) batchers: each route ends at one `loki.write`, which adds
//! its external labels and has its own endpoints (the tenant may come from `stage.tenant`).
//!
//! Positions still advance only after acknowledgement. Every input chunk gets a sequence
//! number that travels with its entries ([`Entry::origin`]); the chunk's commit offset is
//! acknowledged once (a) no stage holds an entry of it or of an earlier chunk (multiline
//! buffers) and (b) every output chunk built from its entries has been pushed and dropped by
//! its sender. Commits are released in sequence order, so an entry merged into an earlier
//! held one is covered too. Entries dropped by a stage count as handled. Copies of an entry
//! sent to several writers are in separate output chunks, so the commit waits for all.
//!
//! A `stage.limit` without `drop` makes entries wait like Alloy's `rate.Limiter.Wait`: the
//! router works through a chunk entry by entry, sends what may leave, and sleeps until the
//! limiter's time before it lets the next entry out, still ticking (multiline timeouts,
//! acknowledgements) meanwhile. Stages see a clock anchored to the wall clock at start and
//! advanced by tokio's monotonic clock, so waits are exact (and testable with paused time).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use loki_wire::LabelSet;
use tokio::sync::mpsc;

use super::pipeline::{Entry, Route};
use super::relabel::Labels;
use super::shared_labels::SharedLabels;
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

/// Creates the batcher+sender of a writer's (index into the plan's writers) output tenant
/// and returns its chunk queue.
pub type OutputFactory = Box<dyn FnMut(usize, &Arc<str>) -> mpsc::Sender<Chunk> + Send>;

/// Records that a file is acknowledged up to an offset.
pub type AckFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Everything a router task needs.
pub struct RouterCtx {
    /// Tenant of the input queue (used when no `__tenant_id__` label is set).
    pub tenant: Arc<str>,
    /// Routes per source index; usually `[[route]]`.
    pub routes: Vec<Vec<Route>>,
    /// External labels per writer (indexed like [`Route::writer`]), added to every entry
    /// without a label of that name.
    pub external_labels: Vec<BTreeMap<String, String>>,
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

/// The input chunk being worked through (a rate limit can pause it between entries).
struct Current {
    chunk: Chunk,
    seq: u64,
    /// Index of the next entry to process.
    next: usize,
    source: usize,
    /// Shared by every entry of the chunk until a stage changes an entry's labels.
    parsed: [SharedLabels; 3],
}

/// An entry leaving a route, with the writer the route ends at.
type Routed = (usize, Entry);

/// Processed entries that may leave at `ready_at` (Unix ns), after those before them.
struct Waiting {
    ready_at: i64,
    entries: Vec<Routed>,
    path: String,
}

/// The router's state (separate from the task so it can be tested synchronously).
pub struct Router {
    ctx: RouterCtx,
    seq: u64,
    pending: VecDeque<Pending>,
    current: Option<Current>,
    waiting: VecDeque<Waiting>,
    outputs: HashMap<(usize, Arc<str>), mpsc::Sender<Chunk>>,
    /// Parsed input labels per file, indexed by [`Stream`]; evicted once the tailer and every
    /// chunk let go of the file meta.
    labels: HashMap<u64, (Arc<FileMeta>, usize, [SharedLabels; 3])>,
    dropped_reported: BTreeMap<String, u64>,
    /// Reused per entry: what its routes emitted, with their writers.
    routed: Vec<Routed>,
    /// Reused per route: what one route emitted.
    emitted: Vec<Entry>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix ns from the wall clock at start plus tokio's monotonic time since: rate-limit waits
/// are computed and slept on the same clock (Linux slews both clocks alike; only a step of the
/// wall clock is not followed).
struct Clock {
    wall0: i64,
    inst0: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            wall0: now_ns(),
            inst0: Instant::now(),
        }
    }

    fn now_ns(&self) -> i64 {
        let elapsed = i64::try_from(self.inst0.elapsed().as_nanos()).unwrap_or(i64::MAX);
        self.wall0.saturating_add(elapsed)
    }

    /// The instant at which [`Clock::now_ns`] reaches `t`.
    fn instant_at(&self, t: i64) -> Instant {
        let after = u64::try_from(t.saturating_sub(self.wall0)).unwrap_or(0);
        self.inst0 + Duration::from_nanos(after)
    }
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

/// An output chunk to send: its writer and tenant, the chunk, and the sequence number of its
/// oldest entry.
struct Output {
    writer: usize,
    tenant: Arc<str>,
    chunk: Chunk,
    origin: u64,
}

type Outputs = Vec<Output>;

/// How many (writer, label set) → group results [`Outgoing`] keeps; a chunk comes from one
/// file, so its entries have few label sets.
const RECENT_SETS: usize = 32;

/// Output entries grouped into chunks by (writer, tenant, label set), in arrival order.
#[derive(Default)]
struct Outgoing {
    groups: Vec<Output>,
    /// Groups by (writer, tenant), then by label map: an entry finds its group by hashing its
    /// labels, and the label string is formatted once per new group, not per entry.
    index: HashMap<(usize, Arc<str>), HashMap<Labels, usize>>,
    /// Groups by (writer, tenant, label string): label maps that write the same string
    /// (as a map with an empty value does) share a group, as one stream.
    by_string: HashMap<(usize, Arc<str>, Arc<str>), usize>,
    /// Groups by (writer, entry label set) for the sets seen lately, compared by pointer:
    /// entries of one file share their set (or the set a stage made for them), so most find
    /// their group without the tenant, `__` and external-label work or any hashing.
    recent: Vec<(usize, SharedLabels, usize)>,
}

impl Outgoing {
    /// The index of the group for (writer, tenant, labels), made when new.
    fn group_of(&mut self, writer: usize, tenant: &Arc<str>, labels: &Labels, path: &str) -> usize {
        let by_labels = self.index.entry((writer, tenant.clone())).or_default();
        if let Some(&i) = by_labels.get(labels) {
            return i;
        }
        let ls: Arc<str> = Arc::from(
            LabelSet::from_pairs(labels.iter().map(|(k, v)| (k.clone(), v.clone()))).to_string(),
        );
        let groups = &mut self.groups;
        let i = *self
            .by_string
            .entry((writer, tenant.clone(), ls.clone()))
            .or_insert_with(|| {
                let meta = Arc::new(FileMeta {
                    id: VIRTUAL_FILE_ID,
                    path: path.to_string(),
                    tenant: tenant.clone(),
                    labels: [ls.clone(), ls.clone(), ls],
                });
                groups.push(Output {
                    writer,
                    tenant: tenant.clone(),
                    chunk: Chunk {
                        file: meta,
                        data: Vec::new(),
                        entries: Vec::new(),
                        commit_offset: 0,
                        line_bytes: 0,
                        metadata: Vec::new(),
                    },
                    origin: u64::MAX,
                });
                groups.len() - 1
            });
        by_labels.insert(labels.clone(), i);
        i
    }
}

impl Router {
    pub fn new(ctx: RouterCtx) -> Self {
        Router {
            ctx,
            seq: 0,
            pending: VecDeque::new(),
            current: None,
            waiting: VecDeque::new(),
            outputs: HashMap::new(),
            labels: HashMap::new(),
            dropped_reported: BTreeMap::new(),
            routed: Vec::new(),
            emitted: Vec::new(),
        }
    }

    /// Whether a chunk is being worked through or entries wait for a rate limit: the next
    /// input chunk waits until [`Router::advance`] has finished both.
    fn busy(&self) -> bool {
        self.current.is_some() || !self.waiting.is_empty()
    }

    /// Takes one input chunk; [`Router::advance`] then runs its entries through the routes.
    fn start(&mut self, chunk: Chunk) {
        self.seq += 1;
        let seq = self.seq;
        self.pending.push_back(Pending {
            seq,
            file: chunk.file.id,
            commit: chunk.commit_offset,
            guards: Vec::new(),
        });
        let (source, parsed) = {
            let meta = &chunk.file;
            let routes = &self.ctx.routes;
            // The tailer gives a file a new meta when its labels change (its pod's metadata
            // arrived): parse again.
            if self
                .labels
                .get(&meta.id)
                .is_some_and(|(m, _, _)| !Arc::ptr_eq(m, meta))
            {
                self.labels.remove(&meta.id);
            }
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
                // Lines read through the Kubernetes API carry no `stream`: a
                // `loki.source.kubernetes` file uses its stream-less set (parsed[2]) for all.
                if routes
                    .get(source)
                    .is_some_and(|rs| rs.first().is_some_and(|r| r.from_api_source))
                {
                    parsed[0] = parsed[2].clone();
                    parsed[1] = parsed[2].clone();
                }
                (meta.clone(), source, parsed.map(SharedLabels::from))
            });
            (entry.1, entry.2.clone())
        };
        self.current = Some(Current {
            chunk,
            seq,
            next: 0,
            source,
            parsed,
        });
    }

    /// Lets out the waiting entries whose time has come, then processes the current chunk
    /// until it is done or an entry has to wait. Returns the output chunks to send and, if
    /// something waits, when to call again.
    fn advance(&mut self, now: i64) -> (Outputs, Option<i64>) {
        let mut out = Outgoing::default();
        while let Some(w) = self.waiting.front() {
            if w.ready_at > now {
                let at = w.ready_at;
                return (self.finish(out), Some(at));
            }
            if let Some(w) = self.waiting.pop_front() {
                self.collect(w.entries, &w.path, &mut out);
            }
        }
        let Some(mut cur) = self.current.take() else {
            return (self.finish(out), None);
        };
        // One vector of results for the whole chunk, emptied after each entry.
        let mut res = std::mem::take(&mut self.routed);
        while let Some(ce) = cur.chunk.entries.get(cur.next).copied() {
            cur.next += 1;
            res.clear();
            let ready_at = self.run_entry(&cur, &ce, now, &mut res);
            match ready_at {
                Some(at) if at > now => {
                    self.waiting.push_back(Waiting {
                        ready_at: at,
                        entries: res,
                        path: cur.chunk.file.path.clone(),
                    });
                    if cur.next < cur.chunk.entries.len() {
                        self.current = Some(cur);
                    }
                    return (self.finish(out), Some(at));
                }
                _ => self.collect(res.drain(..), &cur.chunk.file.path, &mut out),
            }
        }
        self.routed = res;
        (self.finish(out), None)
    }

    /// One input entry through every route of its source: the outputs (appended to `res`),
    /// and when they may leave if a rate limit made them wait.
    fn run_entry(
        &mut self,
        cur: &Current,
        ce: &crate::chunk::Entry,
        now: i64,
        res: &mut Vec<Routed>,
    ) -> Option<i64> {
        let bytes = cur.chunk.line(ce);
        // Checking valid UTF-8 (the usual case) is much faster than the lossy conversion.
        let line = match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        };
        let mut e = Entry::shared(cur.parsed[ce.stream as usize].clone(), ce.ts_ns, line);
        e.origin = cur.seq;
        // A source whose forward_to leads to no writer sends nowhere (as in Alloy): the
        // entry is handled.
        let routes = self.ctx.routes.get_mut(cur.source)?;
        let n_routes = routes.len();
        let emitted = &mut self.emitted;
        let mut ready_at: Option<i64> = None;
        for (r, route) in routes.iter_mut().enumerate() {
            // forward_to fans out copies; the last route takes the entry itself.
            let e = if r + 1 == n_routes {
                std::mem::take(&mut e)
            } else {
                e.clone()
            };
            let w = route.writer;
            route.process_into(e, now, emitted);
            res.extend(emitted.drain(..).map(|e| (w, e)));
            ready_at = ready_at.max(route.take_ready_at());
        }
        ready_at
    }

    /// Runs one input chunk to the end, treating every rate-limit wait as already over
    /// (synchronous tests of everything but the waiting).
    #[cfg(test)]
    fn process(&mut self, chunk: Chunk, mut now: i64) -> Outputs {
        self.start(chunk);
        let mut res = Vec::new();
        loop {
            let (out, wait) = self.advance(now);
            res.extend(out);
            match wait {
                Some(at) => now = at,
                None => return res,
            }
        }
    }

    /// Releases held entries whose wait is over (all with `force`). Released entries that a
    /// rate limit holds, or that would overtake waiting ones, join the waiting queue.
    fn flush(&mut self, now: i64, force: bool) -> Outputs {
        let mut out = Outgoing::default();
        for s in 0..self.ctx.routes.len() {
            for r in 0..self.ctx.routes[s].len() {
                let route = &mut self.ctx.routes[s][r];
                let w = route.writer;
                let res: Vec<Routed> = route
                    .flush(now, force)
                    .into_iter()
                    .map(|e| (w, e))
                    .collect();
                let ready_at = route.take_ready_at();
                if res.is_empty() {
                    continue;
                }
                if ready_at.is_some_and(|at| at > now) || !self.waiting.is_empty() {
                    self.waiting.push_back(Waiting {
                        ready_at: ready_at.unwrap_or(now),
                        entries: res,
                        path: String::new(),
                    });
                } else {
                    self.collect(res, "", &mut out);
                }
            }
        }
        self.finish(out)
    }

    fn collect(&self, entries: impl IntoIterator<Item = Routed>, path: &str, out: &mut Outgoing) {
        for (writer, e) in entries {
            let i = match out
                .recent
                .iter()
                .find(|(w, l, _)| *w == writer && l.ptr_eq(&e.labels))
            {
                Some(&(_, _, i)) => i,
                None => {
                    let tenant: Arc<str> = match e.labels.get(TENANT_LABEL) {
                        Some(t) => Arc::from(t.as_str()),
                        None => self.ctx.tenant.clone(),
                    };
                    let mut labels: Labels = e
                        .labels
                        .iter()
                        .filter(|(k, _)| !k.starts_with("__"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    // Alloy's loki.write: externalLabels.Merge(entry labels), the entry's win.
                    if let Some(ext) = self.ctx.external_labels.get(writer) {
                        for (k, v) in ext {
                            if !labels.contains_key(k) {
                                labels.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    let i = out.group_of(writer, &tenant, &labels, path);
                    if out.recent.len() >= RECENT_SETS {
                        out.recent.clear();
                    }
                    out.recent.push((writer, e.labels.clone(), i));
                    i
                }
            };
            let g = &mut out.groups[i];
            let c = &mut g.chunk;
            let start = u32::try_from(c.data.len()).unwrap_or(u32::MAX);
            c.data.extend_from_slice(e.line.as_bytes());
            let end = u32::try_from(c.data.len()).unwrap_or(u32::MAX);
            // Structured metadata travels as is (`__` names too: Alloy only drops `__` labels
            // from the stream labels), in name order.
            let metadata: crate::chunk::Metadata = e.structured_metadata.into_iter().collect();
            c.line_bytes += e.line.len() + crate::chunk::metadata_bytes(&metadata);
            let metadata = c.add_metadata(metadata);
            c.entries.push(crate::chunk::Entry {
                ts_ns: e.ts,
                start,
                end,
                stream: Stream::Unknown,
                metadata,
            });
            g.origin = g.origin.min(e.origin);
        }
    }

    /// Attaches every output chunk to the pending input chunk of its oldest entry.
    fn finish(&mut self, out: Outgoing) -> Outputs {
        for o in &out.groups {
            let front = self.pending.front().map_or(0, |p| p.seq);
            let idx = usize::try_from(o.origin.saturating_sub(front))
                .unwrap_or(usize::MAX)
                .min(self.pending.len().saturating_sub(1));
            if let Some(p) = self.pending.get_mut(idx) {
                p.guards.push(o.chunk.file.clone());
            }
        }
        out.groups
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
            .chain(self.current.as_ref().map(|c| c.seq))
            .chain(
                self.waiting
                    .iter()
                    .flat_map(|w| w.entries.iter().map(|(_, e)| e.origin)),
            )
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

    async fn send(&mut self, chunks: Outputs) -> bool {
        for o in chunks {
            let outputs = &mut self.ctx.outputs;
            let tx = self
                .outputs
                .entry((o.writer, o.tenant))
                .or_insert_with_key(|(w, t)| outputs(*w, t));
            if tx.send(o.chunk).await.is_err() {
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
    let clock = Clock::new();
    let mut r = Router::new(ctx);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if r.busy() {
            // A chunk in progress or entries waiting for a rate limit: no new input until done.
            if !r.catch_up(&clock, &mut tick).await {
                return;
            }
            continue;
        }
        tokio::select! {
            c = rx.recv() => {
                let Some(c) = c else { break };
                let _ = r.ctx.wake.try_send(());
                r.start(c);
            }
            _ = tick.tick() => {
                if !r.on_tick(clock.now_ns()).await {
                    return;
                }
            }
        }
    }
    let out = r.flush(clock.now_ns(), true);
    if !r.send(out).await {
        return;
    }
    while r.busy() {
        if !r.catch_up(&clock, &mut tick).await {
            return;
        }
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

impl Router {
    /// One step of [`Router::advance`]; if something waits, sleeps until its time while still
    /// ticking. False when the outputs are gone or the agent aborts.
    async fn catch_up(&mut self, clock: &Clock, tick: &mut tokio::time::Interval) -> bool {
        let (out, wait) = self.advance(clock.now_ns());
        if !self.send(out).await {
            return false;
        }
        if let Some(at) = wait {
            tokio::select! {
                _ = tokio::time::sleep_until(clock.instant_at(at)) => {}
                _ = tick.tick() => {
                    if !self.on_tick(clock.now_ns()).await {
                        return false;
                    }
                }
            }
        }
        !self.ctx.aborting.load(Ordering::Relaxed)
    }

    /// Multiline timeouts and acknowledgements.
    async fn on_tick(&mut self, now: i64) -> bool {
        let out = self.flush(now, false);
        if !self.send(out).await {
            return false;
        }
        self.collect_acks();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloy::pipeline::{Pipeline, Step};
    use crate::alloy::stages::{Limit, Multiline, Stage};
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
                metadata: crate::chunk::NO_METADATA,
            });
        }
        Chunk {
            file: meta.clone(),
            line_bytes: data.len(),
            data,
            entries,
            commit_offset: commit,
            metadata: Vec::new(),
        }
    }

    fn router(stages: Vec<Stage>) -> (Router, Acks, mpsc::Receiver<Chunk>) {
        let (ctx, acks, rx) = ctx(stages);
        (Router::new(ctx), acks, rx)
    }

    fn ctx(stages: Vec<Stage>) -> (RouterCtx, Acks, mpsc::Receiver<Chunk>) {
        let acks = Acks::default();
        let a = acks.clone();
        let (tx, rx) = mpsc::channel(64);
        let (wake, _) = std::sync::mpsc::sync_channel(1);
        let route = Route {
            steps: vec![Step::Process {
                id: "loki.process.x".into(),
                pipeline: Pipeline::new(stages),
            }],
            writer: 0,
            from_api_source: false,
        };
        let ctx = RouterCtx {
            tenant: Arc::from("t"),
            routes: vec![vec![route]],
            external_labels: vec![BTreeMap::new()],
            ack: Arc::new(move |id, offset| {
                assert_eq!(id, 1);
                *a.0.lock() = Some(offset);
            }),
            metrics: Arc::new(Metrics::new("h")),
            outputs: Box::new(move |_, _| tx.clone()),
            wake,
            aborting: Arc::default(),
        };
        (ctx, acks, rx)
    }

    fn waiting_limit(rate: f64, burst: f64) -> Stage {
        Stage::Limit(Limit::new(rate, burst, false, None, 10_000))
    }

    /// Receives output chunks until `n` entries arrived: (ms since `t0`, entries) per chunk.
    async fn arrivals(rx: &mut mpsc::Receiver<Chunk>, t0: Instant, n: usize) -> Vec<(u128, usize)> {
        let mut got = Vec::new();
        let mut total = 0;
        while total < n {
            let c = rx.recv().await.expect("output chunk");
            total += c.entries.len();
            got.push((t0.elapsed().as_millis(), c.entries.len()));
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn limit_without_drop_lets_one_chunk_out_entry_by_entry_at_the_limiters_pace() {
        let (ctx, acks, mut rx) = ctx(vec![waiting_limit(10.0, 5.0)]);
        let (tx, input) = mpsc::channel(4);
        let t0 = Instant::now();
        let task = tokio::spawn(run_router(ctx, input));
        let lines: Vec<String> = (0..25).map(|i| format!("l{i}")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        tx.send(chunk(&meta(), &lines, 100)).await.expect("send");
        // rate.Limiter{10/s, burst 5}.Wait: five at once, then one every 100 ms.
        let want: Vec<(u128, usize)> = std::iter::once((0, 5))
            .chain((1..=20).map(|i| (i * 100, 1)))
            .collect();
        assert_eq!(arrivals(&mut rx, t0, 25).await, want);
        drop(tx);
        task.await.expect("router ends");
        assert_eq!(acks.get(), Some(100));
    }

    #[tokio::test(start_paused = true)]
    async fn earlier_chunks_are_acknowledged_while_a_later_one_waits() {
        let (ctx, acks, mut rx) = ctx(vec![waiting_limit(1.0, 1.0)]);
        let (tx, input) = mpsc::channel(4);
        let t0 = Instant::now();
        let task = tokio::spawn(run_router(ctx, input));
        let m = meta();
        tx.send(chunk(&m, &["a"], 10)).await.expect("send");
        tx.send(chunk(&m, &["b", "c"], 20)).await.expect("send");
        drop(rx.recv().await.expect("a"));
        // b waits one second for its token; a is delivered, so offset 10 is acknowledged first.
        let deadline = t0 + Duration::from_millis(900);
        while acks.get() != Some(10) {
            assert!(
                Instant::now() < deadline,
                "a not acknowledged while b waits"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(arrivals(&mut rx, t0, 2).await, [(1000, 1), (2000, 1)]);
        let deadline = t0 + Duration::from_secs(3);
        while acks.get() != Some(20) {
            assert!(Instant::now() < deadline, "b, c never acknowledged");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(tx);
        task.await.expect("router ends");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_router_stops_when_the_agent_aborts() {
        let (ctx, acks, mut rx) = ctx(vec![waiting_limit(0.001, 1.0)]);
        let aborting = ctx.aborting.clone();
        let (tx, input) = mpsc::channel(4);
        let task = tokio::spawn(run_router(ctx, input));
        tx.send(chunk(&meta(), &["a", "b"], 10))
            .await
            .expect("send");
        drop(rx.recv().await.expect("a"));
        // b would wait 1000 s; the drain timeout sets `aborting` long before.
        tokio::time::sleep(Duration::from_secs(5)).await;
        aborting.store(true, Ordering::SeqCst);
        let t = Instant::now();
        task.await.expect("router ends");
        assert!(t.elapsed() <= TICK, "stopped within a tick");
        assert_eq!(acks.get(), None, "nothing acknowledged once aborting");
    }

    #[tokio::test]
    async fn limit_drops_count_as_ratelimit_drop_stage_and_are_handled() {
        let lim = Stage::Limit(Limit::new(1.0, 1.0, true, None, 10_000));
        let (mut r, acks, mut rx) = router(vec![lim]);
        let out = r.process(chunk(&meta(), &["a", "b", "c"], 5), 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].chunk.entries.len(), 1);
        assert!(r.send(out).await);
        drop(rx.recv().await.expect("a"));
        r.collect_acks();
        assert_eq!(acks.get(), Some(5));
        let metrics = r.ctx.metrics.render();
        assert!(
            metrics.contains("loki_process_dropped_lines_total{reason=\"ratelimit_drop_stage\"} 2"),
            "{metrics}"
        );
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

    /// Two routes of one source: straight to writer 0, and through a drop stage to writer 1.
    #[tokio::test]
    async fn copies_go_to_their_writers_with_their_labels_and_the_commit_waits_for_every_copy() {
        let (mut ctx, acks, mut rx) = ctx(Vec::new());
        let keep_audit = Stage::Drop(crate::alloy::stages::DropStage {
            expression: Some(regex::Regex::new("^debug").expect("regex")),
            reason: "noise".into(),
            ..Default::default()
        });
        ctx.routes = vec![vec![
            Route::default(),
            Route {
                steps: vec![Step::Process {
                    id: "loki.process.audit".into(),
                    pipeline: Pipeline::new(vec![keep_audit]),
                }],
                writer: 1,
                from_api_source: false,
            },
        ]];
        ctx.external_labels = vec![
            BTreeMap::from([("cluster".to_string(), "a".to_string())]),
            BTreeMap::from([("app".to_string(), "not-used".to_string())]),
        ];
        let made: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (tx, mut rx1) = mpsc::channel(64);
        let mut first = Some(std::mem::replace(
            &mut ctx.outputs,
            Box::new(|_, _| unreachable!()),
        ));
        let m = made.clone();
        ctx.outputs = Box::new(move |w, t| {
            m.lock().push(w);
            match w {
                0 => first.as_mut().expect("writer 0")(w, t),
                _ => tx.clone(),
            }
        });
        let mut r = Router::new(ctx);
        let out = r.process(chunk(&meta(), &["info x", "debug y"], 10), 1);
        let summary: Vec<(usize, usize)> = out
            .iter()
            .map(|o| (o.writer, o.chunk.entries.len()))
            .collect();
        assert_eq!(summary, [(0, 2), (1, 1)]);
        assert!(r.send(out).await);
        assert_eq!(*made.lock(), [0, 1], "one output pipeline per writer");
        let c0 = rx.recv().await.expect("writer 0 chunk");
        let c1 = rx1.recv().await.expect("writer 1 chunk");
        assert_eq!(
            &*c0.file.labels[2],
            "{app=\"a\", cluster=\"a\", stream=\"stdout\"}"
        );
        // The entry's own app label wins over the writer's external label.
        assert_eq!(&*c1.file.labels[2], "{app=\"a\", stream=\"stdout\"}");
        assert_eq!(c1.line(&c1.entries[0]), b"info x");
        drop(c0);
        r.collect_acks();
        assert_eq!(acks.get(), None, "writer 1 still holds its copy");
        drop(c1);
        r.collect_acks();
        assert_eq!(acks.get(), Some(10));
    }

    #[tokio::test]
    async fn a_source_without_routes_sends_nothing_and_is_acknowledged() {
        let (mut ctx, acks, mut rx) = ctx(Vec::new());
        ctx.routes = vec![Vec::new()];
        let mut r = Router::new(ctx);
        let out = r.process(chunk(&meta(), &["x"], 4), 1);
        assert!(out.is_empty());
        r.collect_acks();
        assert_eq!(acks.get(), Some(4));
        assert!(rx.try_recv().is_err());
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
        assert_eq!(&*out[0].tenant, "other");
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
