//! agent (filled by a later issue).
