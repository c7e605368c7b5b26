//! Promtail positions (`legacy_positions_file`): where to start a file this agent has no
//! position for, on its first start on a node.
//!
//! Promtail's file is `positions:` mapping a path to the byte offset it had shipped, as a
//! string (`/var/log/pods/ns_pod_uid/c/0.log: "1234"`); other keys (`journal-…`/`cursor-…`
//! journal cursors) are not files and never match one. Like Alloy, a missing, empty or invalid
//! file converts nothing (a warning says why) and it is consulted only when the agent has no
//! positions file of its own yet.
//!
//! An offset names a path, not a file, so it is checked before it is used. The file Promtail
//! was reading is the one at the path when Promtail last saved its positions (the file's
//! mtime), so:
//! - a rotated sibling (`0.log.<ts>`) renamed since then (its ctime is not older than the
//!   save) held that file, the earliest such one; files renamed after it and the file now at
//!   the path are content Promtail never saw and are read from 0; siblings renamed before the
//!   save are history Promtail had read (the first-start rule ignores them);
//! - with no such sibling, the file at the path is Promtail's unless it was created after the
//!   save (where the filesystem reports a birth time);
//! - the offset must not be beyond the file's size and must start a line; otherwise the file
//!   is read from 0 (duplicates rather than loss).
//!
//! `.gz` siblings are left to the tailer's ordinary rules.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// Where the tailer starts a file a Promtail position covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Read from this offset.
    At(u64),
    /// Rotated before Promtail stopped: history it had read (recorded done, not read).
    History,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    #[serde(default)]
    positions: Option<HashMap<String, serde_norway::Value>>,
}

#[derive(Debug, Clone)]
struct Entry {
    offset: u64,
    /// When Promtail last wrote the positions file.
    saved_at: SystemTime,
    /// Already handed to a file: a position applies once.
    used: bool,
}

/// Which file held a path when Promtail saved: the live one, or a sibling renamed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Live,
    Rotated { dev: u64, inode: u64 },
}

/// The Promtail positions of one or more files, loaded once at startup.
#[derive(Debug, Default)]
pub struct LegacyPositions {
    entries: HashMap<PathBuf, Entry>,
    owners: HashMap<PathBuf, Owner>,
}

impl LegacyPositions {
    /// Loads every file; one that is missing, empty or invalid is skipped with a warning.
    /// `/var/log/pods` paths are rebased onto `pods_root`, as the config's paths are.
    pub fn load(files: &[PathBuf], pods_root: &Path) -> LegacyPositions {
        let mut out = LegacyPositions::default();
        for f in files {
            match read_file(f) {
                Ok(Some((saved_at, map))) => {
                    tracing::info!(path = %f.display(), files = map.len(), "using Promtail positions for files without a position of their own");
                    for (path, offset) in map {
                        let path = PathBuf::from(crate::alloy::targets::rebase(
                            &path.to_string_lossy(),
                            pods_root,
                        ));
                        out.entries.entry(path).or_insert(Entry {
                            offset,
                            saved_at,
                            used: false,
                        });
                    }
                }
                Ok(None) => {
                    tracing::info!(path = %f.display(), "no Promtail positions file (or it is empty): nothing to convert");
                }
                Err(e) => {
                    tracing::warn!(path = %f.display(), error = %e, "Promtail positions file not used");
                }
            }
        }
        out
    }

