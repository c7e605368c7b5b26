//! Fuzzes the Alloy scanner, parser and printer: no input may panic, and whatever
//! parses cleanly must format to text that parses to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let (file, diags) = alloy_syntax::parser::parse_file("fuzz", src);
    let _ = diags.render(src);
    if diags.is_empty() {
        let printed = alloy_syntax::printer::print_file(&file);
        let (mut again, d2) = alloy_syntax::parser::parse_file("fuzz", &printed);
        assert!(d2.is_empty(), "printed output does not parse:\n{printed}");
        let mut orig = file;
        alloy_syntax::ast::strip_positions(&mut orig);
        alloy_syntax::ast::strip_positions(&mut again);
        assert_eq!(orig, again);
        // Alloy's own formatted output is a fixed point; so must ours be.
        let printed_again = alloy_syntax::printer::print_file(
            &alloy_syntax::parser::parse_file("fuzz", &printed).0,
        );
        assert_eq!(printed, printed_again, "formatting is not idempotent");
    }
});
