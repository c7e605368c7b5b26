//! `loki.echo`: every entry it receives is written to the agent's log at info level, as
//! Alloy does (`receiver`, `entry`, `labels` fields), and goes no further.

use crate::alloy::pipeline::Entry;

/// Logs one entry for the `loki.echo` component `id`.
pub fn echo(id: &str, e: &Entry) {
    let labels = e
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::info!(receiver = id, entry = %e.line, labels = %format!("{{{labels}}}"), "loki.echo");
}