    /// Whether no position was loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where to start `path` (`file`, a rotated sibling when `rotated`), or `None` when no
    /// Promtail position covers it.
    pub fn start_for(&mut self, path: &Path, rotated: bool, file: &File) -> Option<Start> {
        let live = if rotated {
            self.live_path_of(path)?
        } else {
            path.to_path_buf()
        };
        let entry = self.entries.get(&live)?.clone();
        let owner = *self
            .owners
            .entry(live.clone())
            .or_insert_with(|| owner_of(&live, entry.saved_at));
        let md = file.metadata().ok()?;
        let mine = match owner {
            Owner::Live => !rotated,
            Owner::Rotated { dev, inode } => rotated && md.dev() == dev && md.ino() == inode,
        };
        if !mine {
            if rotated && changed_at(&md) < entry.saved_at {
                return Some(Start::History);
            }
            tracing::info!(path = %path.display(), "file rotated in after Promtail stopped; reading it from the start");
            return Some(Start::At(0));
        }
        if entry.used {
            return Some(Start::At(0));
        }
        if let Some(e) = self.entries.get_mut(&live) {
            e.used = true;
        }
        if !rotated && md.created().is_ok_and(|b| b > entry.saved_at) {
            tracing::info!(path = %path.display(), "file created after Promtail's last save; reading it from the start");
            return Some(Start::At(0));
        }
        match check_offset(file, md.len(), entry.offset) {
            Ok(()) => {
                tracing::info!(path = %path.display(), offset = entry.offset, "resuming from Promtail's position");
                Some(Start::At(entry.offset))
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), offset = entry.offset, reason = why, "Promtail's position does not fit this file; reading it from the start");
                Some(Start::At(0))
            }
        }
    }

    /// The legacy key whose file a rotated `path` was: same directory, `<key name>.<suffix>`.
    fn live_path_of(&self, path: &Path) -> Option<PathBuf> {
        let dir = path.parent()?;
        let name = path.file_name()?.to_str()?;
        self.entries
            .keys()
            .filter(|k| k.parent() == Some(dir))
            .filter_map(|k| Some((k, k.file_name()?.to_str()?)))
            .filter(|(_, base)| {
                name.strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
            .max_by_key(|(_, base)| base.len())
            .map(|(k, _)| k.clone())
    }
}

/// A Promtail positions file: when it was saved, and the file offsets it holds.
type Saved = (SystemTime, Vec<(PathBuf, u64)>);

/// Reads a Promtail positions file; `None` when it is missing or empty.
fn read_file(path: &Path) -> Result<Option<Saved>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let saved_at = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| e.to_string())?;
    let disk: OnDisk = serde_norway::from_str(&text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (key, value) in disk.positions.unwrap_or_default() {
        // Journal cursors and anything else that is not an absolute path name no file.
        if !key.starts_with('/') {
            continue;
        }
        let offset = match &value {
            serde_norway::Value::String(s) => s.trim().parse::<u64>().ok(),
            serde_norway::Value::Number(n) => n.as_u64(),
            _ => None,
        };
        match offset {
            Some(o) => out.push((PathBuf::from(key), o)),
            None => {
                tracing::warn!(path = %key, value = ?value, "Promtail position is not a byte offset; ignored");
            }
        }
    }
    Ok(Some((saved_at, out)))
}

