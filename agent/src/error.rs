//! The agent library's error type.

use std::path::PathBuf;

/// Everything that can stop the agent or one of its stages.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A filesystem operation on `path` failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The positions file exists but cannot be understood.
    #[error("positions file {path}: {msg}")]
    Positions { path: PathBuf, msg: String },
    /// The settings are inconsistent.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// The HTTP listener could not be bound.
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The inotify watcher could not be created.
    #[error("file watcher: {0}")]
    Watch(#[from] notify::Error),
}

impl AgentError {
    /// Wraps an IO error with the operation and path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AgentError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
