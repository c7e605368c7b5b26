//! Fuzzes the agent's Alloy config loader end to end (language, component arguments, stages,
//! graph checks) as `agent check` runs it: any text gives a plan or diagnostics, never a panic.
//! Module imports read nothing: the fuzzer must not walk the file system.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let scope = agent::alloy::Scope::with_env(|_| None);
    if let Err(diags) = agent::alloy::load::load_full(
        "fuzz.alloy",
        src,
        scope,
        &agent::alloy::module::NoFiles,
        &agent::alloy::components::remote::Fetched::new(),
    ) {
        let _ = diags.render(src);
    }
});