/// Which file held `live` when Promtail saved at `saved_at` (see the module docs).
fn owner_of(live: &Path, saved_at: SystemTime) -> Owner {
    let (Some(dir), Some(base)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else {
        return Owner::Live;
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Owner::Live;
    };
    let mut best: Option<(SystemTime, Owner)> = None;
    for de in rd.flatten() {
        let name = de.file_name();
        let Some(name) = name.to_str() else { continue };
        let rotated = name
            .strip_prefix(base)
            .is_some_and(|r| r.starts_with('.') && !r.ends_with(".gz") && !r.ends_with(".tmp"));
        if !rotated {
            continue;
        }
        let Ok(md) = de.metadata() else { continue };
        if !md.is_file() {
            continue;
        }
        let renamed = changed_at(&md);
        let existed = md.created().map_or(true, |b| b <= saved_at);
        if renamed >= saved_at && existed && best.is_none_or(|(t, _)| renamed < t) {
            best = Some((
                renamed,
                Owner::Rotated {
                    dev: md.dev(),
                    inode: md.ino(),
                },
            ));
        }
    }
    best.map_or(Owner::Live, |(_, o)| o)
}

/// The inode change time: for a rotated file, when it was renamed (no writes follow).
fn changed_at(md: &Metadata) -> SystemTime {
    let secs = u64::try_from(md.ctime()).unwrap_or(0);
    let nanos = u32::try_from(md.ctime_nsec()).unwrap_or(0);
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// The offset is within the file and starts a line.
fn check_offset(file: &File, size: u64, offset: u64) -> Result<(), &'static str> {
    if offset > size {
        return Err("offset beyond the end of the file");
    }
    if offset == 0 {
        return Ok(());
    }
    let mut b = [0u8; 1];
    match file.read_at(&mut b, offset - 1) {
        Ok(1) if b[0] == b'\n' => Ok(()),
        Ok(_) => Err("offset is not at the start of a line"),
        Err(_) => Err("file unreadable at the offset"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(path: &Path, text: &str) {
        let mut f = File::create(path).expect("create");
        f.write_all(text.as_bytes()).expect("write");
    }

    #[test]
    fn reads_promtail_offsets_and_skips_cursors_and_junk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("positions.yaml");
        write(
            &p,
            "positions:\n  /var/log/a.log: \"17623\"\n  /var/log/b.log: 12\n  journal-varlogs: \"s=abc\"\n  /var/log/c.log: \"x\"\n",
        );
        let (_, mut got) = read_file(&p).expect("parse").expect("some");
        got.sort();
        assert_eq!(
            got,
            vec![
                (PathBuf::from("/var/log/a.log"), 17623),
                (PathBuf::from("/var/log/b.log"), 12)
            ]
        );
    }

    #[test]
    fn missing_empty_and_invalid_files_convert_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.yaml");
        assert_eq!(read_file(&missing), Ok(None));
        let empty = dir.path().join("empty.yaml");
        write(&empty, "\n");
        assert_eq!(read_file(&empty), Ok(None));
        let bad = dir.path().join("bad.yaml");
        write(&bad, "positions: [1, 2\n");
        assert!(read_file(&bad).is_err());
        let unknown = dir.path().join("unknown.yaml");
        write(&unknown, "positionz:\n  /a: \"1\"\n");
        assert!(read_file(&unknown).is_err());
        assert!(LegacyPositions::load(&[missing, empty, bad, unknown], Path::new("/")).is_empty());
    }

    #[test]
    fn offset_must_fit_the_file_and_start_a_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log");
        write(&log, "one\ntwo\n");
        let f = File::open(&log).expect("open");
        assert_eq!(check_offset(&f, 8, 0), Ok(()));
        assert_eq!(check_offset(&f, 8, 4), Ok(()));
        assert_eq!(check_offset(&f, 8, 8), Ok(()));
        assert!(check_offset(&f, 8, 5).is_err());
        assert!(check_offset(&f, 8, 9).is_err());
    }

    fn legacy_for(log: &Path, offset: u64, positions: &Path) -> LegacyPositions {
        write(
            positions,
            &format!("positions:\n  {}: \"{offset}\"\n", log.display()),
        );
        LegacyPositions::load(&[positions.to_path_buf()], Path::new("/"))
    }

    #[test]
    fn the_live_file_resumes_once_and_a_bad_offset_starts_at_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log");
        write(&log, "one\ntwo\nthree\n");
        let mut l = legacy_for(&log, 4, &dir.path().join("p.yaml"));
        let f = File::open(&log).expect("open");
        assert_eq!(l.start_for(&log, false, &f), Some(Start::At(4)));
        // A position applies to one file only.
        assert_eq!(l.start_for(&log, false, &f), Some(Start::At(0)));
        let mut l = legacy_for(&log, 5, &dir.path().join("p2.yaml"));
        assert_eq!(l.start_for(&log, false, &f), Some(Start::At(0)));
        let other = dir.path().join("1.log");
        write(&other, "x\n");
        let f = File::open(&other).expect("open");
        assert_eq!(l.start_for(&other, false, &f), None);
    }

    /// Waits until the filesystem clock (as file times show it) has moved past `t`, so two
    /// events are ordered in file times too (they are coarse: a few ms).
    fn fs_clock_past(dir: &Path, t: SystemTime) {
        let probe = dir.join("probe");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            write(&probe, "x");
            let md = std::fs::metadata(&probe).expect("probe");
            if changed_at(&md) > t {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "file clock stuck");
        }
    }

    #[test]
    fn after_a_rotation_the_renamed_file_resumes_and_the_new_one_starts_at_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log");
        let old = dir.path().join("0.log.20261203-100000");
        // Rotated before Promtail's last save: history it had read.
        write(&old, "before promtail\n");
        fs_clock_past(
            dir.path(),
            changed_at(&std::fs::metadata(&old).expect("md")),
        );
        write(&log, "one\ntwo\nthree\n");
        let positions = dir.path().join("p.yaml");
        write(
            &positions,
            &format!("positions:\n  {}: \"8\"\n", log.display()),
        );
        let saved = std::fs::metadata(&positions)
            .and_then(|m| m.modified())
            .expect("mtime");
        fs_clock_past(dir.path(), saved);
        // Promtail stopped; the kubelet rotates; a new file starts at the path.
        let rotated = dir.path().join("0.log.20261203-110000");
        std::fs::rename(&log, &rotated).expect("rotate");
        write(&log, "new\n");
        let later = dir.path().join("0.log.20261203-120000");
        std::fs::rename(&log, &later).expect("rotate again");
        write(&log, "newest\n");

        let mut l = LegacyPositions::load(&[positions], Path::new("/"));
        let open = |p: &Path| File::open(p).expect("open");
        assert_eq!(l.start_for(&log, false, &open(&log)), Some(Start::At(0)));
        assert_eq!(l.start_for(&later, true, &open(&later)), Some(Start::At(0)));
        assert_eq!(
            l.start_for(&rotated, true, &open(&rotated)),
            Some(Start::At(8))
        );
        assert_eq!(l.start_for(&old, true, &open(&old)), Some(Start::History));
    }
}
