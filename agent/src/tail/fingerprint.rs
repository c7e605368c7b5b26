//! File identity by content: a CRC32 of the first up-to-1024 bytes (decompressed for `.gz`).
//!
//! Device+inode finds a file after a rename; the fingerprint tells a reused inode apart from
//! the original and finds the original's content again inside its gzipped copy.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// How many leading bytes identify a file.
pub const FINGERPRINT_BYTES: usize = 1024;

/// CRC32 of the first `bytes` bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub bytes: u32,
    pub crc32: u32,
}

impl Fingerprint {
    /// The fingerprint of a file whose first bytes are `head` (at most [`FINGERPRINT_BYTES`] used).
    pub fn of(head: &[u8]) -> Self {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        Fingerprint {
            bytes: head.len() as u32,
            crc32: crc32fast::hash(head),
        }
    }

    /// Whether a file starting with `head` is the file this fingerprint was taken from.
    /// A short fingerprint compares as a prefix: the file may have grown since.
    pub fn matches(&self, head: &[u8]) -> bool {
        let n = self.bytes as usize;
        head.len() >= n && crc32fast::hash(&head[..n]) == self.crc32
    }

    /// Whether it covers the whole identifying prefix (no need to recompute as the file grows).
    pub fn is_complete(&self) -> bool {
        self.bytes as usize >= FINGERPRINT_BYTES
    }
}

/// The first up-to-1024 bytes of a plain file.
pub fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The first up-to-1024 decompressed bytes of a gzip file (read from its start).
pub fn read_gz_head(file: &File) -> io::Result<Vec<u8>> {
    let mut file = file.try_clone()?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
    let mut dec =
        flate2::read::MultiGzDecoder::new(io::BufReader::new(file)).take(FINGERPRINT_BYTES as u64);
    let mut buf = Vec::with_capacity(FINGERPRINT_BYTES);
    dec.read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_fingerprint_matches_grown_file_but_not_other_content() {
        let fp = Fingerprint::of(b"hello\n");
        assert!(fp.matches(b"hello\nworld\n"));
        assert!(!fp.matches(b"hellO\nworld\n"));
        assert!(!fp.matches(b"hel"));
        let long = vec![b'x'; 4096];
        let fp = Fingerprint::of(&long);
        assert_eq!(fp.bytes as usize, FINGERPRINT_BYTES);
        assert!(fp.is_complete());
        assert!(fp.matches(&long));
    }
}
