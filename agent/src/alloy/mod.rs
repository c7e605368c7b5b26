//! Grafana Alloy configuration support: parse, check, format and load an Alloy file into the
//! agent's settings plus the per-entry processing it describes.

pub mod ast;
pub mod diag;
pub mod eval;
pub mod parser;
pub mod pipeline;
pub mod printer;
pub mod relabel;
pub mod scanner;
pub mod stages;
pub mod stdlib;
pub mod targets;
pub mod value;
