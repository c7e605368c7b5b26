//! Grafana Alloy configuration support: parse, check, format and load an Alloy file into the
//! agent's settings plus the per-entry processing it describes.
//!
//! Entry points: [`check`] / [`check_source`] (validate and build a [`Plan`]), [`fmt`]
//! (canonical formatting) and [`Plan::discovery`] (targets for the tailer). See
//! `agent/README.md` for what is supported.

pub mod args;
pub mod ast;
pub mod components;
pub mod diag;
pub mod eval;
pub mod label_selector;
pub mod load;
pub mod parser;
pub mod pipeline;
pub mod printer;
pub mod relabel;
pub mod router;
pub mod scanner;
pub mod stages;
pub mod stdlib;
pub mod targets;
pub mod value;

use std::path::Path;

pub use diag::{Diagnostic, Diagnostics};
pub use eval::Scope;
pub use load::{Plan, SourcePlan};
pub use pipeline::{Entry, Pipeline, Route, Step};

/// Reads, validates and loads a config file; every problem is reported with file:line:col.
pub fn check(path: impl AsRef<Path>) -> Result<Plan, Diagnostics> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::from(Diagnostic::new(
            &name,
            diag::Pos::default(),
            format!("cannot read config: {e}"),
        ))
    })?;
    check_source(&name, &src, Scope::new())
}

/// Like [`check`] on text already read, with an explicit scope (tests inject `sys.env`).
pub fn check_source(name: &str, src: &str, scope: Scope) -> Result<Plan, Diagnostics> {
    load::load(name, src, scope)
}

/// Formats a config the way `alloy fmt` does; syntax errors are returned instead.
pub fn fmt(src: &str) -> Result<String, Diagnostics> {
    let (file, diags) = parser::parse_file("<stdin>", src);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(printer::print_file(&file))
}
