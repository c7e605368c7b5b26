//! e2e (filled by a later issue).
