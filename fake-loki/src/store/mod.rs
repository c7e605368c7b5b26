//! Per-tenant stream storage.

mod stream;

pub use stream::{EntryRef, Metadata, Stream};
