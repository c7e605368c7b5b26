//! Snappy *block* format, as Loki reads push bodies (golang/snappy `Decode`).
//! Framed snappy (the streaming format) is rejected, as Loki rejects it.

use crate::WireError;

/// Compresses `data` into one snappy block.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0; snap::raw::max_compress_len(data.len())];
    match snap::raw::Encoder::new().compress(data, &mut out) {
        Ok(n) => {
            out.truncate(n);
            out
        }
        // Only fails when the input exceeds 2^32 - 1 bytes; fall back to the allocating API,
        // which reports the same error, so callers never see a silently empty body.
        Err(_) => snap::raw::Encoder::new()
            .compress_vec(data)
            .unwrap_or_default(),
    }
}

/// Decompresses one snappy block, refusing to allocate more than `max_len` bytes.
pub fn decompress(data: &[u8], max_len: usize) -> Result<Vec<u8>, WireError> {
    let len = snap::raw::decompress_len(data).map_err(|_| WireError::SnappyCorrupt)?;
    if len > max_len {
        return Err(WireError::SnappyTooLarge { len, max: max_len });
    }
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|_| WireError::SnappyCorrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_literal_block() {
        // varint length 3, then a literal tag (len-1)<<2 = 0x08 and the bytes.
        assert_eq!(
            decompress(&[0x03, 0x08, b'a', b'b', b'c'], 10).unwrap(),
            b"abc"
        );
        assert_eq!(compress(b"abc"), [0x03, 0x08, b'a', b'b', b'c']);
    }

    #[test]
    fn framed_snappy_is_corrupt_input() {
        let framed = b"\xff\x06\x00\x00sNaPpY";
        assert_eq!(decompress(framed, 1 << 20), Err(WireError::SnappyCorrupt));
    }

    #[test]
    fn oversized_claims_are_refused_before_allocating() {
        // Claims 2^28 bytes of output.
        let block = [0x80, 0x80, 0x80, 0x80, 0x01, 0x00];
        assert!(matches!(
            decompress(&block, 1024),
            Err(WireError::SnappyTooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert_eq!(decompress(&compress(&data), data.len()).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decompress(&data, 1 << 16);
        }
    }
}
