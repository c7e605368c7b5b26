//! The Grafana Alloy configuration language, apart from any component: the scanner, parser and
//! AST, the canonical printer (`alloy fmt`), diagnostics with file:line:col, run-time values,
//! expression evaluation with its standard library, and the decoding of a block's body against
//! a component's argument schema.
//!
//! Pure: no file, network or environment access. What comes from the machine (`sys.env`,
//! `constants.hostname`) enters through [`Scope`]; values a program passes between its own
//! components travel as opaque [`value::Capsule`]s.

pub mod args;
pub mod ast;
pub mod diag;
pub mod eval;
pub mod module;
pub mod parser;
pub mod printer;
pub mod scanner;
pub mod stdlib;
pub mod value;

pub use diag::{Diagnostic, Diagnostics};
pub use eval::Scope;
pub use value::{Capsule, Value};

/// Formats a config the way `alloy fmt` does; syntax errors are returned instead.
pub fn fmt(src: &str) -> Result<String, Diagnostics> {
    let (file, diags) = parser::parse_file("<stdin>", src);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(printer::print_file(&file))
}
