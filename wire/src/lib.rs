//! Loki's push wire format, shared by the agent (encoder) and fake-loki (decoder).
//!
//! - [`proto`]: the `logproto` messages with Loki's field numbers, plus a fast
//!   direct encoder ([`proto::PushEncoder`]) that writes the same bytes as prost
//!   without building intermediate structs.
//! - [`snappy`]: snappy *block* format (not framed), as Loki expects.
//! - [`json`]: Loki's JSON push bodies (v1 and the legacy `/api/prom/push` shape).
//! - [`encoding`]: `Content-Encoding` (gzip, deflate) handling.
//! - [`labels`]: the Prometheus-style label string `{a="b", c="d"}`, parsed,
//!   validated and printed in Loki's canonical (sorted) form.

pub mod encoding;
pub mod error;
pub mod json;
pub mod labels;
pub mod proto;
pub mod snappy;

pub use error::WireError;
pub use labels::LabelSet;
pub use proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
