//! Fuzzes the Alloy scanner, parser, printer and loader: no input may panic, and whatever
//! parses cleanly must format to text that parses to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let (file, diags) = agent::alloy::parser::parse_file("fuzz", src);
    let _ = diags.render(src);
    if diags.is_empty() {
        let printed = agent::alloy::printer::print_file(&file);
        let (mut again, d2) = agent::alloy::parser::parse_file("fuzz", &printed);
        assert!(d2.is_empty(), "printed output does not parse:\n{printed}");
        let mut orig = file;
        agent::alloy::ast::strip_positions(&mut orig);
        agent::alloy::ast::strip_positions(&mut again);
        assert_eq!(orig, again);
        // Alloy's own formatted output is a fixed point; so must ours be.
        let printed_again = agent::alloy::printer::print_file(
            &agent::alloy::parser::parse_file("fuzz", &printed).0,
        );
        assert_eq!(printed, printed_again, "formatting is not idempotent");
    }
    let _ = agent::alloy::check_source("fuzz", src, agent::alloy::Scope::with_env(|_| None));
});
