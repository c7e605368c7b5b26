//! CRI log line encoding, as containerd writes it: `<RFC3339Nano UTC> <stdout|stderr> <P|F> <msg>\n`.
//!
//! A message longer than the runtime's buffer is written as `P` (partial) chunks followed by one
//! `F` (full) chunk; the agent must join them into one entry. Chunks split on UTF-8 boundaries.

use chrono::{DateTime, SecondsFormat, Utc};

/// containerd's default maximum chunk (its 16 KiB read buffer).
pub const DEFAULT_CHUNK_BYTES: usize = 16 * 1024;

/// Formats a timestamp in ns since the epoch as RFC3339 with nine fractional digits, UTC.
pub fn format_ts(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let nanos = ts_ns.rem_euclid(1_000_000_000) as u32;
    match DateTime::<Utc>::from_timestamp(secs, nanos) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Nanos, true),
        // Out of chrono's range is impossible for wall-clock times; keep the epoch as a fallback.
        None => "1970-01-01T00:00:00.000000000Z".to_owned(),
    }
}

/// Appends the CRI line(s) for one message to `out`. Returns how many physical lines were written.
pub fn encode(out: &mut Vec<u8>, ts_ns: i64, stream: &str, msg: &str, chunk_bytes: usize) -> usize {
    let ts = format_ts(ts_ns);
    let chunk_bytes = chunk_bytes.max(4);
    let mut rest = msg;
    let mut lines = 0;
    loop {
        let (chunk, tag) = if rest.len() > chunk_bytes {
            let mut cut = chunk_bytes;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            (&rest[..cut], "P")
        } else {
            (rest, "F")
        };
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.as_bytes());
        out.push(b' ');
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(chunk.as_bytes());
        out.push(b'\n');
        lines += 1;
        rest = &rest[chunk.len()..];
        if tag == "F" {
            return lines;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_message_is_one_full_line() {
        let mut out = Vec::new();
        let n = encode(&mut out, 1_700_000_000_123_456_789, "stdout", "hello", 16);
        assert_eq!(n, 1);
        assert_eq!(out, b"2023-11-14T22:13:20.123456789Z stdout F hello\n");
    }

    #[test]
    fn long_message_splits_into_partials_then_full_on_char_boundaries() {
        let mut out = Vec::new();
        // 'é' is two bytes: a 5-byte cut would split it, so the first chunk is 4 bytes.
        let n = encode(&mut out, 0, "stderr", "abcdéfghij", 5);
        assert_eq!(n, 3);
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "1970-01-01T00:00:00.000000000Z stderr P abcd",
                "1970-01-01T00:00:00.000000000Z stderr P éfgh",
                "1970-01-01T00:00:00.000000000Z stderr F ij",
            ]
        );
    }

    #[test]
    fn exact_chunk_size_is_not_split() {
        let mut out = Vec::new();
        assert_eq!(encode(&mut out, 0, "stdout", "12345", 5), 1);
    }
}
