//! Fuzzes a push body the way fake-loki decodes it: content encoding (gzip/deflate), then JSON
//! (v1 or legacy) or snappy-block protobuf. Any input must give a request or an error, never a
//! panic or an allocation past the size limit; a decoded request must survive a JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loki_wire::encoding::{self, ContentEncoding};
use loki_wire::{json, snappy};
use prost::Message;

/// Small, so a decompression bomb is refused quickly instead of filling memory.
const MAX_DECOMPRESSED: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let enc = match selector & 0b11 {
        0 | 3 => ContentEncoding::Identity,
        1 => ContentEncoding::Gzip,
        _ => ContentEncoding::Deflate,
    };
    let raw = match encoding::decode(body, enc, MAX_DECOMPRESSED) {
        Ok(raw) => raw,
        Err(_) => return,
    };
    assert!(raw.len() <= MAX_DECOMPRESSED);
    let decoded = match (selector >> 2) & 0b11 {
        0 => json::parse_v1(&raw),
        1 => json::parse_legacy(&raw),
        2 => snappy::decompress(&raw, MAX_DECOMPRESSED).and_then(|plain| {
            assert!(plain.len() <= MAX_DECOMPRESSED);
            loki_wire::PushRequest::decode(plain.as_slice())
                .map_err(|e| loki_wire::WireError::Protobuf(e.to_string()))
        }),
        // Raw protobuf, so the fuzzer reaches the message decoder without learning snappy.
        _ => loki_wire::PushRequest::decode(raw.as_slice())
            .map_err(|e| loki_wire::WireError::Protobuf(e.to_string())),
    };
    if let Ok(req) = decoded {
        // Every request fake-loki accepts can be written back as JSON and read again.
        if let Ok(text) = json::to_v1(&req) {
            let _ = json::parse_v1(&text);
        }
        let _ = req.encode_to_vec();
    }
});
