//! The tailer: one thread that owns every open file, reads new complete lines with large
//! positional reads, parses them and hands chunks to the tenant pipelines.
//!
//! Rotation rules (see the crate docs): files are tracked by device+inode (plus a content
//! fingerprint against inode reuse), a renamed or deleted file is kept open and read to its
//! end, a shrunken file is read again from 0, a last line without `\n` waits for its newline.
//!
//! Rotated (`N.log.<ts>`) and gzipped (`N.log.<ts>.gz`) siblings: one the positions store
//! knows unfinished is resumed (by inode, or by content inside its `.gz`); one it knows done
//! (or being read) is skipped; any other is content the agent never saw — created and rotated
//! while it was down or between two scans — and is read from 0. The one exception is a
//! container directory seen for the first time at startup (no positions for it): its rotated
//! files are history that predates the agent and are ignored, like Alloy. Within a container
//! directory files are read in rotation order (`N`, then the kubelet timestamp, the live file
//! last): a newer file waits while an older one still has data.
//!
//! Chunks of a pass leave together at its end (an outbox of at most 64 KiB or one queue's
//! worth), so a pass wakes each pipeline once. A tenant whose queue is full parks what the
//! outbox held for it and its files are skipped until it drains, so a stuck tenant never
//! stops the others and memory stays bounded.
//!
//! Descriptors: at most a budget of files is open (see [`fdlimit`]); beyond it the least
//! recently active idle file is closed, and reopened when a scan sees it change — by path,
//! only if it is still the same device+inode (and the read path's fingerprint check still
//! holds), so a rotated or replaced file is never mis-resumed.
//!
//! Wake-ups: after a file event the tailer lets `min_read_interval` pass since its previous
//! pass before reading, so a trickle of small writes costs one pass per interval, not one
//! per write; a backlog or a parked chunk is read on at once.

pub mod confine;
pub mod fdlimit;
pub mod fingerprint;
pub mod legacy;
pub mod positions;
pub mod watch;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use loki_wire::LabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;

use crate::chunk::{Chunk, FileMeta};
use crate::config::Settings;
use crate::discovery::{Discovery, FileKind, Target};
use crate::metrics::Metrics;
use crate::parse::{LineParser, Out};
use fingerprint::{read_gz_head, read_head, Fingerprint};
use positions::{FileRecord, Lookup, Positions};

/// Creates (and starts) the pipeline of a tenant, returning its chunk queue.
pub type SinkFactory = Box<dyn FnMut(&Arc<str>) -> mpsc::Sender<Chunk> + Send>;

/// Chunks read from one file per pass before moving on (fairness between files).
const CHUNKS_PER_PASS: usize = 4;
/// Room for the CRI/docker prefix on top of `max_line_bytes` in a raw line.
const RAW_LINE_OVERHEAD: usize = 4096;
/// Chunks read in a pass wait in an outbox and leave together at its end (or once this many
/// bytes gathered), so the pipeline wakes about once per pass rather than once per file that
/// grew a line: at everyday rates each hand-off to a parked thread cost more than the line.
const OUTBOX_BYTES: usize = 64 * 1024;
/// With files closed for the budget, file events ask for a scan (which sees what changed in
/// them) at most this often.
const CLOSED_RESCAN: std::time::Duration = std::time::Duration::from_secs(1);

enum Source {
    Plain(File),
    Gz {
        dec: Box<flate2::read::MultiGzDecoder<io::BufReader<File>>>,
        carry: Vec<u8>,
    },
    /// A plain file closed to stay within the descriptor budget.
    Closed,
}

struct Tailed {
    meta: Arc<FileMeta>,
    key: (u64, u64),
    source: Source,
    path: PathBuf,
    /// Rotation group (container directory) and place in it, see [`sequence`].
    group: u64,
    order: (u64, u8, String),
    /// Offset of the first byte not yet consumed as part of a complete line.
    read_offset: u64,
    /// Inside an over-long line whose head was emitted: discard up to the next `\n`.
    skipping: bool,
    parser: LineParser,
    fp: Fingerprint,
    size: u64,
    /// When the path stopped pointing at this file (rename or delete).
    rotated_at: Option<Instant>,
    finished: bool,
    lines_total: Counter,
    read_gauge: Gauge,
    size_gauge: Gauge,
    /// Discovery's labels and namespace `meta` was made from.
    target: (Vec<(String, String)>, String),
    /// The labels are the path's only, its pod not known to the Kubernetes API (yet): they
    /// are replaced when discovery has the pod's.
    provisional: bool,
    /// Not read before this instant, waiting for its pod's metadata.
    hold_until: Option<Instant>,
    /// The tailer's pass counter when it last yielded data (idle files close first).
    last_active: u64,
    /// Its last read ended at the end of the file: it may be closed for the budget.
    at_eof: bool,
    /// Closed, and a scan saw it change (or rotate): reopen it to read.
    wants_open: bool,
    /// Closed and no longer on disk: finished without reading more.
    gone: bool,
    /// Scans in a row that found it nowhere while it was closed (one is not enough: a scan
    /// that lists a directory before a rename and looks after it misses the renamed file).
    unseen_scans: u8,
}

enum Step {
    Chunk(Chunk),
    Eof,
}

