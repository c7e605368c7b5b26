//! The error type for everything that decodes bytes from the network.

use thiserror::Error;

/// Why a push body or label string could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The snappy block was malformed (Loki's text: `snappy: corrupt input`).
    #[error("snappy: corrupt input")]
    SnappyCorrupt,
    /// The snappy block claims a decompressed size above the allowed maximum.
    #[error("snappy: decoded length {len} exceeds the limit of {max} bytes")]
    SnappyTooLarge { len: usize, max: usize },
    /// The protobuf message was malformed.
    #[error("proto: {0}")]
    Protobuf(String),
    /// The JSON body was malformed or of the wrong shape.
    #[error("{0}")]
    Json(String),
    /// A gzip or deflate body was malformed.
    #[error("{0}")]
    Decompress(String),
    /// The decompressed body is larger than allowed.
    #[error("decompressed body exceeds the limit of {max} bytes")]
    DecompressedTooLarge { max: usize },
    /// An unknown `Content-Encoding`.
    #[error("Content-Encoding {0:?} not supported")]
    UnsupportedEncoding(String),
    /// A label string did not parse.
    #[error("{0}")]
    Labels(String),
}
