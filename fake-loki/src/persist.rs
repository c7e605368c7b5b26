//! `--data-dir`: an append-only, checksummed log per tenant, replayed on start, so a
//! restart loses nothing that was acknowledged.
//!
//! Record: `u32 LE payload length | u32 LE CRC-32 of the payload | payload`, where the
//! payload is a protobuf `PushRequest` of the entries that one push newly stored (labels
//! in canonical form, structured metadata as stored). Records are written before the
//! push is answered. A record that fails its length or checksum is skipped: replay
//! resynchronises on the next offset where an intact record starts, so every intact
//! record after damage is kept. Only damage that runs to the end of the file (a torn
//! tail from a crash mid-write) is cut off. Both are reported; neither stops the start.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use loki_wire::PushRequest;
use prost::Message;

use crate::Error;

const HEADER: usize = 8;

/// One tenant's replayed records.
pub struct Replayed {
    pub tenant: String,
    pub requests: Vec<PushRequest>,
    /// Bytes cut from a torn tail, if any.
    pub truncated_bytes: u64,
    /// Damaged regions skipped before intact records (left in the file).
    pub corrupt_regions: u64,
    /// Bytes in those regions.
    pub corrupt_bytes: u64,
}

/// The open data directory.
pub struct DataDir {
    dir: PathBuf,
    files: HashMap<String, File>,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::DataDir(format!("{}: {e}", path.display()))
}

impl DataDir {
    /// Opens (creating) `dir` and replays every tenant's log.
    pub fn open(dir: &Path) -> Result<(DataDir, Vec<Replayed>), Error> {
        let tenants_dir = dir.join("tenants");
        std::fs::create_dir_all(&tenants_dir).map_err(|e| io_err(&tenants_dir, e))?;
        let mut replayed = Vec::new();
        let entries = std::fs::read_dir(&tenants_dir).map_err(|e| io_err(&tenants_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&tenants_dir, e))?;
            let path = entry.path();
            let Some(tenant) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
            else {
                continue;
            };
            replayed.push(replay_file(&path, tenant)?);
        }
        replayed.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Ok((
            DataDir {
                dir: tenants_dir,
                files: HashMap::new(),
            },
            replayed,
        ))
    }

    /// Appends one record for `tenant`.
    pub fn append(&mut self, tenant: &str, req: &PushRequest) -> Result<(), Error> {
        let payload = req.encode_to_vec();
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        let path = self.dir.join(format!("{tenant}.wal"));
        let file = match self.files.get_mut(tenant) {
            Some(f) => f,
            None => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_err(&path, e))?;
                self.files.entry(tenant.to_string()).or_insert(f)
            }
        };
        file.write_all(&rec).map_err(|e| io_err(&path, e))
    }

    /// Flushes every log to disk.
    pub fn sync(&mut self) -> Result<(), Error> {
        for (t, f) in &self.files {
            f.sync_data()
                .map_err(|e| Error::DataDir(format!("{t}: {e}")))?;
        }
        Ok(())
    }
}

/// The record at `pos`, if one intact record starts there: the request and its size.
fn record_at(data: &Bytes, pos: usize) -> Option<(PushRequest, usize)> {
    let header = data.get(pos..pos.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let end = (pos + HEADER)
        .checked_add(len)
        .filter(|e| *e <= data.len())?;
    let payload = data.slice(pos + HEADER..end);
    if crc32fast::hash(&payload) != crc {
        return None;
    }
    let req = PushRequest::decode(payload).ok()?;
    Some((req, HEADER + len))
}

/// The next offset after `from` where an intact record starts. Every record holds at
/// least one stream, so its payload starts with field 1's tag (0x0a): a cheap filter
/// before the checksum.
fn resync(data: &Bytes, from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(HEADER))
        .find(|&p| data.get(p + HEADER) == Some(&0x0a) && record_at(data, p).is_some())
}

