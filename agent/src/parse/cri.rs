//! CRI log line format: `<RFC3339Nano> <stdout|stderr> <tags> <content>`.

use super::time::parse_rfc3339_nanos;
use crate::chunk::Stream;

/// One parsed CRI record; the content is `line[content_start..]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriRecord {
    pub ts_ns: i64,
    pub stream: Stream,
    /// Tag `P`: more parts of this line follow.
    pub partial: bool,
    pub content_start: usize,
}

/// Parses a CRI line (without its `\n`). A missing tag field means `F`, as in Alloy.
pub fn parse(line: &[u8]) -> Option<CriRecord> {
    let sp1 = memchr::memchr(b' ', line)?;
    let ts_ns = parse_rfc3339_nanos(&line[..sp1])?;
    let rest = &line[sp1 + 1..];
    let stream = if rest.starts_with(b"stdout") {
        Stream::Stdout
    } else if rest.starts_with(b"stderr") {
        Stream::Stderr
    } else {
        return None;
    };
    let after_stream = sp1 + 1 + 6;
    match line.get(after_stream) {
        None => {
            return Some(CriRecord {
                ts_ns,
                stream,
                partial: false,
                content_start: line.len(),
            })
        }
        Some(b' ') => {}
        Some(_) => return None,
    }
    // The third field is the tag field whatever it holds (kubelet's parser: "keep this
    // forward compatible"): an unknown flag is never part of the message. `P` as the first
    // `:`-separated tag marks a partial line.
    let tags_start = after_stream + 1;
    let tags_end = memchr::memchr(b' ', &line[tags_start..]).map_or(line.len(), |i| tags_start + i);
    let tags = &line[tags_start..tags_end];
    Some(CriRecord {
        ts_ns,
        stream,
        partial: tags.split(|&b| b == b':').next() == Some(b"P"),
        content_start: (tags_end + 1).min(line.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_of_cri_lines() {
        let ts = 1_714_557_600_123_456_789;
        type Case = (&'static str, Option<(Stream, bool, &'static str)>);
        let cases: &[Case] = &[
            (
                "2024-05-01T10:00:00.123456789Z stdout F hi there",
                Some((Stream::Stdout, false, "hi there")),
            ),
            (
                "2024-05-01T10:00:00.123456789Z stderr P part",
                Some((Stream::Stderr, true, "part")),
            ),
            (
                "2024-05-01T10:00:00.123456789Z stdout F ",
                Some((Stream::Stdout, false, "")),
            ),
            (
                "2024-05-01T10:00:00.123456789Z stdout F",
                Some((Stream::Stdout, false, "")),
            ),
            // An unknown flag is the tag field all the same, as for the kubelet.
            (
                "2024-05-01T10:00:00.123456789Z stdout X hello",
                Some((Stream::Stdout, false, "hello")),
            ),
            (
                "2024-05-01T10:00:00.123456789Z stdout F:X hello",
                Some((Stream::Stdout, false, "hello")),
            ),
            (
                "2024-05-01T10:00:00.123456789Z stderr Q",
                Some((Stream::Stderr, false, "")),
            ),
            (
                "2024-05-01T10:00:00.123456789Z stdout P:X a",
                Some((Stream::Stdout, true, "a")),
            ),
            ("2024-05-01T10:00:00.123456789Z stdin F a", None),
            ("2024-05-01T10:00:00.123456789Z stdoutF a", None),
            ("not a timestamp stdout F a", None),
        ];
        for (line, want) in cases {
            let got = parse(line.as_bytes()).map(|r| {
                assert_eq!(r.ts_ns, ts);
                (
                    r.stream,
                    r.partial,
                    std::str::from_utf8(&line.as_bytes()[r.content_start..]).unwrap_or("?"),
                )
            });
            assert_eq!(got, *want, "{line}");
        }
    }
}
