//! The Alloy components this agent understands: their schemas, how their arguments become
//! agent settings, and what they export to other components.

pub mod echo;
pub mod file;
pub mod kubernetes;
pub mod kubernetes_events;
pub mod otelcol;
pub mod process;
pub mod relabel;
pub mod remote;
pub mod secretfilter;
pub mod write;

use super::args::Schema;

/// Component names that are loaded (see the README's compatibility table).
pub const SUPPORTED: &[&str] = &[
    "local.file_match",
    "loki.source.file",
    "loki.source.kubernetes",
    "loki.source.kubernetes_events",
    "discovery.kubernetes",
    "discovery.relabel",
    "loki.relabel",
    "loki.process",
    "loki.write",
    "remote.kubernetes.secret",
    "remote.kubernetes.configmap",
    "loki.echo",
    "loki.secretfilter",
];

/// Top-level blocks that are not components.
pub const CONFIG_BLOCKS: &[&str] = &[
    "logging",
    "livedebugging",
    "http",
    "tracing",
    "remotecfg",
    "declare",
    "argument",
    "export",
    "foreach",
];

/// The schema of a supported component.
pub fn schema(name: &str) -> Option<&'static Schema> {
    Some(match name {
        "local.file_match" => &file::FILE_MATCH,
        "loki.source.file" => &file::SOURCE_FILE,
        "loki.source.kubernetes" => &kubernetes::SOURCE_KUBERNETES,
        "loki.source.kubernetes_events" => &kubernetes_events::SOURCE_KUBERNETES_EVENTS,
        "discovery.kubernetes" => &kubernetes::DISCOVERY_KUBERNETES,
        "discovery.relabel" => &relabel::DISCOVERY_RELABEL,
        "loki.relabel" => &relabel::LOKI_RELABEL,
        "loki.process" => &process::LOKI_PROCESS,
        "loki.write" => &write::LOKI_WRITE,
        "remote.kubernetes.secret" | "remote.kubernetes.configmap" => &remote::REMOTE_KUBERNETES,
        "loki.echo" => &super::args::EMPTY,
        "loki.secretfilter" => &secretfilter::SECRETFILTER,
        _ => return None,
    })
}

/// Why a well-known Alloy component that this agent does not run is rejected.
pub fn unsupported_reason(name: &str) -> Option<&'static str> {
    if name == "loki.source.journal" {
        return Some("node logs from the systemd journal are not supported yet: if the node also writes text logs (rsyslog/syslog, journald ForwardToSyslog), tail them with loki.source.file (e.g. /var/log/syslog, /var/log/messages); otherwise keep a journal-reading collector for node logs");
    }
    let prefixes: &[(&str, &str)] = &[
        ("loki.source.", "this agent tails node-local files; only loki.source.file, loki.source.kubernetes and loki.source.kubernetes_events are supported"),
        ("loki.", "not implemented by this agent"),
        ("discovery.", "only discovery.kubernetes (role pod) and discovery.relabel are supported"),
        ("local.", "only local.file_match is supported"),
        ("prometheus.", "this agent ships logs only"),
        ("pyroscope.", "this agent ships logs only"),
        ("faro.", "this agent ships logs only"),
        ("beyla.", "this agent ships logs only"),
        ("remote.", "remote configuration sources are not supported"),
        ("mimir.", "this agent ships logs only"),
        ("import.", "modules are not supported"),
    ];
    prefixes
        .iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(_, why)| *why)
}
