//! `Content-Encoding` of push bodies, as Loki applies it before looking at the type:
//! `gzip` and `deflate` are inflated, empty and `snappy` are no-ops (the snappy block
//! of a protobuf body is undone by the protobuf path), anything else is refused.
//!
//! Loki's `deflate` is Go's `compress/flate`: raw DEFLATE (RFC 1951) with no zlib header.

use std::io::Read;

use crate::WireError;

/// The encodings a push body may arrive with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
}

impl ContentEncoding {
    /// Reads a `Content-Encoding` header value (absent = empty).
    pub fn from_header(value: &str) -> Result<Self, WireError> {
        match value {
            "" | "snappy" => Ok(ContentEncoding::Identity),
            "gzip" => Ok(ContentEncoding::Gzip),
            "deflate" => Ok(ContentEncoding::Deflate),
            other => Err(WireError::UnsupportedEncoding(other.to_string())),
        }
    }
}

/// Undoes the content encoding, refusing outputs above `max_len` bytes.
pub fn decode(
    body: &[u8],
    encoding: ContentEncoding,
    max_len: usize,
) -> Result<Vec<u8>, WireError> {
    match encoding {
        ContentEncoding::Identity => Ok(body.to_vec()),
        ContentEncoding::Gzip => {
            read_limited(flate2::read::MultiGzDecoder::new(body), max_len, "gzip")
        }
        ContentEncoding::Deflate => {
            read_limited(flate2::read::DeflateDecoder::new(body), max_len, "flate")
        }
    }
}

fn read_limited(reader: impl Read, max_len: usize, what: &str) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    // Read one byte past the limit so an exactly-full body is told apart from an overflow.
    let limit = u64::try_from(max_len).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| WireError::Decompress(format!("{what}: {e}")))?;
    if out.len() > max_len {
        return Err(WireError::DecompressedTooLarge { max: max_len });
    }
    Ok(out)
}

/// Gzips `data` (used by clients and tests).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Raw-deflates `data` (used by clients and tests).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_values() {
        assert_eq!(
            ContentEncoding::from_header("").unwrap(),
            ContentEncoding::Identity
        );
        assert_eq!(
            ContentEncoding::from_header("snappy").unwrap(),
            ContentEncoding::Identity
        );
        assert_eq!(
            ContentEncoding::from_header("br").unwrap_err().to_string(),
            "Content-Encoding \"br\" not supported"
        );
    }

    #[test]
    fn golden_raw_deflate_stored_block() {
        // A stored (uncompressed) final block: BFINAL=1 BTYPE=00, LEN=2, NLEN=!2.
        let raw = [0x01, 0x02, 0x00, 0xfd, 0xff, b'h', b'i'];
        assert_eq!(decode(&raw, ContentEncoding::Deflate, 10).unwrap(), b"hi");
    }

    #[test]
    fn limits_are_enforced() {
        let big = vec![b'x'; 10_000];
        assert_eq!(
            decode(&gzip(&big), ContentEncoding::Gzip, 9_999),
            Err(WireError::DecompressedTooLarge { max: 9_999 })
        );
        assert_eq!(
            decode(&gzip(&big), ContentEncoding::Gzip, 10_000).unwrap(),
            big
        );
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        assert!(decode(b"not gzip", ContentEncoding::Gzip, 100).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            prop_assert_eq!(decode(&gzip(&data), ContentEncoding::Gzip, 4096).unwrap(), data.clone());
            prop_assert_eq!(decode(&deflate(&data), ContentEncoding::Deflate, 4096).unwrap(), data);
        }
    }
}