/// The tailer's state; run it on its own thread with [`Tailer::run`].
pub struct Tailer {
    settings: Arc<Settings>,
    discovery: Box<dyn Discovery>,
    positions: Arc<Positions>,
    metrics: Arc<Metrics>,
    factory: SinkFactory,
    sinks: HashMap<Arc<str>, mpsc::Sender<Chunk>>,
    /// Chunks of a tenant whose queue was full, in order (at most one outbox's worth).
    blocked: HashMap<Arc<str>, VecDeque<Chunk>>,
    /// Chunks of this pass not handed over yet (see [`OUTBOX_BYTES`]).
    outbox: Vec<Chunk>,
    outbox_bytes: usize,
    files: HashMap<u64, Tailed>,
    by_inode: HashMap<(u64, u64), u64>,
    /// `.gz` files already identified, so they are not decompressed on every scan.
    gz_seen: HashMap<(u64, u64), GzSeen>,
    /// Directories the positions file had records for at startup.
    known_dirs: HashSet<PathBuf>,
    next_id: u64,
    initial_scan: bool,
    /// Promtail positions for the first scan of a first start (`legacy_positions_file`).
    legacy: Option<legacy::LegacyPositions>,
    /// [`Discovery::generation`] at the start of the last scan.
    generation: u64,
    /// Where files may really live (see [`confine`]).
    roots: confine::Roots,
    /// Paths refused and already warned about (once per path while it exists).
    refused: HashSet<PathBuf>,
    /// Log files that may be open at once, and how many are.
    budget: usize,
    open_files: usize,
    /// Passes so far (the clock of [`Tailed::last_active`]).
    passes: u64,
    budget_warned: bool,
    /// A reopen found the path changed: scan before the next pass.
    need_scan: bool,
}

/// A `.gz` already identified: its stamp (size, mtime) tells a reused inode apart, its
/// decompressed head keeps the done record of its content alive.
struct GzSeen {
    stamp: (u64, i64, i64),
    dir: PathBuf,
    head: Vec<u8>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Reads until `buf` is full or EOF.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Tailer {
    pub fn new(
        settings: Arc<Settings>,
        discovery: Box<dyn Discovery>,
        positions: Arc<Positions>,
        metrics: Arc<Metrics>,
        factory: SinkFactory,
    ) -> Self {
        // Like Alloy: Promtail's positions are converted only when there are none of our own.
        let legacy = (!settings.legacy_positions_files.is_empty() && !positions.prior_run())
            .then(|| {
                legacy::LegacyPositions::load(&settings.legacy_positions_files, &settings.pods_root)
            })
            .filter(|l| !l.is_empty());
        Tailer {
            discovery,
            positions: positions.clone(),
            metrics,
            factory,
            sinks: HashMap::new(),
            blocked: HashMap::new(),
            outbox: Vec::new(),
            outbox_bytes: 0,
            files: HashMap::new(),
            by_inode: HashMap::new(),
            gz_seen: HashMap::new(),
            known_dirs: positions.known_dirs(),
            next_id: 1,
            initial_scan: true,
            legacy,
            generation: 0,
            roots: confine::Roots::new(
                &settings.pods_root,
                settings.docker_containers_dir.as_deref(),
            ),
            refused: HashSet::new(),
            budget: match settings.max_open_files {
                0 => fdlimit::budget(fdlimit::soft_limit()),
                n => n,
            },
            open_files: 0,
            passes: 0,
            budget_warned: false,
            need_scan: false,
            settings,
        }
    }

    /// Tails until `stop` is set. `wake` is signalled by the file watcher and by tenant
    /// pipelines that made room; `rescan` asks for an immediate directory scan.
    pub fn run(
        mut self,
        wake: std_mpsc::Receiver<()>,
        rescan: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
    ) {
        if self.budget != usize::MAX {
            tracing::debug!(budget = self.budget, "open-file budget for log files");
        }
        self.scan();
        self.initial_scan = false;
        self.legacy = None;
        for r in self.positions.prune_unclaimed() {
            tracing::info!(path = %r.path, offset = r.offset, "forgetting position of a file that no longer exists");
        }
        // Make this first look durable before reading anything: a process killed before its
        // first periodic save would otherwise leave no positions file, and the next start
        // would take files rotated meanwhile for history that predates the agent and skip
        // them (the first-start rule), losing what this run had not shipped.
        if let Err(e) = self.positions.save() {
            tracing::warn!(error = %e, "saving positions after the first scan failed");
        }
        let mut last_scan = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // Scans asked for by file events run at most once per poll interval: a rotation
            // is a burst of creates and renames, and an open file is followed by inode anyway.
            let since = last_scan.elapsed();
            let asked = since >= self.settings.poll_interval
                && (rescan.swap(false, Ordering::Relaxed) || std::mem::take(&mut self.need_scan));
            if asked || since >= self.settings.rescan_interval || self.metadata_moved() {
                self.scan();
                last_scan = Instant::now();
            }
            let pass_started = Instant::now();
            if self.pass() {
                // A backlog: read on at once.
                continue;
            }
            if wake.recv_timeout(self.settings.poll_interval).is_err() {
                continue;
            }
            // A parked chunk got room: no waiting (that would throttle a backlog).
            if !self.blocked.is_empty() {
                continue;
            }
            // A file event: let the writes of `min_read_interval` gather so one pass reads
            // them (pacing, not synchronisation: a write during the wait is read after it).
            let due = pass_started + self.settings.min_read_interval;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            while wake.try_recv().is_ok() {}
            // Closed files are seen changing by a scan only.
            if self.open_files < self.files.len() && last_scan.elapsed() >= CLOSED_RESCAN {
                self.need_scan = true;
            }
        }
        // Register files that appeared since the last scan (offset 0), so that a rotation
        // while we are down still finds them by inode.
        self.scan();
        // Parked chunks are dropped unacknowledged: they are read again after a restart.
        tracing::info!(files = self.files.len(), "tailer stopped");
    }

