//! Turns raw file lines into log entries: CRI (with `P`/`F` joining), docker json-file (with
//! 16 KiB record joining) and plain lines.
//!
//! The parser is stateful per file only for partial records; it reports the file offset where
//! the oldest pending partial began, so the tailer never commits a position past a line that
//! has not been emitted yet.

pub mod cri;
pub mod docker;
pub mod time;

use crate::chunk::{Entry, Stream};
use crate::config::LineFormat;

/// Marks an entry whose range is in [`Out::extra`] rather than in the read buffer.
const EXTRA_FLAG: u32 = 1 << 31;

/// Counters the tailer turns into metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseStats {
    /// Entries emitted.
    pub entries: u64,
    /// Entries cut at `max_line_bytes`.
    pub truncated: u64,
    /// Entries whose invalid UTF-8 was replaced with U+FFFD.
    pub invalid_utf8: u64,
    /// Lines that looked like (or had to be) CRI/docker but did not parse; kept as plain text.
    pub parse_errors: u64,
}

/// Entries of one chunk being built; transformed lines live in `extra`.
#[derive(Debug, Default)]
pub struct Out {
    pub entries: Vec<Entry>,
    pub extra: Vec<u8>,
    pub line_bytes: usize,
}

impl Out {
    /// Moves `extra` behind `data[..consumed]` and resolves the entry ranges that point into it.
    pub fn finish(&mut self, data: &mut Vec<u8>, consumed: usize) {
        data.truncate(consumed);
        let base = data.len() as u32;
        // Even with `extra` empty, an empty line emitted through it (an escaped docker
        // record of just `\n`) carries the flag and must be resolved.
        data.extend_from_slice(&self.extra);
        self.extra.clear();
        for e in &mut self.entries {
            if e.start & EXTRA_FLAG != 0 {
                e.start = (e.start & !EXTRA_FLAG) + base;
                e.end += base;
            }
        }
    }
}

/// A partial record waiting for its final part.
#[derive(Debug)]
struct Partial {
    ts_ns: i64,
    start_offset: u64,
    buf: Vec<u8>,
}

/// Per-file line parser.
#[derive(Debug)]
pub struct LineParser {
    format: LineFormat,
    max_line_bytes: usize,
    keep_docker_newline: bool,
    partial: [Option<Partial>; 2],
    last_plain_ts: i64,
    pub stats: ParseStats,
}

impl LineParser {
    pub fn new(format: LineFormat, max_line_bytes: usize) -> Self {
        LineParser {
            format,
            max_line_bytes: max_line_bytes.max(1),
            keep_docker_newline: false,
            partial: [None, None],
            last_plain_ts: 0,
            stats: ParseStats::default(),
        }
    }

    /// Keeps the `\n` ending a docker record's `log` in the entry, as Alloy's `stage.docker`.
    pub fn keep_docker_newline(mut self, keep: bool) -> Self {
        self.keep_docker_newline = keep;
        self
    }

    /// Offset of the first line of the oldest pending partial record, if any.
    pub fn pending_start(&self) -> Option<u64> {
        self.partial.iter().flatten().map(|p| p.start_offset).min()
    }

    /// Forgets pending partials (the file was truncated).
    pub fn reset(&mut self) {
        self.partial = [None, None];
    }

    /// Parses one raw line `data[start..end]` (no `\n`) that began at file offset `offset`.
    pub fn line(
        &mut self,
        data: &[u8],
        start: usize,
        end: usize,
        offset: u64,
        now_ns: i64,
        out: &mut Out,
    ) {
        let mut end = end;
        if end > start && data[end - 1] == b'\r' {
            end -= 1;
        }
        let raw = &data[start..end];
        let format = match self.format {
            LineFormat::Auto => match raw.first() {
                Some(b'0'..=b'9') => LineFormat::Cri,
                Some(b'{') => LineFormat::Docker,
                _ => LineFormat::Plain,
            },
            f => f,
        };
        match format {
            LineFormat::Cri => match cri::parse(raw) {
                Some(rec) => {
                    let content = (start + rec.content_start, end);
                    self.record(
                        data,
                        content,
                        rec.ts_ns,
                        rec.stream,
                        rec.partial,
                        offset,
                        true,
                        out,
                    );
                }
                None => self.unparsable(data, start, end, now_ns, out),
            },
            LineFormat::Docker => match docker::parse(raw) {
                Some(rec) => {
                    let (log, partial) = match rec.log.strip_suffix('\n') {
                        Some(_) if self.keep_docker_newline => (rec.log.as_ref(), false),
                        Some(l) => (l, false),
                        None => (rec.log.as_ref(), true),
                    };
                    self.record(
                        log.as_bytes(),
                        (0, log.len()),
                        rec.ts_ns,
                        rec.stream,
                        partial,
                        offset,
                        false,
                        out,
                    );
                }
                None => self.unparsable(data, start, end, now_ns, out),
            },
            LineFormat::Plain | LineFormat::Auto => {
                let ts = self.plain_ts(now_ns);
                self.emit(data, start, end, ts, Stream::Unknown, out);
            }
        }
    }

