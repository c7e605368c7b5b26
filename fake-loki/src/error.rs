//! The library's error type.

use thiserror::Error;

/// Why fake-loki could not start or load its state.
#[derive(Debug, Error)]
pub enum Error {
    /// A configuration or limits file is invalid.
    #[error("config: {0}")]
    Config(String),
    /// Binding or serving failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The data directory could not be read or written.
    #[error("data dir: {0}")]
    DataDir(String),
}
