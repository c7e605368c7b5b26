//! The e2e library's error type; the binary wraps it in `anyhow` at the edge.

use std::path::PathBuf;

/// Everything that can go wrong in the generator, the checker or the pipeline driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on a generated file or the manifest failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The manifest could not be parsed or written.
    #[error("manifest {path}: {source}")]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Invalid settings (bad flag combination, zero sizes, ...).
    #[error("invalid settings: {0}")]
    Settings(String),
    /// An HTTP request to Loki (or fake-loki) failed at the transport level.
    #[error("http {url}: {message}")]
    Http { url: String, message: String },
    /// Loki answered a query with a non-success status.
    #[error("query {url} answered {status}: {body}")]
    QueryStatus {
        url: String,
        status: u16,
        body: String,
    },
    /// Loki's query response was not the documented JSON shape.
    #[error("query response from {url} is malformed: {message}")]
    QueryResponse { url: String, message: String },
    /// More entries share one timestamp than the page limit, so forward pagination cannot advance.
    #[error("more than {limit} entries at timestamp {ts_ns}; raise the page limit")]
    PageStuck { limit: usize, ts_ns: i64 },
    /// A child process (agent, fake-loki, cargo) could not be started or misbehaved.
    #[error("process {name}: {message}")]
    Process { name: String, message: String },
    /// Something did not happen before its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    /// Wraps an `io::Error` with the operation and path it concerned.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
