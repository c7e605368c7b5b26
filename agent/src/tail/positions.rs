//! Acknowledged file positions, persisted atomically in a Promtail-compatible YAML file.
//!
//! ```yaml
//! version: 3
//! positions:                      # Promtail's shape: path -> acknowledged offset
//!   /var/log/pods/ns_pod_uid/c/0.log: "1234"
//! files:                          # what the agent resumes from: identity + offset
//! - path: /var/log/pods/ns_pod_uid/c/0.log
//!   dev: 2049
//!   inode: 393231
//!   fingerprint: { bytes: 1024, crc32: 2557226012 }
//!   offset: 1234
//! - path: /var/log/pods/ns_pod_uid/c/0.log.20261122-101500.gz
//!   dev: 2049
//!   inode: 393240
//!   fingerprint: { bytes: 1024, crc32: 1718472391 }
//!   offset: 10485760
//!   done: true                    # fully read and acknowledged (or ignored on first sight)
//! # crc32: 1a2b3c4d                 # of every byte above: a cut-short file is refused
//! ```
//!
//! Offsets move only when the sender reports a batch acknowledged (or dropped with a counted
//! reason). A rotated file whose last byte is acknowledged becomes a `done` record, kept for as
//! long as the file or its `.gz` is on disk: that is what keeps it from being read again, and
//! what lets any *other* file in the directory be recognised as new content to read from 0.
//! Version 1 and 2 files (no `done` records, no checksum line) load unchanged. A file that
//! is empty, foreign or damaged is an error, or with `--positions-reset-on-corrupt` a logged
//! fresh start; never a silent restart from offset 0.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use crate::error::AgentError;

/// The current file format version. 3 added the checksum line that ends the file; 2 added
/// `done` records; 1 and 2 are read as they are.
const VERSION: u64 = 3;
/// Starts the last line of a version 3 file: `# crc32: <hex of every byte before it>`.
const TRAILER: &str = "# crc32: ";

/// One file's stored identity and acknowledged offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    pub fingerprint: Fingerprint,
    pub offset: u64,
    /// Fully read and acknowledged (or deliberately ignored): never read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

impl FileRecord {
    /// Same device+inode and the content still starts as recorded. An empty fingerprint
    /// says nothing about content, so for a finished record it only vouches for a file that
    /// is still empty (else a reused inode would hide new content).
    fn same_inode(&self, dev: u64, inode: u64, head: &[u8]) -> bool {
        self.dev == dev
            && self.inode == inode
            && self.fingerprint.matches(head)
            && (!self.done || self.fingerprint.bytes > 0 || head.is_empty())
    }

    /// Same content (decompressed for `.gz`) in the same directory, whatever the inode.
    /// Empty fingerprints never match by content, and neither do ones shorter than a whole
    /// line: a partial first write (`2024-05-01T10:00:00.0000`) is a prefix every CRI file of
    /// that second shares, so it would pass an unrelated, unread file off as known.
    fn same_content(&self, dir: &Path, head: &[u8]) -> bool {
        let n = self.fingerprint.bytes as usize;
        n > 0
            && Path::new(&self.path).parent() == Some(dir)
            && self.fingerprint.matches(head)
            && (self.fingerprint.is_complete() || head[..n].contains(&b'\n'))
    }
}

/// What the store knows about a file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// An unfinished file from the previous run: resume at `offset` (the record is claimed).
    Resume(FileRecord),
    /// Already read (or being read) by its identity: do not read it.
    Known,
    /// Content the agent never saw.
    Unknown,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u64,
    #[serde(default)]
    positions: BTreeMap<String, String>,
    files: Vec<FileRecord>,
}

/// The records of a positions file, or why it is not one this agent wrote whole. Empty,
/// foreign (`foo: bar`, Promtail's map alone) and cut-short files are all refused: taking
/// any of them for "no positions" would ship every file again from offset 0.
pub fn parse(text: &str) -> Result<Vec<FileRecord>, String> {
    if text.trim().is_empty() {
        return Err("the file is empty (torn by a crash, or not written by this agent)".into());
    }
    let value: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let version = value
        .get("version")
        .and_then(serde_norway::Value::as_u64)
        .ok_or("no `version` key: not a positions file of this agent (a Promtail or Alloy positions file is not read here)")?;
    if version == 0 || version > VERSION {
        return Err(format!(
            "version {version} is not one this agent reads (1 to {VERSION})"
        ));
    }
    if version >= 3 {
        check_trailer(text)?;
    }
    let disk: OnDisk = serde_norway::from_value(value).map_err(|e| e.to_string())?;
    Ok(disk.files)
}

