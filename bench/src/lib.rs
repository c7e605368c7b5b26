//! bench (filled by a later issue).