    /// Emits every pending partial as an entry: the file is finished and can never complete them.
    pub fn flush_partials(&mut self, out: &mut Out) {
        for i in 0..2 {
            if let Some(p) = self.partial[i].take() {
                let stream = if i == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                self.emit_extra(&p.buf, p.ts_ns, stream, out);
            }
        }
    }

    fn unparsable(&mut self, data: &[u8], start: usize, end: usize, now_ns: i64, out: &mut Out) {
        self.stats.parse_errors += 1;
        let ts = self.plain_ts(now_ns);
        self.emit(data, start, end, ts, Stream::Unknown, out);
    }

    /// Handles one CRI/docker record whose content is `src[content.0..content.1]`.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        src: &[u8],
        content: (usize, usize),
        ts_ns: i64,
        stream: Stream,
        partial: bool,
        offset: u64,
        in_buffer: bool,
        out: &mut Out,
    ) {
        let slot = if stream == Stream::Stderr { 1 } else { 0 };
        let piece = &src[content.0..content.1];
        if partial {
            let max = self.max_line_bytes;
            let p = self.partial[slot].get_or_insert_with(|| Partial {
                ts_ns,
                start_offset: offset,
                buf: Vec::new(),
            });
            // Keep one byte beyond the cap so emit() sees and counts the truncation.
            let room = (max + 1).saturating_sub(p.buf.len());
            p.buf.extend_from_slice(&piece[..piece.len().min(room)]);
            return;
        }
        if let Some(mut p) = self.partial[slot].take() {
            let room = (self.max_line_bytes + 1).saturating_sub(p.buf.len());
            p.buf.extend_from_slice(&piece[..piece.len().min(room)]);
            self.emit_extra(&p.buf, p.ts_ns, stream, out);
        } else if in_buffer {
            self.emit(src, content.0, content.1, ts_ns, stream, out);
        } else {
            self.emit_extra(piece, ts_ns, stream, out);
        }
    }

    fn plain_ts(&mut self, now_ns: i64) -> i64 {
        // Strictly increasing per file so identical plain lines are never de-duplicated by Loki.
        let ts = now_ns.max(self.last_plain_ts + 1);
        self.last_plain_ts = ts;
        ts
    }

    /// Emits `data[start..end]` in place when it is valid and short enough, else via `extra`.
    fn emit(
        &mut self,
        data: &[u8],
        start: usize,
        end: usize,
        ts_ns: i64,
        stream: Stream,
        out: &mut Out,
    ) {
        let line = &data[start..end];
        if line.len() <= self.max_line_bytes && std::str::from_utf8(line).is_ok() {
            self.stats.entries += 1;
            out.line_bytes += line.len();
            out.entries.push(Entry {
                ts_ns,
                start: start as u32,
                end: end as u32,
                stream,
                metadata: crate::chunk::NO_METADATA,
            });
        } else {
            self.emit_extra(line, ts_ns, stream, out);
        }
    }

    /// Copies `line` (truncated, UTF-8 repaired) into `extra` and emits it.
    fn emit_extra(&mut self, line: &[u8], ts_ns: i64, stream: Stream, out: &mut Out) {
        let mut line = line;
        if line.len() > self.max_line_bytes {
            self.stats.truncated += 1;
            line = &line[..self.max_line_bytes];
        }
        let at = out.extra.len();
        match std::str::from_utf8(line) {
            Ok(_) => out.extra.extend_from_slice(line),
            Err(_) => {
                self.stats.invalid_utf8 += 1;
                out.extra
                    .extend_from_slice(String::from_utf8_lossy(line).as_bytes());
            }
        }
        let len = out.extra.len() - at;
        self.stats.entries += 1;
        out.line_bytes += len;
        out.entries.push(Entry {
            ts_ns,
            start: at as u32 | EXTRA_FLAG,
            end: out.extra.len() as u32,
            stream,
            metadata: crate::chunk::NO_METADATA,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` line by line and returns (line, ts, stream) of the emitted entries.
    type Parsed = (Vec<(Vec<u8>, i64, Stream)>, ParseStats, Option<u64>);

    fn run(format: LineFormat, max: usize, text: &[u8]) -> Parsed {
        run_with(LineParser::new(format, max), text)
    }

    fn run_with(mut p: LineParser, text: &[u8]) -> Parsed {
        let mut out = Out::default();
        let mut data = text.to_vec();
        let mut s = 0;
        for nl in memchr::memchr_iter(b'\n', text) {
            p.line(&data, s, nl, s as u64, 1000, &mut out);
            s = nl + 1;
        }
        out.finish(&mut data, s);
        let entries = out
            .entries
            .iter()
            .map(|e| {
                (
                    data[e.start as usize..e.end as usize].to_vec(),
                    e.ts_ns,
                    e.stream,
                )
            })
            .collect();
        (entries, p.stats, p.pending_start())
    }

    #[test]
    fn an_empty_docker_line_alone_in_a_chunk_points_inside_it() {
        // Found by the container_lines fuzz target: the unescaped line is empty, so nothing
        // went into `extra` and its entry kept the flagged range 2^31..0 (a slice panic in
        // the tailer).
        let text = b"{\"log\":\"\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-22T10:15:00Z\"}\n";
        let (e, stats, _) = run(LineFormat::Docker, 100, text);
        assert_eq!(
            e,
            vec![(Vec::new(), 1_795_342_500_000_000_000, Stream::Stdout)]
        );
        assert_eq!(stats.parse_errors, 0);
    }

    #[test]
    fn cri_partials_are_joined_per_stream() {
        let text = b"1970-01-01T00:00:01Z stdout P hel\n\
1970-01-01T00:00:02Z stderr F err\n\
1970-01-01T00:00:03Z stdout P lo \n\
1970-01-01T00:00:04Z stdout F world\n";
        let (e, _, pending) = run(LineFormat::Auto, 100, text);
        assert_eq!(
            e,
            vec![
                (b"err".to_vec(), 2_000_000_000, Stream::Stderr),
                (b"hello world".to_vec(), 1_000_000_000, Stream::Stdout),
            ]
        );
        assert_eq!(pending, None);
    }

    #[test]
    fn pending_partial_holds_back_the_commit_offset() {
        let text = b"1970-01-01T00:00:01Z stdout F a\n1970-01-01T00:00:02Z stdout P b\n";
        let (e, _, pending) = run(LineFormat::Cri, 100, text);
        assert_eq!(e.len(), 1);
        assert_eq!(pending, Some(32));
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let (e, stats, _) = run(LineFormat::Plain, 100, b"ok\nbad \xff\xfe end\n");
        assert_eq!(e[0].0, b"ok");
        assert_eq!(
            String::from_utf8(e[1].0.clone()).ok().as_deref(),
            Some("bad \u{fffd}\u{fffd} end")
        );
        assert_eq!(stats.invalid_utf8, 1);
        // Plain timestamps are strictly increasing so equal lines stay distinct entries.
        assert!(e[1].1 > e[0].1);
    }

    #[test]
    fn long_lines_are_truncated_and_counted() {
        let (e, stats, _) = run(LineFormat::Plain, 4, b"abcdefgh\nabc\n");
        assert_eq!(e[0].0, b"abcd");
        assert_eq!(e[1].0, b"abc");
        assert_eq!(stats.truncated, 1);
        let text = b"1970-01-01T00:00:01Z stdout P abc\n1970-01-01T00:00:01Z stdout F def\n";
        let (e, stats, _) = run(LineFormat::Cri, 4, text);
        assert_eq!(e[0].0, b"abcd");
        assert_eq!(stats.truncated, 1);
    }

    #[test]
    fn docker_records_are_joined_until_newline() {
        let text = br#"{"log":"part1 ","stream":"stdout","time":"1970-01-01T00:00:01Z"}
{"log":"part2\n","stream":"stdout","time":"1970-01-01T00:00:02Z"}
{"log":"x\n","stream":"stderr","time":"1970-01-01T00:00:03Z"}
"#;
        let (e, _, _) = run(LineFormat::Auto, 100, text);
        assert_eq!(
            e,
            vec![
                (b"part1 part2".to_vec(), 1_000_000_000, Stream::Stdout),
                (b"x".to_vec(), 3_000_000_000, Stream::Stderr),
            ]
        );
        // Alloy mode: the joined record keeps the newline its last part ends with.
        let (e, _, _) = run_with(
            LineParser::new(LineFormat::Docker, 100).keep_docker_newline(true),
            text,
        );
        assert_eq!(
            e,
            vec![
                (b"part1 part2\n".to_vec(), 1_000_000_000, Stream::Stdout),
                (b"x\n".to_vec(), 3_000_000_000, Stream::Stderr),
            ]
        );
    }

    #[test]
    fn garbage_in_strict_cri_mode_is_kept_as_plain_and_counted() {
        let (e, stats, _) = run(LineFormat::Cri, 100, b"not cri\r\n");
        assert_eq!(e, vec![(b"not cri".to_vec(), 1000, Stream::Unknown)]);
        assert_eq!(stats.parse_errors, 1);
    }
}