/// A version 3 file ends with the checksum of everything before its last line.
fn check_trailer(text: &str) -> Result<(), String> {
    let body_end = text
        .strip_suffix('\n')
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let last = text[body_end..].trim_end_matches('\n');
    let Some(hex) = last.strip_prefix(TRAILER) else {
        return Err("the checksum line that ends the file is missing: it was cut short".into());
    };
    let want = u32::from_str_radix(hex.trim(), 16)
        .map_err(|_| format!("unreadable checksum line {last:?}"))?;
    if crc32fast::hash(&text.as_bytes()[..body_end]) != want {
        return Err("checksum mismatch: the file was damaged or edited".into());
    }
    Ok(())
}

/// The file text for `disk`: the YAML, then the checksum line.
fn render(disk: &OnDisk) -> Result<String, serde_norway::Error> {
    let mut text = serde_norway::to_string(disk)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let crc = crc32fast::hash(text.as_bytes());
    text.push_str(&format!("{TRAILER}{crc:08x}\n"));
    Ok(text)
}

#[derive(Debug)]
struct Live {
    rec: FileRecord,
    /// Offset at which the tailer finished the file (rotated/deleted and read to the end).
    finished_at: Option<u64>,
    /// Last size the tailer saw, for the lag gauge.
    size: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Files tailed by this process, by tailer file id.
    live: HashMap<u64, Live>,
    /// Records loaded from disk that no file has claimed yet.
    unclaimed: Vec<FileRecord>,
    /// Rotated files read to the end and acknowledged (or ignored on first start), kept
    /// while they (or their `.gz`) exist.
    done: Vec<FileRecord>,
    /// Directories that had records when the store was loaded.
    known_dirs: HashSet<PathBuf>,
    /// The tailer finished its first scan (see [`Positions::prune_unclaimed`]).
    scanned: bool,
    dirty: bool,
}

/// The shared positions store: the tailer registers files, senders acknowledge offsets.
#[derive(Debug)]
pub struct Positions {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Serialises writers of the file (periodic saver vs. the final save at shutdown), which
    /// share one temp file name.
    save_lock: Mutex<()>,
    /// Signalled on every acknowledgement (and `ignore`); other changes ride along.
    changed: tokio::sync::Notify,
    /// Whether a previous run left a positions file (even an empty one).
    prior_run: bool,
}

