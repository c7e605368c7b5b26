//! Fuzzes the agent's config loader (component schemas, references, stages): no input may
//! panic. The language's own targets (parse, stdlib) live in `alloy-syntax/fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let _ = agent::alloy::check_source("fuzz", src, agent::alloy::Scope::with_env(|_| None));
});
