//! Fuzzes the agent's positions-file parser (YAML, versions 1-3, checksum trailer): any file
//! content gives records or an error naming the problem, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = agent::tail::positions::parse(text);
});