impl Positions {
    /// Loads `path`; a missing file is an empty store. A file that is not a complete
    /// positions file of this agent is an error naming the path and the way out.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        Self::open(path, false)
    }

    /// [`Positions::load`], or, with `reset_on_corrupt`, a store that starts over like a
    /// first start when the file does not parse: the bad file is kept as `<file>.corrupt`
    /// and an error is logged. Never a silent restart from offset 0.
    pub fn open(path: &Path, reset_on_corrupt: bool) -> Result<Self, AgentError> {
        let mut prior_run = path.exists();
        let records = match std::fs::read_to_string(path) {
            Ok(text) => match parse(&text) {
                Ok(records) => records,
                Err(msg) if reset_on_corrupt => {
                    let mut aside = path.as_os_str().to_os_string();
                    aside.push(".corrupt");
                    let aside = PathBuf::from(aside);
                    std::fs::rename(path, &aside)
                        .map_err(|e| AgentError::io("rename", &aside, e))?;
                    tracing::error!(path = %path.display(), kept_as = %aside.display(), reason = %msg,
                        "positions file unreadable; starting over as a first start (--positions-reset-on-corrupt)");
                    prior_run = false;
                    Vec::new()
                }
                Err(msg) => {
                    return Err(AgentError::Positions {
                        path: path.to_path_buf(),
                        msg: format!("{msg}; nothing was read. Restore the file, or start over with --positions-reset-on-corrupt (live files are read again from their start, rotated ones are skipped)"),
                    })
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(AgentError::io("read", path, e)),
        };
        let known_dirs = records
            .iter()
            .filter_map(|r| Path::new(&r.path).parent().map(Path::to_path_buf))
            .collect();
        let (done, unclaimed) = records.into_iter().partition(|r| r.done);
        Ok(Positions {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                unclaimed,
                done,
                known_dirs,
                ..Inner::default()
            }),
            save_lock: Mutex::new(()),
            changed: tokio::sync::Notify::new(),
            prior_run,
        })
    }

    /// Resolves after the store changed (an acknowledgement, a new or finished file) since
    /// the last call: the saver's cue for a group commit.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Whether a previous run of the agent left this positions file. When it did, every
    /// container directory it has no record of appeared while the agent was away, so all of
    /// that directory's files (rotated ones included) are new content, not prior history.
    pub fn prior_run(&self) -> bool {
        self.prior_run
    }

    /// Container directories that had records when the store was loaded: rotated files in
    /// them that the store does not know are new content, not history that predates us.
    pub fn known_dirs(&self) -> HashSet<PathBuf> {
        self.inner.lock().known_dirs.clone()
    }

    /// Identifies the file `dir/..` with this device+inode whose content (decompressed for
    /// `.gz`) starts with `head`. An unfinished record is claimed by inode first, then by
    /// content (a `.gz` or an atomically replaced copy of it). A file matching a tracked or
    /// done record is `Known`; by content only when `content_known` (rotated files: a copy
    /// or `.gz` of what was read shares its identity; a live file is never a copy).
    pub fn lookup(
        &self,
        dir: &Path,
        dev: u64,
        inode: u64,
        head: &[u8],
        content_known: bool,
    ) -> Lookup {
        let mut g = self.inner.lock();
        if let Some(i) = g
            .unclaimed
            .iter()
            .position(|r| r.same_inode(dev, inode, head))
        {
            return Lookup::Resume(g.unclaimed.swap_remove(i));
        }
        let tracked = g.live.values().map(|l| &l.rec);
        if tracked
            .chain(g.done.iter())
            .any(|r| r.same_inode(dev, inode, head))
        {
            return Lookup::Known;
        }
        if let Some(i) = g.unclaimed.iter().position(|r| r.same_content(dir, head)) {
            return Lookup::Resume(g.unclaimed.swap_remove(i));
        }
        let tracked = g.live.values().map(|l| &l.rec);
        if content_known
            && tracked
                .chain(g.done.iter())
                .any(|r| r.same_content(dir, head))
        {
            return Lookup::Known;
        }
        Lookup::Unknown
    }

    /// Gives back a record claimed by [`Positions::lookup`] that could not be used yet.
    pub fn unclaim(&self, rec: FileRecord) {
        self.inner.lock().unclaimed.push(rec);
    }

    /// Records a file as done without reading it (rotated history on first sight).
    pub fn ignore(&self, mut rec: FileRecord) {
        rec.done = true;
        let mut g = self.inner.lock();
        g.done.push(rec);
        g.dirty = true;
        drop(g);
        self.changed.notify_one();
    }

    /// Drops done records whose file is gone (`present` says whether it or its `.gz` is
    /// still on disk). Returns the dropped ones.
    pub fn retain_done(&self, mut present: impl FnMut(&FileRecord) -> bool) -> Vec<FileRecord> {
        let mut g = self.inner.lock();
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut g.done)
            .into_iter()
            .partition(|r| present(r));
        g.done = keep;
        g.dirty |= !gone.is_empty();
        gone
    }

    /// Forgets records no file claimed (their files are gone). Called once after the first
    /// scan. Saving waits for it, and the next save writes the file even when nothing
    /// changed: each process's first write of the file says it has looked at every
    /// directory once (tests wait for it before rotating files under a starting agent).
    pub fn prune_unclaimed(&self) -> Vec<FileRecord> {
        let mut g = self.inner.lock();
        g.scanned = true;
        g.dirty = true;
        std::mem::take(&mut g.unclaimed)
    }

    /// Starts tracking a file under the tailer's id.
    pub fn register(&self, id: u64, rec: FileRecord, size: u64) {
        let mut g = self.inner.lock();
        g.live.insert(
            id,
            Live {
                rec,
                finished_at: None,
                size,
            },
        );
        // Written with the next acknowledgement (or the periodic save), not on its own: a
        // record lost to a crash says what its absence says (read from where the old one or
        // the rules point), and a save per new or rotated file was most of the positions
        // work at everyday rates.
        g.dirty = true;
    }

    /// Updates a file's known path, size and fingerprint (tailer side).
    pub fn observe(&self, id: u64, path: Option<&str>, size: u64, fp: Option<Fingerprint>) {
        let mut g = self.inner.lock();
        if let Some(l) = g.live.get_mut(&id) {
            l.size = size;
            if let Some(p) = path {
                if l.rec.path != p {
                    l.rec.path = p.to_string();
                }
            }
            if let Some(fp) = fp {
                l.rec.fingerprint = fp;
            }
        }
    }

    /// Records that everything before `offset` was acknowledged (or dropped with a reason).
    /// Calls for one file arrive in batch order, so the offset is taken as is (it goes back
    /// to small values after a copytruncate).
    pub fn ack(&self, id: u64, offset: u64) {
        let mut g = self.inner.lock();
        let done = match g.live.get_mut(&id) {
            Some(l) => {
                l.rec.offset = offset;
                l.finished_at.is_some_and(|f| offset >= f)
            }
            None => false,
        };
        if done {
            g.retire(id);
        }
        g.dirty = true;
        drop(g);
        self.changed.notify_one();
    }

    /// The tailer read a rotated/deleted file to its end at `offset`; once that is
    /// acknowledged the record becomes a done record so the file is never read again.
    pub fn finish(&self, id: u64, offset: u64) {
        let mut g = self.inner.lock();
        let done = match g.live.get_mut(&id) {
            Some(l) => {
                l.finished_at = Some(offset);
                l.rec.offset >= offset
            }
            None => false,
        };
        if done {
            g.retire(id);
        }
        // Saved with the next acknowledgement or periodic save, like `register`: until
        // then a restart resumes the file at its acknowledged offset and finds its end.
        g.dirty = true;
    }

    /// The acknowledged offset of a tracked file.
    pub fn acked(&self, id: u64) -> Option<u64> {
        self.inner.lock().live.get(&id).map(|l| l.rec.offset)
    }

    /// `(path, size - acked offset)` of every tracked file.
    pub fn lags(&self) -> Vec<(String, u64)> {
        let g = self.inner.lock();
        g.live
            .values()
            .map(|l| (l.rec.path.clone(), l.size.saturating_sub(l.rec.offset)))
            .collect()
    }

    /// All records as they would be saved (tracked, still unclaimed, done).
    pub fn records(&self) -> Vec<FileRecord> {
        let g = self.inner.lock();
        let mut v: Vec<FileRecord> = g.live.values().map(|l| l.rec.clone()).collect();
        v.extend(g.unclaimed.iter().cloned());
        v.extend(g.done.iter().cloned());
        v.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
        v
    }

    /// Writes the store if it changed: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self) -> Result<(), AgentError> {
        let _writer = self.save_lock.lock();
        {
            let mut g = self.inner.lock();
            // Before the first scan the loaded records are all there is: nothing to add.
            if !g.dirty || !g.scanned {
                return Ok(());
            }
            g.dirty = false;
        }
        let files = self.records();
        let positions = files
            .iter()
            .map(|r| (r.path.clone(), r.offset.to_string()))
            .collect();
        let disk = OnDisk {
            version: VERSION,
            positions,
            files,
        };
        let text = render(&disk).map_err(|e| AgentError::Positions {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        let result = write_atomically(&self.path, text.as_bytes());
        if result.is_err() {
            self.inner.lock().dirty = true;
        }
        result
    }
}

