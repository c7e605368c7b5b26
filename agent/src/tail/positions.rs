//! Acknowledged file positions, persisted atomically in a Promtail-compatible YAML file.
//!
//! ```yaml
//! version: 1
//! positions:                      # Promtail's shape: path -> acknowledged offset
//!   /var/log/pods/ns_pod_uid/c/0.log: "1234"
//! files:                          # what the agent resumes from: identity + offset
//! - path: /var/log/pods/ns_pod_uid/c/0.log
//!   dev: 2049
//!   inode: 393231
//!   fingerprint: { bytes: 1024, crc32: 2557226012 }
//!   offset: 1234
//! ```
//!
//! Offsets move only when the sender reports a batch acknowledged (or dropped with a counted
//! reason). A rotated file whose last byte is acknowledged is forgotten, which is what keeps it
//! (and its `.gz`) from being read again.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use crate::error::AgentError;

/// The current file format version.
const VERSION: u32 = 1;

/// One file's stored identity and acknowledged offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    pub fingerprint: Fingerprint,
    pub offset: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    positions: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<FileRecord>,
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
}

impl Positions {
    /// Loads `path`; a missing file is an empty store. Corrupt YAML is an error (like Alloy),
    /// because silently starting over would re-ship every file.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let unclaimed = match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Vec::new(),
            Ok(text) => {
                let disk: OnDisk =
                    serde_norway::from_str(&text).map_err(|e| AgentError::Positions {
                        path: path.to_path_buf(),
                        msg: e.to_string(),
                    })?;
                if disk.version > VERSION {
                    return Err(AgentError::Positions {
                        path: path.to_path_buf(),
                        msg: format!(
                            "version {} is newer than this agent ({VERSION})",
                            disk.version
                        ),
                    });
                }
                disk.files
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(AgentError::io("read", path, e)),
        };
        Ok(Positions {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                unclaimed,
                ..Inner::default()
            }),
            save_lock: Mutex::new(()),
        })
    }

    /// Claims the stored record of the file with this device+inode whose content starts with
    /// `head` (an inode reused by a different file does not match).
    pub fn claim_by_inode(&self, dev: u64, inode: u64, head: &[u8]) -> Option<FileRecord> {
        let mut g = self.inner.lock();
        let i = g
            .unclaimed
            .iter()
            .position(|r| r.dev == dev && r.inode == inode && r.fingerprint.matches(head))?;
        Some(g.unclaimed.swap_remove(i))
    }

    /// Claims a stored record whose content starts with `head`, whatever its inode: how an
    /// unfinished file is found again inside its `.gz`. Empty fingerprints never match here.
    pub fn claim_by_content(&self, head: &[u8]) -> Option<FileRecord> {
        let mut g = self.inner.lock();
        let i = g
            .unclaimed
            .iter()
            .position(|r| r.fingerprint.bytes > 0 && r.fingerprint.matches(head))?;
        Some(g.unclaimed.swap_remove(i))
    }

    /// Forgets records no file claimed (their files are gone).
    pub fn prune_unclaimed(&self) -> Vec<FileRecord> {
        let mut g = self.inner.lock();
        g.dirty |= !g.unclaimed.is_empty();
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
            g.live.remove(&id);
        }
        g.dirty = true;
    }

    /// The tailer read a rotated/deleted file to its end at `offset`; once that is
    /// acknowledged the record is dropped so the file is never read again.
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
            g.live.remove(&id);
        }
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

    /// All records as they would be saved (tracked first, then still unclaimed).
    pub fn records(&self) -> Vec<FileRecord> {
        let g = self.inner.lock();
        let mut v: Vec<FileRecord> = g.live.values().map(|l| l.rec.clone()).collect();
        v.extend(g.unclaimed.iter().cloned());
        v.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
        v
    }

    /// Writes the store if it changed: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self) -> Result<(), AgentError> {
        let _writer = self.save_lock.lock();
        {
            let mut g = self.inner.lock();
            if !g.dirty {
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
        let text = serde_norway::to_string(&disk).map_err(|e| AgentError::Positions {
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
        }
    }

    #[test]
    fn saved_positions_round_trip_and_keep_promtail_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("positions.yaml");
        let p = Positions::load(&path).expect("load");
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
            q.claim_by_inode(1, 7, b"abc\ndef\n"),
            Some(rec("/a/0.log", 7, b"abc\n", 4))
        );
    }

    #[test]
    fn reused_inode_with_other_content_does_not_claim_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yaml");
        let p = Positions::load(&path).expect("load");
        p.register(1, rec("/a/0.log", 7, b"old content\n", 5), 12);
        p.save().expect("save");
        let q = Positions::load(&path).expect("reload");
        assert_eq!(q.claim_by_inode(1, 7, b"new content\n"), None);
        assert!(q.claim_by_content(b"old content\nmore").is_some());
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
    }

    #[test]
    fn corrupt_positions_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, "positions: [unclosed").expect("write");
        assert!(Positions::load(&path).is_err());
    }
}