fn replay_file(path: &Path, tenant: &str) -> Result<Replayed, Error> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| io_err(path, e))?;
    let data = Bytes::from(data);
    let mut requests = Vec::new();
    let mut pos = 0usize;
    let (mut corrupt_regions, mut corrupt_bytes) = (0u64, 0u64);
    while pos < data.len() {
        if let Some((req, used)) = record_at(&data, pos) {
            requests.push(req);
            pos += used;
            continue;
        }
        match resync(&data, pos + 1) {
            Some(next) => {
                corrupt_regions += 1;
                corrupt_bytes += (next - pos) as u64;
                pos = next;
            }
            None => break,
        }
    }
    if corrupt_regions > 0 {
        tracing::warn!(
            path = %path.display(),
            corrupt_regions,
            corrupt_bytes,
            kept_records = requests.len(),
            "skipped corrupt records in the data-dir log; the intact records after them are kept"
        );
    }
    let truncated_bytes = (data.len() - pos) as u64;
    if truncated_bytes > 0 {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        f.set_len(pos as u64).map_err(|e| io_err(path, e))?;
        tracing::warn!(
            path = %path.display(),
            truncated_bytes,
            "cut a torn or corrupt tail (no intact record after it) from the data-dir log"
        );
    }
    Ok(Replayed {
        tenant: tenant.to_string(),
        requests,
        truncated_bytes,
        corrupt_regions,
        corrupt_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use loki_wire::{EntryAdapter, StreamAdapter, Timestamp};

    fn req(line: &str) -> PushRequest {
        PushRequest {
            streams: vec![StreamAdapter {
                labels: "{a=\"b\"}".into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp::from_unix_nanos(7)),
                    line: Bytes::from(line.to_string()),
                    structured_metadata: vec![],
                    parsed: vec![],
                }],
                hash: 0,
            }],
            format: String::new(),
        }
    }

    #[test]
    fn replays_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut d, r) = DataDir::open(dir.path()).unwrap();
            assert!(r.is_empty());
            d.append("t1", &req("one")).unwrap();
            d.append("t1", &req("two")).unwrap();
            d.append("t2", &req("three")).unwrap();
        }
        let (_, r) = DataDir::open(dir.path()).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].tenant, "t1");
        assert_eq!(r[0].requests, vec![req("one"), req("two")]);
        assert_eq!(r[1].requests, vec![req("three")]);
    }

    #[test]
    fn torn_tail_is_cut_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut d, _) = DataDir::open(dir.path()).unwrap();
            d.append("t", &req("kept")).unwrap();
            d.append("t", &req("torn")).unwrap();
        }
        let path = dir.path().join("tenants/t.wal");
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let (mut d, r) = DataDir::open(dir.path()).unwrap();
        assert_eq!(r[0].requests, vec![req("kept")]);
        assert!(r[0].truncated_bytes > 0);
        // Appends after the cut replay cleanly.
        d.append("t", &req("after")).unwrap();
        drop(d);
        let (_, r) = DataDir::open(dir.path()).unwrap();
        assert_eq!(r[0].requests, vec![req("kept"), req("after")]);
        assert_eq!(r[0].truncated_bytes, 0);
    }

    #[test]
    fn corrupt_checksum_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut d, _) = DataDir::open(dir.path()).unwrap();
            d.append("t", &req("kept")).unwrap();
            d.append("t", &req("flipped")).unwrap();
        }
        let path = dir.path().join("tenants/t.wal");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (_, r) = DataDir::open(dir.path()).unwrap();
        assert_eq!(r[0].requests, vec![req("kept")]);
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..20).map(|i| format!("line {i:02}")).collect();
        {
            let (mut d, _) = DataDir::open(dir.path()).unwrap();
            for l in &lines {
                d.append("t", &req(l)).unwrap();
            }
        }
        let path = dir.path().join("tenants/t.wal");
        let clean = std::fs::read(&path).unwrap();
        let rec_len = clean.len() / 20;
        // Every byte position of record 5 (header or payload) in turn.
        for off in 0..rec_len {
            let mut bytes = clean.clone();
            bytes[5 * rec_len + off] ^= 0x5a;
            std::fs::write(&path, &bytes).unwrap();
            let (_, r) = DataDir::open(dir.path()).unwrap();
            let want: Vec<PushRequest> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 5)
                .map(|(_, l)| req(l))
                .collect();
            assert_eq!(r[0].requests, want, "flip at {off}");
            assert_eq!((r[0].corrupt_regions, r[0].truncated_bytes), (1, 0));
            assert_eq!(r[0].corrupt_bytes, rec_len as u64);
            // Intact data is never cut: the file keeps its length.
            assert_eq!(std::fs::metadata(&path).unwrap().len(), clean.len() as u64);
        }
    }
}