impl Inner {
    /// A finished file is fully acknowledged: keep its identity as a done record.
    fn retire(&mut self, id: u64) {
        if let Some(l) = self.live.remove(&id) {
            let mut rec = l.rec;
            rec.done = true;
            self.done.push(rec);
        }
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), AgentError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| AgentError::io("create dir", &dir, e))?;
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| AgentError::io("create", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| AgentError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| AgentError::io("fsync", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io("rename", path, e))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, inode: u64, head: &[u8], offset: u64) -> FileRecord {
        FileRecord {
            path: path.into(),
            dev: 1,
            inode,
            fingerprint: Fingerprint::of(head),
            offset,
            done: false,
        }
    }

    fn adir() -> &'static Path {
        Path::new("/a")
    }

    #[test]
    fn saved_positions_round_trip_and_keep_promtail_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("positions.yaml");
        let p = Positions::load(&path).expect("load");
        p.prune_unclaimed();
        p.register(1, rec("/a/0.log", 7, b"abc\n", 0), 10);
        p.ack(1, 4);
        p.save().expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("/a/0.log: '4'") || text.contains("/a/0.log: \"4\""),
            "{text}"
        );
        let q = Positions::load(&path).expect("reload");
        assert_eq!(
            q.lookup(adir(), 1, 7, b"abc\ndef\n", false),
            Lookup::Resume(rec("/a/0.log", 7, b"abc\n", 4))
        );
    }

    #[test]
    fn reused_inode_with_other_content_does_not_claim_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yaml");
        let p = Positions::load(&path).expect("load");
        p.prune_unclaimed();
        p.register(1, rec("/a/0.log", 7, b"old content\n", 5), 12);
        p.save().expect("save");
        let q = Positions::load(&path).expect("reload");
        assert_eq!(
            q.lookup(adir(), 1, 7, b"new content\n", true),
            Lookup::Unknown
        );
        // Its .gz (another inode, same content) resumes it; in another directory it does not.
        assert_eq!(
            q.lookup(Path::new("/b"), 1, 9, b"old content\nmore", true),
            Lookup::Unknown
        );
        assert!(matches!(
            q.lookup(adir(), 1, 9, b"old content\nmore", true),
            Lookup::Resume(_)
        ));
    }

    #[test]
    fn a_fingerprint_shorter_than_a_line_never_claims_other_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Positions::load(&dir.path().join("p.yaml")).expect("load");
        // The live file holds only the first half of a CRI line so far.
        p.register(1, rec("/a/0.log", 7, b"2024-05-01T10:00:00.0000", 0), 24);
        let other = b"2024-05-01T10:00:00.000000000Z stdout F line-0\n";
        assert_eq!(p.lookup(adir(), 1, 9, other, true), Lookup::Unknown);
        // A whole first line does identify content (a rotated copy of the file).
        p.register(2, rec("/a/1.log", 8, &other[..], 0), 47);
        assert_eq!(p.lookup(adir(), 1, 10, other, true), Lookup::Known);
    }

    #[test]
    fn finished_file_is_forgotten_once_fully_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Positions::load(&dir.path().join("p.yaml")).expect("load");
        p.register(1, rec("/a/0.log.1", 7, b"x\n", 0), 10);
        p.finish(1, 10);
        assert_eq!(p.acked(1), Some(0));
        p.ack(1, 6);
        assert_eq!(p.acked(1), Some(6));
        p.ack(1, 10);
        assert_eq!(p.acked(1), None);
        // Still known (by inode, and by content for its .gz) until it leaves the disk.
        assert_eq!(p.lookup(adir(), 1, 7, b"x\n", true), Lookup::Known);
        assert_eq!(p.lookup(adir(), 1, 8, b"x\n", true), Lookup::Known);
        // A live file is never taken for a copy of a finished one.
        assert_eq!(p.lookup(adir(), 1, 8, b"x\n", false), Lookup::Unknown);
        assert_eq!(p.retain_done(|_| true).len(), 0);
        assert_eq!(p.retain_done(|_| false).len(), 1);
        assert_eq!(p.lookup(adir(), 1, 7, b"x\n", true), Lookup::Unknown);
    }

    #[test]
    fn done_records_survive_a_restart_and_version_1_files_load() {
        let dir_ = tempfile::tempdir().expect("tempdir");
        let path = dir_.path().join("p.yaml");
        let p = Positions::load(&path).expect("load");
        p.prune_unclaimed();
        p.register(1, rec("/a/0.log.1", 7, b"x\n", 0), 2);
        p.finish(1, 2);
        p.ack(1, 2);
        p.register(2, rec("/a/0.log", 8, b"y\n", 2), 2);
        p.save().expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("version: 3") && text.contains("done: true"),
            "{text}"
        );
        let q = Positions::load(&path).expect("reload");
        assert!(q.known_dirs().contains(Path::new("/a")));
        assert_eq!(q.lookup(adir(), 1, 7, b"x\n", true), Lookup::Known);
        assert!(matches!(
            q.lookup(adir(), 1, 8, b"y\n", false),
            Lookup::Resume(_)
        ));
        // A version 1 file (no `done`) is read as before.
        std::fs::write(
            &path,
            "version: 1\npositions:\n  /a/0.log: '2'\nfiles:\n- path: /a/0.log\n  dev: 1\n  inode: 8\n  fingerprint: { bytes: 2, crc32: 0 }\n  offset: 2\n",
        )
        .expect("write v1");
        let v1 = Positions::load(&path).expect("load v1");
        assert_eq!(v1.records().len(), 1);
        assert!(!v1.records()[0].done);
    }

    #[test]
    fn empty_done_record_does_not_hide_new_content_on_a_reused_inode() {
        let dir_ = tempfile::tempdir().expect("tempdir");
        let p = Positions::load(&dir_.path().join("p.yaml")).expect("load");
        p.ignore(rec("/a/0.log.1", 7, b"", 0));
        assert_eq!(p.lookup(adir(), 1, 7, b"", true), Lookup::Known);
        assert_eq!(p.lookup(adir(), 1, 7, b"new\n", true), Lookup::Unknown);
    }

    #[test]
    fn corrupt_positions_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, "positions: [unclosed").expect("write");
        assert!(Positions::load(&path).is_err());
    }

    /// A saved file with two records, as text.
    fn saved_text(dir: &Path) -> String {
        let path = dir.join("full.yaml");
        let p = Positions::load(&path).expect("load");
        p.prune_unclaimed();
        p.register(1, rec("/a/0.log", 7, b"abc\n", 0), 10);
        p.register(2, rec("/a/1.log", 8, b"def\n", 0), 10);
        p.ack(1, 4);
        p.save().expect("save");
        std::fs::read_to_string(&path).expect("read")
    }

    fn load_error(dir: &Path, text: &str) -> String {
        let path = dir.join("p.yaml");
        std::fs::write(&path, text).expect("write");
        match Positions::load(&path) {
            Ok(p) => panic!("{text:?} loaded as {:?}", p.records()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_foreign_and_cut_short_files_are_errors_naming_the_path_and_the_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yaml").display().to_string();
        for text in ["", "\n  \n", "foo: bar\n", "positions:\n  /a/0.log: '4'\n"] {
            let e = load_error(dir.path(), text);
            assert!(e.contains(&path), "{e}");
            assert!(e.contains("--positions-reset-on-corrupt"), "{e}");
        }
        // Cut at any line boundary (what a torn non-atomic write leaves): refused.
        let full = saved_text(dir.path());
        let ends: Vec<usize> = full.match_indices('\n').map(|(i, _)| i + 1).collect();
        assert!(ends.len() > 10, "{full}");
        for &end in &ends[..ends.len() - 1] {
            load_error(dir.path(), &full[..end]);
        }
        // One changed byte: refused too.
        load_error(dir.path(), &full.replacen("inode: 8", "inode: 9", 1));
        // The whole file loads.
        std::fs::write(dir.path().join("p.yaml"), &full).expect("write");
        assert_eq!(
            Positions::load(&dir.path().join("p.yaml"))
                .expect("load")
                .records()
                .len(),
            2
        );
    }

    #[test]
    fn reset_on_corrupt_keeps_the_bad_file_aside_and_starts_as_a_first_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, "foo: bar\n").expect("write");
        let p = Positions::open(&path, true).expect("reset");
        assert!(p.records().is_empty());
        assert!(!p.prior_run(), "treated as a first start");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("p.yaml.corrupt")).expect("kept"),
            "foo: bar\n"
        );
        // A good file is loaded as usual with the flag.
        std::fs::write(&path, saved_text(dir.path())).expect("write");
        assert_eq!(
            Positions::open(&path, true).expect("load").records().len(),
            2
        );
    }
}
