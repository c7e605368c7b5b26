//! Grafana Alloy configuration support: parse, check, format and load an Alloy file into the
//! agent's settings plus the per-entry processing it describes.
//!
//! The language itself (scanner, parser, printer, evaluator, standard library) lives in the
//! `alloy-syntax` crate; it is re-exported here under its old paths. This module keeps the
//! components and maps them onto the agent's pipeline.
//!
//! Entry points: [`check`] / [`check_source`] (validate and build a [`Plan`]), [`fmt`]
//! (canonical formatting) and [`Plan::discovery`] (targets for the tailer). See
//! `agent/README.md` for what is supported.

pub mod capsules;
pub mod components;
pub mod label_selector;
pub mod load;
pub mod module_files;
pub mod pipeline;
pub mod relabel;
pub mod router;
pub mod shared_labels;
pub mod stages;
pub mod targets;

pub use alloy_syntax::{
    args, ast, diag, eval, fmt, module, parser, printer, scanner, stdlib, value,
};

use std::path::Path;

pub use diag::{Diagnostic, Diagnostics};
pub use eval::Scope;
pub use load::{Plan, SourcePlan};
pub use pipeline::{Entry, Pipeline, Route, Step};
pub use shared_labels::SharedLabels;

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
    check_source(&name, &src, system_scope())
}

/// Like [`check`] on text already read, with an explicit scope (tests inject `sys.env`).
pub fn check_source(name: &str, src: &str, mut scope: Scope) -> Result<Plan, Diagnostics> {
    scope.capsule_concat = Some(capsules::concat);
    load::load(name, src, scope)
}

/// The scope a running agent evaluates its config in: the process environment and the node's
/// hostname.
pub fn system_scope() -> Scope {
    Scope::with_host(|k| std::env::var(k).ok(), &hostname())
}

/// The node's hostname, read once at startup like Alloy's `os.Hostname()`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
