//! `otelcol.*` components: accepted without evaluation and never run, as long as they are
//! inert — no log path of this config feeds them and no OpenTelemetry receiver's output
//! reaches one of our `loki.*` components through them (the k8s-monitoring chart renders an
//! `otelcol.exporter.loki` per Loki destination even when nothing uses it).

use std::collections::{BTreeMap, BTreeSet};

use crate::alloy::diag::{Diagnostic, Pos};

/// Whether a component name belongs to the OpenTelemetry Collector family.
pub fn is_otelcol(name: &str) -> bool {
    // Inside a module instance an id is `module.label/otelcol.…`.
    name.rsplit('/')
        .next()
        .unwrap_or(name)
        .starts_with("otelcol.")
}

/// One component as the inertness check sees it.
pub struct Node<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub pos: Pos,
    /// Reference paths found anywhere in its body (`["loki", "write", "w", "receiver"]`).
    pub refs: Vec<Vec<String>>,
}

/// The export names other components reference on `id` (`input`, `receiver`, `handler`, …):
/// an inert component's exports are whatever the config asks of it.
pub fn referenced_exports(id: &str, nodes: &[Node<'_>]) -> BTreeSet<String> {
    let parts: Vec<&str> = id.split('.').collect();
    nodes
        .iter()
        .flat_map(|n| n.refs.iter())
        .filter(|p| p.len() > parts.len() && p.iter().zip(&parts).all(|(a, b)| a == b))
        .map(|p| p[parts.len()].clone())
        .collect()
}

/// The component a reference path points into, if it is one of `ids`.
fn target<'a>(path: &[String], ids: &BTreeSet<&'a str>) -> Option<&'a str> {
    (2..=path.len())
        .rev()
        .find_map(|n| ids.get(path[..n].join(".").as_str()).copied())
}

/// Rejects otelcol components that would carry logs into a `loki.*` component; returns the
/// startup note for the inert ones (None when the config has none).
pub fn check(file: &str, nodes: &[Node<'_>]) -> (Vec<Diagnostic>, Option<String>) {
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n.id).collect();
    let by_id: BTreeMap<&str, &Node<'_>> = nodes.iter().map(|n| (n.id, n)).collect();
    let otel: Vec<&Node<'_>> = nodes.iter().filter(|n| is_otelcol(n.name)).collect();
    if otel.is_empty() {
        return (Vec::new(), None);
    }
    // Logs enter the otelcol graph only at its network receivers; otelcol.receiver.loki is
    // fed by loki components, which `forward_to` already refuses.
    let mut from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue: Vec<&str> = Vec::new();
    for n in &otel {
        if n.name.starts_with("otelcol.receiver.") && n.name != "otelcol.receiver.loki" {
            from.insert(n.id, n.id);
            queue.push(n.id);
        }
    }
    while let Some(id) = queue.pop() {
        let origin = from[id];
        for p in &by_id[id].refs {
            if let Some(t) = target(p, &ids).filter(|t| is_otelcol(t)) {
                if !from.contains_key(t) {
                    from.insert(t, origin);
                    queue.push(t);
                }
            }
        }
    }
    let mut diags = Vec::new();
    for n in &otel {
        let Some(origin) = from.get(n.id) else {
            continue;
        };
        let loki: BTreeSet<&str> = n
            .refs
            .iter()
            .filter_map(|p| target(p, &ids))
            .filter(|t| t.starts_with("loki."))
            .collect();
        if let Some(first) = loki.first() {
            diags.push(
                Diagnostic::new(
                    file,
                    n.pos,
                    format!(
                        "{} would carry logs from {origin} into {first}: otelcol components are not run by this agent",
                        n.id
                    ),
                )
                .with_hint("otelcol components are accepted only when no log path uses them; ship OpenTelemetry logs with another collector"),
            );
        }
    }
    let names: BTreeSet<&str> = otel.iter().map(|n| n.id).collect();
    let names: Vec<&str> = names.into_iter().collect();
    let note = format!(
        "{}: accepted but inert: this agent runs no OpenTelemetry Collector components, and no log path of this config feeds or reads them",
        names.join(", ")
    );
    (diags, Some(note))
}