    /// Lists files and opens the ones that must be read.
    fn scan(&mut self) {
        // Read before scanning: a change during the scan is seen as one more.
        self.generation = self.discovery.generation();
        let targets = self.discovery.scan();
        let mut live_keys = HashSet::new();
        let mut all_keys = HashSet::new();
        let targets_dirs: HashSet<PathBuf> = targets
            .iter()
            .filter_map(|t| t.path.parent().map(Path::to_path_buf))
            .collect();
        for t in &targets {
            if let Err(e) = self.consider(t, &mut live_keys, &mut all_keys) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %t.path.display(), error = %e, "cannot open log file");
                }
            }
        }
        self.forget_vanished(&targets_dirs, &all_keys);
        let listed: HashSet<&Path> = targets.iter().map(|t| t.path.as_path()).collect();
        self.refused.retain(|p| listed.contains(p.as_path()));
        let now = Instant::now();
        for t in self.files.values_mut() {
            let closed = matches!(t.source, Source::Closed);
            if t.rotated_at.is_none()
                && !live_keys.contains(&t.key)
                && !matches!(t.source, Source::Gz { .. })
            {
                tracing::debug!(path = %t.path.display(), "file rotated or deleted; reading it to the end");
                t.rotated_at = Some(now);
                // A closed one is reopened to be read to its end (and finished).
                t.wants_open |= closed;
            }
            // Closed, and neither at its path nor anywhere listed: nothing left to read.
            let dir_listed = |p: &Path| {
                p.parent()
                    .is_some_and(|d| targets_dirs.contains(d) || !d.exists())
            };
            if closed && !t.gone && !all_keys.contains(&t.key) && dir_listed(&t.path) {
                t.unseen_scans = t.unseen_scans.saturating_add(1);
                if t.unseen_scans >= 2 {
                    tracing::debug!(path = %t.path.display(), "closed file left the disk; finishing it");
                    t.gone = true;
                    t.wants_open = true;
                }
            }
        }
        self.metrics.files_active.set(self.files.len() as i64);
        if self.files.len() > self.budget && !self.budget_warned {
            self.budget_warned = true;
            tracing::warn!(
                files = self.files.len(),
                budget = self.budget,
                "more log files than the open-file budget: idle files are closed and reopened when they change, which delays their lines by up to a rescan; raise the fd limit or --max-open-files"
            );
        }
    }

    fn consider(
        &mut self,
        t: &Target,
        live_keys: &mut HashSet<(u64, u64)>,
        all_keys: &mut HashSet<(u64, u64)>,
    ) -> io::Result<()> {
        let md = std::fs::metadata(&t.path)?;
        if !md.is_file() {
            self.refuse(&t.path, confine::Refused::NotRegular);
            return Ok(());
        }
        let key = (md.dev(), md.ino());
        all_keys.insert(key);
        if t.kind == FileKind::Live {
            live_keys.insert(key);
        }
        if let Some(id) = self.by_inode.get(&key) {
            if let Some(f) = self.files.get_mut(id) {
                if f.path != t.path {
                    f.path = t.path.clone();
                    (f.group, f.order) = sequence(&t.path);
                }
                // The size on disk, also while reading is paused (the lag gauge).
                self.positions
                    .observe(*id, Some(&t.path.to_string_lossy()), md.len(), None);
                // Closed for the budget: a change in size means something to read.
                if matches!(f.source, Source::Closed) && md.len() != f.size {
                    f.wants_open = true;
                }
                f.unseen_scans = 0;
            }
            let id = *id;
            self.follow_labels(id, t);
            return Ok(());
        }
        let dir = t.path.parent().map(Path::to_path_buf).unwrap_or_default();
        // Only on the agent's very first start (no positions file yet) are the rotated files
        // of a directory history from before the agent (Alloy ignores them too). After a
        // restart, a directory without records appeared while the agent was away: a pod
        // created (and maybe rotated) during the downtime, whose every line is new.
        let first_sight =
            self.initial_scan && !self.positions.prior_run() && !self.known_dirs.contains(&dir);
        match t.kind {
            FileKind::Live | FileKind::Rotated => {
                let rotated = t.kind == FileKind::Rotated;
                let Some(file) = self.open_checked(&t.path, key)? else {
                    return Ok(());
                };
                let head = read_head(&file)?;
                let size = file.metadata()?.len();
                let found = self.lookup(&dir, key, &head, rotated);
                let promtail = match (&found, &mut self.legacy) {
                    (Lookup::Unknown, Some(l)) => l.start_for(&t.path, rotated, &file),
                    _ => None,
                };
                let start = match found {
                    _ if promtail.is_some() => match promtail {
                        Some(legacy::Start::At(offset)) => offset,
                        _ => {
                            self.positions.ignore(record(
                                &t.path,
                                key,
                                Fingerprint::of(&head),
                                size,
                            ));
                            return Ok(());
                        }
                    },
                    // A stored offset beyond the end means the file was truncated meanwhile.
                    Lookup::Resume(rec) if rec.offset <= size => rec.offset,
                    Lookup::Resume(_) => 0,
                    Lookup::Known => return Ok(()),
                    Lookup::Unknown if rotated && first_sight => {
                        self.positions
                            .ignore(record(&t.path, key, Fingerprint::of(&head), size));
                        return Ok(());
                    }
                    Lookup::Unknown if first_sight && self.settings.tail_from_end => {
                        after_last_newline(&file, size)?
                    }
                    Lookup::Unknown => {
                        if rotated {
                            tracing::info!(path = %t.path.display(), "rotated file never seen before; reading it from the start");
                        }
                        0
                    }
                };
                self.open(t, key, Source::Plain(file), &head, start, size, rotated);
            }
            FileKind::RotatedGz => {
                let stamp = (md.len(), md.mtime(), md.mtime_nsec());
                if self.gz_seen.get(&key).is_some_and(|s| s.stamp == stamp) {
                    return Ok(());
                }
                // Still being written (a writer without the kubelet's `.tmp` + rename).
                if md.len() == 0 {
                    return Ok(());
                }
                let Some(file) = self.open_checked(&t.path, key)? else {
                    return Ok(());
                };
                let head = match read_gz_head(&file) {
                    Ok(h) => h,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                    Err(e) => {
                        tracing::debug!(path = %t.path.display(), error = %e, "gzip head unreadable (yet)");
                        return Ok(());
                    }
                };
                let seen = GzSeen {
                    stamp,
                    dir: dir.clone(),
                    head: head.clone(),
                };
                let (start, claimed) = match self.lookup(&dir, key, &head, true) {
                    Lookup::Resume(rec) => (rec.offset, Some(rec)),
                    Lookup::Known => {
                        self.gz_seen.insert(key, seen);
                        return Ok(());
                    }
                    Lookup::Unknown if first_sight => {
                        self.positions
                            .ignore(record(&t.path, key, Fingerprint::of(&head), 0));
                        self.gz_seen.insert(key, seen);
                        return Ok(());
                    }
                    Lookup::Unknown => (0, None),
                };
                // Reading through a truncated gzip would end the file early: wait until it
                // is complete (kubelet renames a finished `.tmp`; other writers may not).
                if !gz_complete(&file) {
                    if let Some(rec) = claimed {
                        self.positions.unclaim(rec);
                    }
                    return Ok(());
                }
                self.gz_seen.insert(key, seen);
                let mut file = file;
                io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
                let mut dec = Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file)));
                let skipped = io::copy(&mut (&mut *dec).take(start), &mut io::sink())?;
                if claimed.is_some() {
                    tracing::info!(path = %t.path.display(), offset = skipped, "finishing an unfinished file from its gzipped copy");
                } else {
                    tracing::info!(path = %t.path.display(), "gzipped file never seen before; reading it from the start");
                }
                self.open(
                    t,
                    key,
                    Source::Gz {
                        dec,
                        carry: Vec::new(),
                    },
                    &head,
                    skipped,
                    md.len(),
                    true,
                );
            }
        }
        Ok(())
    }

    /// Opens a discovered file if it may be read (a regular file inside the allowed
    /// directories, checked on the descriptor) and is still the file `key` named.
    fn open_checked(&mut self, path: &Path, key: (u64, u64)) -> io::Result<Option<File>> {
        match confine::open(path, &self.roots)? {
            Ok(file) => {
                let md = file.metadata()?;
                // Replaced between the look and the open: the next scan sees the new one.
                Ok(((md.dev(), md.ino()) == key).then_some(file))
            }
            Err(why) => {
                self.refuse(path, why);
                Ok(None)
            }
        }
    }

    /// Skips a file that must not be read: WARN and count once per path.
    fn refuse(&mut self, path: &Path, why: confine::Refused) {
        if self.refused.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), reason = why.reason(),
                "not reading this file: only regular files inside the pods root (or docker's json logs) are read");
            self.metrics
                .files_refused
                .get_or_create(&vec![("reason", why.reason().to_string())])
                .inc();
        }
    }

    /// What the positions store knows of a file. Before calling content never seen, the
    /// fingerprints of the directory's open files are brought up to what is on disk: a file
    /// opened empty (or mid-line) and not read since is otherwise not recognised in its
    /// rotated copy, which would be read a second time.
    fn lookup(&mut self, dir: &Path, key: (u64, u64), head: &[u8], rotated: bool) -> Lookup {
        let found = self.positions.lookup(dir, key.0, key.1, head, rotated);
        if found != Lookup::Unknown || !rotated || !self.refresh_fingerprints(dir) {
            return found;
        }
        self.positions.lookup(dir, key.0, key.1, head, rotated)
    }

    /// Refreshes the incomplete fingerprints of `dir`'s open files; true if one changed.
    fn refresh_fingerprints(&mut self, dir: &Path) -> bool {
        let mut changed = false;
        for (id, f) in &mut self.files {
            if f.fp.is_complete() || f.path.parent() != Some(dir) {
                continue;
            }
            let head = match &f.source {
                Source::Plain(file) => read_head(file),
                // Closed for the budget: look through a short-lived descriptor of the same file.
                Source::Closed => match confine::open(&f.path, &self.roots) {
                    Ok(Ok(file))
                        if file
                            .metadata()
                            .is_ok_and(|md| (md.dev(), md.ino()) == f.key) =>
                    {
                        read_head(&file)
                    }
                    _ => continue,
                },
                Source::Gz { .. } => continue,
            };
            let Ok(head) = head else {
                continue;
            };
            // Only growth: replaced content is the read path's business.
            if head.len() > f.fp.bytes as usize && f.fp.matches(&head) {
                f.fp = Fingerprint::of(&head);
                self.positions.observe(*id, None, f.size, Some(f.fp));
                changed = true;
            }
        }
        changed
    }

    /// Forgets what left the disk: `.gz` identities, and done records whose file and `.gz`
    /// are both gone. A done record is only dropped when its directory was listed in this
    /// scan (or no longer exists), so one unreadable directory does not make its history new.
    fn forget_vanished(&mut self, listed: &HashSet<PathBuf>, present: &HashSet<(u64, u64)>) {
        self.gz_seen.retain(|k, _| present.contains(k));
        let mut heads: HashMap<&Path, Vec<&[u8]>> = HashMap::new();
        for g in self.gz_seen.values() {
            heads.entry(&g.dir).or_default().push(&g.head);
        }
        let gone = self.positions.retain_done(|r| {
            let dir = Path::new(&r.path).parent().unwrap_or(Path::new(""));
            if !listed.contains(dir) && dir.exists() {
                return true;
            }
            present.contains(&(r.dev, r.inode))
                || (r.fingerprint.bytes > 0
                    && heads
                        .get(dir)
                        .is_some_and(|hs| hs.iter().any(|h| r.fingerprint.matches(h))))
        });
        for r in gone {
            tracing::debug!(path = %r.path, "forgetting a finished file that left the disk");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        t: &Target,
        key: (u64, u64),
        source: Source,
        head: &[u8],
        start: u64,
        size: u64,
        rotated: bool,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let path_str = t.path.to_string_lossy().into_owned();
        let meta = Arc::new(file_meta(&self.settings, id, path_str.clone(), t));
        let fp = Fingerprint::of(head);
        self.positions
            .register(id, record(&t.path, key, fp, start), size);
        let (group, order) = sequence(&t.path);
        let pl = vec![("path", path_str)];
        tracing::info!(path = %t.path.display(), offset = start, "tailing");
        self.by_inode.insert(key, id);
        self.files.insert(
            id,
            Tailed {
                meta,
                key,
                source,
                path: t.path.clone(),
                group,
                order,
                read_offset: start,
                skipping: false,
                parser: LineParser::new(self.settings.format, self.settings.max_line_bytes)
                    .keep_docker_newline(self.settings.docker_keep_newline),
                fp,
                size,
                rotated_at: rotated.then(Instant::now),
                finished: false,
                lines_total: self.metrics.read_lines.get_or_create(&pl).clone(),
                read_gauge: self.metrics.read_bytes.get_or_create(&pl).clone(),
                size_gauge: self.metrics.file_bytes.get_or_create(&pl).clone(),
                target: (t.labels.clone(), t.namespace.clone()),
                provisional: t.pending.is_some(),
                hold_until: t.pending,
                last_active: self.passes,
                at_eof: false,
                wants_open: false,
                gone: false,
                unseen_scans: 0,
            },
        );
        self.open_files += 1;
        self.keep_budget(id);
    }

    /// Closes idle files until at most `budget` are open. When none is idle, the file just
    /// opened (`newest`) is closed again, marked to be reopened once others went idle.
    fn keep_budget(&mut self, newest: u64) {
        while self.open_files > self.budget {
            if self.close_idle() {
                continue;
            }
            if let Some(t) = self.files.get_mut(&newest) {
                if matches!(t.source, Source::Plain(_)) {
                    t.source = Source::Closed;
                    t.wants_open = true;
                    self.open_files -= 1;
                }
            }
            break;
        }
    }

    /// Closes the least recently active file that is at its end and not being finished.
    /// Returns false when no open file may be closed.
    fn close_idle(&mut self) -> bool {
        let victim = self
            .files
            .iter()
            .filter(|(_, t)| {
                matches!(t.source, Source::Plain(_)) && t.at_eof && t.rotated_at.is_none()
            })
            .min_by_key(|(_, t)| t.last_active)
            .map(|(id, _)| *id);
        let Some(t) = victim.and_then(|id| self.files.get_mut(&id)) else {
            return false;
        };
        tracing::debug!(path = %t.path.display(), "closing an idle file (open-file budget)");
        t.source = Source::Closed;
        t.wants_open = false;
        self.open_files -= 1;
        true
    }

    /// Closes an open live file of `group` that comes after `order` in rotation order: it
    /// waits for the older file anyway, and holding its descriptor while the older one cannot
    /// open would stop the group for good (with every descriptor held that way, the tailer).
    fn close_younger_sibling(&mut self, group: u64, order: &(u64, u8, String)) -> bool {
        let victim = self
            .files
            .iter()
            .filter(|(_, t)| {
                t.group == group
                    && &t.order > order
                    && matches!(t.source, Source::Plain(_))
                    && t.rotated_at.is_none()
            })
            .max_by(|a, b| a.1.order.cmp(&b.1.order))
            .map(|(id, _)| *id);
        let Some(t) = victim.and_then(|id| self.files.get_mut(&id)) else {
            return false;
        };
        tracing::debug!(path = %t.path.display(), "closing a file that waits for an older one (open-file budget)");
        t.source = Source::Closed;
        // It may hold unread data: open it again when its turn comes.
        t.wants_open = true;
        self.open_files -= 1;
        true
    }

    /// Opens a closed file again at its known path if it is still the same device+inode
    /// (content replaced under the same inode is the read path's fingerprint check).
    /// Returns false when it cannot be opened now (no descriptor free, or its path has moved
    /// on: a scan is asked for, which finds it by inode).
    fn reopen(&mut self, t: &mut Tailed) -> bool {
        if self.open_files >= self.budget
            && !self.close_idle()
            && !self.close_younger_sibling(t.group, &t.order)
        {
            return false;
        }
        match self.open_checked(&t.path, t.key) {
            Ok(Some(file)) => {
                t.source = Source::Plain(file);
                t.wants_open = false;
                self.open_files += 1;
                true
            }
            Ok(None) | Err(_) => {
                self.need_scan = true;
                false
            }
        }
    }

    /// Whether the pod metadata changed since the last scan (labels may be stale).
    fn metadata_moved(&self) -> bool {
        self.discovery.generation() != self.generation
    }

    /// Gives an open file the labels discovery has for it now. Path-only labels of a pod
    /// still unknown never replace others: a deleted pod's file keeps its last API labels.
    fn follow_labels(&mut self, id: u64, t: &Target) {
        let Some(f) = self.files.get_mut(&id) else {
            return;
        };
        if t.pending.is_some() {
            if f.provisional {
                f.hold_until = t.pending;
            }
            return;
        }
        f.provisional = false;
        f.hold_until = None;
        if f.target.0 == t.labels && f.target.1 == t.namespace {
            return;
        }
        tracing::debug!(path = %t.path.display(), "new labels for an open file (pod metadata changed)");
        f.meta = Arc::new(file_meta(&self.settings, id, f.meta.path.clone(), t));
        f.target = (t.labels.clone(), t.namespace.clone());
    }

    /// Retries parked chunks, then reads every file whose tenant has room. Returns whether
    /// more is waiting to be read at once (a file left with data after its share of this
    /// pass, or a closed file that could be reopened now that others went idle).
    fn pass(&mut self) -> bool {
        let more = self.read_pass();
        self.flush_outbox();
        more
    }

    fn read_pass(&mut self) -> bool {
        self.passes += 1;
        let mut progressed = false;
        let mut more = false;
        let mut deferred = false;
        let parked: Vec<Arc<str>> = self.blocked.keys().cloned().collect();
        for tenant in parked {
            for chunk in self.blocked.remove(&tenant).unwrap_or_default() {
                progressed |= self.send(chunk);
            }
        }
        // Rotation order within a group; a file that still has data holds back the newer
        // files of its group, so a stream's lines leave in the order they were written.
        let mut order: Vec<(u64, &(u64, u8, String), u64)> = self
            .files
            .iter()
            .map(|(id, t)| (t.group, &t.order, *id))
            .collect();
        order.sort_unstable();
        let order: Vec<(u64, u64)> = order.into_iter().map(|(g, _, id)| (g, id)).collect();
        let mut behind: HashSet<u64> = HashSet::new();
        for (group, id) in order {
            if behind.contains(&group) {
                continue;
            }
            let Some(mut t) = self.files.remove(&id) else {
                continue;
            };
            // Waiting for its pod's labels: not read yet, and newer files of its group wait.
            if t.hold_until.is_some_and(|u| Instant::now() < u) {
                behind.insert(group);
                self.files.insert(id, t);
                continue;
            }
            // Closed for the budget: idle until a scan saw it change; a gone one is finished.
            if matches!(t.source, Source::Closed) && !t.gone {
                let ready = t.wants_open && self.reopen(&mut t);
                if !ready {
                    if t.wants_open {
                        deferred = true;
                        behind.insert(group);
                    }
                    self.files.insert(id, t);
                    continue;
                }
            }
            let mut caught_up = false;
            for _ in 0..CHUNKS_PER_PASS {
                if self.blocked.contains_key(&t.meta.tenant) {
                    break;
                }
                match self.read(&mut t) {
                    Ok(Step::Chunk(mut c)) => {
                        progressed = true;
                        t.at_eof = false;
                        t.last_active = self.passes;
                        if self.metadata_moved() {
                            // Lines written after a pod became known must carry its labels:
                            // relabel before this chunk leaves, then start a new pass.
                            self.files.insert(id, t);
                            self.scan();
                            if let Some(t) = self.files.get(&id) {
                                c.file = t.meta.clone();
                            }
                            self.deliver(c);
                            return true;
                        }
                        self.deliver(c);
                    }
                    Ok(Step::Eof) => {
                        caught_up = true;
                        t.at_eof = true;
                        if let Some(c) = self.maybe_finish(&mut t) {
                            progressed = true;
                            self.deliver(c);
                        }
                        break;
                    }
                    Err(e) => {
                        // An unreadable file must not hold back the rest of its group.
                        caught_up = true;
                        tracing::warn!(path = %t.path.display(), error = %e, "read failed");
                        break;
                    }
                }
            }
            if !caught_up {
                behind.insert(group);
                more |= !self.blocked.contains_key(&t.meta.tenant);
            }
            if t.finished {
                if !matches!(t.source, Source::Closed) {
                    self.open_files -= 1;
                }
                self.by_inode.remove(&t.key);
                self.metrics
                    .read_lines
                    .remove(&vec![("path", t.meta.path.clone())]);
                self.metrics
                    .read_bytes
                    .remove(&vec![("path", t.meta.path.clone())]);
                self.metrics
                    .file_bytes
                    .remove(&vec![("path", t.meta.path.clone())]);
                tracing::info!(path = %t.path.display(), offset = t.read_offset, "finished rotated file");
            } else {
                self.files.insert(id, t);
            }
        }
        self.metrics.files_active.set(self.files.len() as i64);
        // Files opened past the budget by a scan are closed once they went idle.
        while self.open_files > self.budget && self.close_idle() {}
        more || (deferred && progressed)
    }

    /// Puts a chunk in the outbox, handing the outbox over once it holds enough.
    fn deliver(&mut self, chunk: Chunk) {
        self.outbox_bytes += chunk.data.len();
        self.outbox.push(chunk);
        if self.outbox_bytes >= OUTBOX_BYTES || self.outbox.len() >= self.settings.queue_chunks {
            self.flush_outbox();
        }
    }

    /// Hands the outbox to the tenants' queues, in order.
    fn flush_outbox(&mut self) {
        self.outbox_bytes = 0;
        for c in std::mem::take(&mut self.outbox) {
            self.send(c);
        }
    }

    /// Hands a chunk to its tenant; parks it (behind any parked before) when the queue is
    /// full. Returns false when parked.
    fn send(&mut self, chunk: Chunk) -> bool {
        let tenant = chunk.file.tenant.clone();
        if let Some(parked) = self.blocked.get_mut(&tenant) {
            parked.push_back(chunk);
            return false;
        }
        let factory = &mut self.factory;
        let tx = self
            .sinks
            .entry(tenant.clone())
            .or_insert_with(|| factory(&tenant));
        match tx.try_send(chunk) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(c)) => {
                self.blocked.insert(tenant, VecDeque::from([c]));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// At EOF: a rotated file past its grace period is finished (its unterminated last line
    /// and pending partials are flushed, since nobody will ever complete them).
    fn maybe_finish(&mut self, t: &mut Tailed) -> Option<Chunk> {
        let gz = matches!(t.source, Source::Gz { .. });
        let due = gz
            || t.gone
            || t.rotated_at
                .is_some_and(|at| at.elapsed() >= self.settings.rotated_grace);
        if !due || t.finished {
            return None;
        }
        let mut out = Out::default();
        let mut data = match &mut t.source {
            Source::Plain(file) => {
                let rest = t.size.saturating_sub(t.read_offset) as usize;
                let mut buf = vec![0u8; rest.min(self.settings.max_line_bytes + RAW_LINE_OVERHEAD)];
                let n = read_full_at(file, &mut buf, t.read_offset).unwrap_or(0);
                buf.truncate(n);
                buf
            }
            Source::Gz { carry, .. } => std::mem::take(carry),
            // Left the disk while closed: what was not read is out of reach.
            Source::Closed => Vec::new(),
        };
        let len = data.len();
        if len > 0 && !t.skipping {
            t.parser
                .line(&data, 0, len, t.read_offset, now_ns(), &mut out);
        }
        t.parser.flush_partials(&mut out);
        out.finish(&mut data, len);
        let end = if gz {
            t.read_offset + len as u64
        } else {
            t.size.max(t.read_offset + len as u64)
        };
        t.read_offset = end;
        t.finished = true;
        self.positions.finish(t.meta.id, end);
        Some(self.make_chunk(t, data, out, end))
    }

    fn make_chunk(&self, t: &mut Tailed, data: Vec<u8>, out: Out, commit_offset: u64) -> Chunk {
        let stats = std::mem::take(&mut t.parser.stats);
        t.lines_total.inc_by(stats.entries);
        self.metrics.truncated_lines.inc_by(stats.truncated);
        self.metrics.invalid_utf8_lines.inc_by(stats.invalid_utf8);
        self.metrics.parse_errors.inc_by(stats.parse_errors);
        t.read_gauge
            .set(i64::try_from(t.read_offset).unwrap_or(i64::MAX));
        Chunk {
            file: t.meta.clone(),
            data,
            entries: out.entries,
            commit_offset,
            line_bytes: out.line_bytes,
            metadata: Vec::new(),
        }
    }

    fn read(&mut self, t: &mut Tailed) -> io::Result<Step> {
        if matches!(t.source, Source::Gz { .. }) {
            return self.read_gz(t);
        }
        let Source::Plain(file) = &t.source else {
            return Ok(Step::Eof);
        };
        let md = file.metadata()?;
        let size = md.len();
        if md.nlink() == 0 && t.rotated_at.is_none() {
            t.rotated_at = Some(Instant::now());
        }
        if size != t.size {
            t.size = size;
            t.size_gauge.set(i64::try_from(size).unwrap_or(i64::MAX));
            self.positions.observe(t.meta.id, None, size, None);
        }
        if size < t.read_offset {
            tracing::info!(path = %t.path.display(), offset = t.read_offset, size, "file truncated; reading from the start");
            t.read_offset = 0;
            t.skipping = false;
            t.parser.reset();
            // New content, new identity: keep the stored fingerprint describing what is there.
            t.fp = Fingerprint::of(&read_head(file)?);
            self.positions.observe(t.meta.id, None, size, Some(t.fp));
            return Ok(Step::Chunk(self.make_chunk(
                t,
                Vec::new(),
                Out::default(),
                0,
            )));
        }
        if size == t.read_offset {
            return Ok(Step::Eof);
        }
        // copytruncate followed by new writes can leave the size above our offset: the
        // changed head is what gives it away.
        if t.read_offset > 0 && t.fp.bytes > 0 {
            let head = read_head(file)?;
            if !t.fp.matches(&head) {
                tracing::info!(path = %t.path.display(), offset = t.read_offset, "file content replaced; reading from the start");
                t.read_offset = 0;
                t.skipping = false;
                t.parser.reset();
                t.fp = Fingerprint::of(&head);
                self.positions.observe(t.meta.id, None, size, Some(t.fp));
                return Ok(Step::Chunk(self.make_chunk(
                    t,
                    Vec::new(),
                    Out::default(),
                    0,
                )));
            }
            if !t.fp.is_complete() && head.len() > t.fp.bytes as usize {
                t.fp = Fingerprint::of(&head);
                self.positions.observe(t.meta.id, None, size, Some(t.fp));
            }
        } else if !t.fp.is_complete() && size > u64::from(t.fp.bytes) {
            if let Ok(head) = read_head(file) {
                t.fp = Fingerprint::of(&head);
                self.positions.observe(t.meta.id, None, size, Some(t.fp));
            }
        }
        let avail = size - t.read_offset;
        let line_cap = self.settings.max_line_bytes + RAW_LINE_OVERHEAD;
        let mut want = avail.min(self.settings.read_bytes as u64) as usize;
        let now = now_ns();
        loop {
            let mut buf = vec![0u8; want];
            let n = read_full_at(file, &mut buf, t.read_offset)?;
            buf.truncate(n);
            if n == 0 {
                return Ok(Step::Eof);
            }
            let mut pos = 0;
            if t.skipping {
                match memchr::memchr(b'\n', &buf) {
                    Some(i) => {
                        pos = i + 1;
                        t.skipping = false;
                    }
                    None => {
                        t.read_offset += n as u64;
                        let commit = t.parser.pending_start().unwrap_or(t.read_offset);
                        return Ok(Step::Chunk(self.make_chunk(
                            t,
                            Vec::new(),
                            Out::default(),
                            commit,
                        )));
                    }
                }
            }
            let mut out = Out::default();
            let consumed = match memchr::memrchr(b'\n', &buf[pos..]) {
                Some(i) => {
                    let end = pos + i + 1;
                    let mut s = pos;
                    for nl in memchr::memchr_iter(b'\n', &buf[pos..end]) {
                        let e = pos + nl;
                        t.parser
                            .line(&buf, s, e, t.read_offset + s as u64, now, &mut out);
                        s = e + 1;
                    }
                    end
                }
                None if n - pos >= line_cap => {
                    // An over-long line: emit its head (the parser truncates and counts it),
                    // then discard the rest up to its newline.
                    t.parser
                        .line(&buf, pos, n, t.read_offset + pos as u64, now, &mut out);
                    t.skipping = true;
                    n
                }
                None if (n as u64) < avail && want < line_cap + pos => {
                    want = (want.saturating_mul(2))
                        .min(line_cap + pos)
                        .min(avail as usize);
                    continue;
                }
                None if pos > 0 => pos,
                // Only an unterminated last line: wait for its newline.
                None => return Ok(Step::Eof),
            };
            out.finish(&mut buf, consumed);
            t.read_offset += consumed as u64;
            let commit = t.parser.pending_start().unwrap_or(t.read_offset);
            return Ok(Step::Chunk(self.make_chunk(t, buf, out, commit)));
        }
    }

    fn read_gz(&mut self, t: &mut Tailed) -> io::Result<Step> {
        let Source::Gz { dec, carry } = &mut t.source else {
            return Ok(Step::Eof);
        };
        let mut buf = std::mem::take(carry);
        let have = buf.len();
        buf.resize(have + self.settings.read_bytes, 0);
        let n = read_full(dec, &mut buf[have..])?;
        buf.truncate(have + n);
        if n == 0 {
            *carry = buf;
            return Ok(Step::Eof);
        }
        let now = now_ns();
        let mut out = Out::default();
        let line_cap = self.settings.max_line_bytes + RAW_LINE_OVERHEAD;
        let consumed = match memchr::memrchr(b'\n', &buf) {
            Some(i) => {
                let mut s = 0;
                for nl in memchr::memchr_iter(b'\n', &buf[..=i]) {
                    t.parser
                        .line(&buf, s, nl, t.read_offset + s as u64, now, &mut out);
                    s = nl + 1;
                }
                i + 1
            }
            None if buf.len() >= line_cap => {
                let len = buf.len();
                t.parser.line(&buf, 0, len, t.read_offset, now, &mut out);
                len
            }
            None => 0,
        };
        *carry = buf[consumed..].to_vec();
        out.finish(&mut buf, consumed);
        t.read_offset += consumed as u64;
        t.size = t.size.max(t.read_offset + carry.len() as u64);
        let commit = t.parser.pending_start().unwrap_or(t.read_offset);
        Ok(Step::Chunk(self.make_chunk(t, buf, out, commit)))
    }
}

/// What the pipeline knows of file `id` with discovery's target `t`: its tenant and its three
/// label strings (stdout, stderr, none), external labels included.
fn file_meta(settings: &Settings, id: u64, path: String, t: &Target) -> FileMeta {
    let tenant: Arc<str> = Arc::from(settings.tenant_for(&t.namespace));
    let mut base = LabelSet::from_pairs(t.labels.iter().cloned());
    for (k, v) in &settings.external_labels {
        base.set(k, v);
    }
    let with_stream = |s: &str| {
        let mut l = base.clone();
        l.set("stream", s);
        Arc::<str>::from(l.to_string())
    };
    FileMeta {
        id,
        path,
        tenant,
        labels: [
            with_stream("stdout"),
            with_stream("stderr"),
            Arc::from(base.to_string()),
        ],
    }
}

/// A positions record for the file at `path` with this identity.
fn record(path: &Path, key: (u64, u64), fingerprint: Fingerprint, offset: u64) -> FileRecord {
    FileRecord {
        path: path.to_string_lossy().into_owned(),
        dev: key.0,
        inode: key.1,
        fingerprint,
        offset,
        done: false,
    }
}

/// Where a file sits among its siblings: `(group, (N, 0 rotated | 1 live, timestamp))`.
/// Kubelet names `N.log[.<ts>][.gz]` group by container directory (restart `N`, then the
/// rotation timestamp, which sorts as text, then the live file); any other file is a group
/// of its own, so unrelated files never wait for each other.
fn sequence(path: &Path) -> (u64, (u64, u8, String)) {
    let hash = |p: &Path| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        p.hash(&mut h);
        h.finish()
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let plain = name.strip_suffix(".gz").unwrap_or(name);
    if let (Some((stem, rest)), Some(dir)) = (plain.split_once(".log"), path.parent()) {
        if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
            let n = stem.parse::<u64>().unwrap_or(u64::MAX);
            if rest.is_empty() {
                return (hash(dir), (n, 1, String::new()));
            }
            if let Some(ts) = rest.strip_prefix('.') {
                return (hash(dir), (n, 0, ts.to_string()));
            }
        }
    }
    (hash(path), (0, 1, String::new()))
}

/// Whether the gzip file decompresses to its end (not caught halfway through being written).
fn gz_complete(file: &File) -> bool {
    let Ok(mut file) = file.try_clone() else {
        return false;
    };
    if io::Seek::seek(&mut file, io::SeekFrom::Start(0)).is_err() {
        return false;
    }
    let mut dec = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
    io::copy(&mut dec, &mut io::sink()).is_ok()
}

/// The offset just after the last newline (where `tail_from_end` starts).
fn after_last_newline(file: &File, size: u64) -> io::Result<u64> {
    let window = size.min(64 * 1024);
    let mut buf = vec![0u8; window as usize];
    let n = read_full_at(file, &mut buf, size - window)?;
    Ok(match memchr::memrchr(b'\n', &buf[..n]) {
        Some(i) => size - window + i as u64 + 1,
        None => size,
    })
}
