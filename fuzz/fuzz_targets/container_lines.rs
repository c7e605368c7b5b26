//! Fuzzes the container log line parsers (CRI, docker json-file, auto-detect, partial-line
//! reassembly) the way the tailer feeds them: any bytes in a log file give entries or counted
//! parse errors, never a panic, and no entry exceeds the line-size limit.
#![no_main]

use agent::config::LineFormat;
use agent::parse::{LineParser, Out};
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let _ = agent::parse::cri::parse(file);
    let _ = agent::parse::docker::parse(file);
    let _ = agent::parse::time::parse_rfc3339_nanos(file);

    let format = match selector & 0b11 {
        0 => LineFormat::Auto,
        1 => LineFormat::Cri,
        2 => LineFormat::Docker,
        _ => LineFormat::Plain,
    };
    let mut parser = LineParser::new(format, MAX_LINE).keep_docker_newline(selector & 4 != 0);
    let mut out = Out::default();
    let mut start = 0;
    let mut offset = 0u64;
    for (i, &b) in file.iter().enumerate() {
        if b == b'\n' {
            parser.line(file, start, i, offset, 1_700_000_000_000_000_000, &mut out);
            offset += (i + 1 - start) as u64;
            start = i + 1;
        }
    }
    if selector & 8 != 0 {
        parser.reset();
    }
    parser.flush_partials(&mut out);
    let _ = parser.pending_start();

    // Every entry must point at bytes of the chunk, at most the line limit long
    // (invalid UTF-8 is replaced, which may grow a cut line by a few bytes).
    let mut chunk = file.to_vec();
    out.finish(&mut chunk, file.len());
    for e in &out.entries {
        let line = chunk
            .get(e.start as usize..e.end as usize)
            .unwrap_or_else(|| {
                panic!(
                    "entry {}..{} outside a {}-byte chunk",
                    e.start,
                    e.end,
                    chunk.len()
                )
            });
        assert!(line.len() <= MAX_LINE * 3, "entry of {} bytes", line.len());
        assert!(
            std::str::from_utf8(line).is_ok(),
            "entry is not UTF-8: {line:?}"
        );
    }
});
