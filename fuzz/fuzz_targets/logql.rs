//! Fuzzes fake-loki's LogQL parser and stream-selector parser: any query text gives a tree or
//! a 400-style error, never a panic or a stack overflow (nesting is depth-limited).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = fake_loki::logql::parse(query) {
        let _ = expr.is_log();
        let _ = expr.matchers();
    }
    let _ = fake_loki::logql::parse_selector(query);
});
