//! `stage.decolorize`: strips ANSI escape sequences from the line with the same pattern as
//! Alloy's `stages/decolorize.go` (itself from acarl005/stripansi).

use std::sync::LazyLock;

use regex::Regex;

/// Go's `\d` is ASCII, so digits are spelled `[0-9]`; `\x1B`/`\x9B` are code points, as in Go.
static ANSI: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"[\x1B\x{9B}][\[\]()#;?]*(?:(?:(?:[a-zA-Z0-9]*(?:;[a-zA-Z0-9]*)*)?\x07)|(?:(?:[0-9]{1,4}(?:;[0-9]{0,4})*)?[0-9A-PRZcf-ntqry=><~]))",
    )
    .ok()
});

/// The line without colour and cursor escapes.
pub fn decolorize(line: &str) -> String {
    match ANSI.as_ref() {
        Some(re) if line.contains(['\x1B', '\u{9B}']) => re.replace_all(line, "").into_owned(),
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ansi_sequences() {
        assert!(ANSI.is_some(), "the pattern compiles");
        let cases = [
            // Alloy's docs example.
            ("\x1b[0;32mINFO\x1b[0m starting", "INFO starting"),
            ("\x1b[1;31mERROR\x1b[0m: \x1b[4mboom\x1b[24m", "ERROR: boom"),
            ("\x1b[38;5;208morange\x1b[39m", "orange"),
            ("\x1b]0;title\x07rest", "rest"),
            ("\u{9b}31mred", "red"),
            ("\x1b[2K\x1b[1Gprogress", "progress"),
            ("plain [0m text", "plain [0m text"),
            ("ünïcödé \x1b[1mbold\x1b[0m", "ünïcödé bold"),
        ];
        for (line, want) in cases {
            assert_eq!(decolorize(line), want, "{line:?}");
        }
    }
}
