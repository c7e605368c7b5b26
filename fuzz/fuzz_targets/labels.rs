//! Fuzzes Loki's label-string parser (`{name="value", ...}` with Go string escapes): no input
//! may panic, and a parsed set printed back parses to the same set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loki_wire::LabelSet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(set) = LabelSet::parse(text) else {
        return;
    };
    let printed = set.to_string();
    let again = LabelSet::parse(&printed)
        .unwrap_or_else(|e| panic!("printed labels {printed:?} do not parse: {e}"));
    assert_eq!(set.pairs(), again.pairs(), "round trip changed {text:?}");
});
