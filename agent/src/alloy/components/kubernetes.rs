//! `discovery.kubernetes` and `loki.source.kubernetes`, mapped onto node-local file tailing:
//! pod targets come from the kubelet's `/var/log/pods/<ns>_<pod>_<uid>/<container>/` layout
//! (enriched from the API by `crate::k8s` when it runs) and `loki.source.kubernetes` tails
//! those files instead of streaming from the API server.

use crate::alloy::args::{Args, Ctx, Schema, A, B, EMPTY};
use crate::alloy::label_selector::LabelSelector;
use crate::alloy::targets::KubeletPods;
use crate::alloy::value::Value;

/// Where a pod's service account token mount names its namespace.
const SA_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The agent's own namespace for `own_namespace`: `$POD_NAMESPACE` (downward API), else the
/// service account mount, as Kubernetes clients find it in cluster.
fn own_namespace() -> Option<String> {
    own_namespace_from(
        std::env::var("POD_NAMESPACE").ok(),
        std::path::Path::new(SA_NAMESPACE),
    )
}

fn own_namespace_from(env: Option<String>, sa_file: &std::path::Path) -> Option<String> {
    let nonempty = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    env.and_then(nonempty)
        .or_else(|| std::fs::read_to_string(sa_file).ok().and_then(nonempty))
}

const NO_API: &str = "the agent's Kubernetes client is configured from the in-cluster service account or $KUBECONFIG (with $NODE_NAME), not from the config; pod files come from the kubelet's log directories on this node";

static NAMESPACES: Schema = Schema {
    attrs: &[("names", A::Optional), ("own_namespace", A::Optional)],
    blocks: &[],
};

static SELECTORS: Schema = Schema {
    attrs: &[
        ("role", A::Required),
        ("label", A::Optional),
        ("field", A::Optional),
    ],
    blocks: &[],
};

pub static DISCOVERY_KUBERNETES: Schema = Schema {
    attrs: &[
        ("role", A::Required),
        ("api_server", A::Unsupported(NO_API)),
        ("kubeconfig_file", A::Unsupported(NO_API)),
        ("bearer_token", A::Unsupported(NO_API)),
        ("bearer_token_file", A::Unsupported(NO_API)),
        ("proxy_url", A::Unsupported(NO_API)),
        ("no_proxy", A::Unsupported(NO_API)),
        ("proxy_from_environment", A::Unsupported(NO_API)),
        ("proxy_connect_header", A::Unsupported(NO_API)),
        ("follow_redirects", A::Unsupported(NO_API)),
        ("enable_http2", A::Unsupported(NO_API)),
        ("http_headers", A::Unsupported(NO_API)),
    ],
    blocks: &[
        ("namespaces", B::One, &NAMESPACES),
        ("selectors", B::Many, &SELECTORS),
        (
            "attach_metadata",
            B::Unsupported("node and namespace metadata need the Kubernetes API"),
            &EMPTY,
        ),
        ("basic_auth", B::Unsupported(NO_API), &EMPTY),
        ("authorization", B::Unsupported(NO_API), &EMPTY),
        ("oauth2", B::Unsupported(NO_API), &EMPTY),
        ("tls_config", B::Unsupported(NO_API), &EMPTY),
    ],
};

pub static SOURCE_KUBERNETES: Schema = Schema {
    attrs: &[("targets", A::Required), ("forward_to", A::Required)],
    blocks: &[
        (
            "client",
            B::Unsupported("logs are read from the node's files, not through the API server"),
            &EMPTY,
        ),
        ("clustering", B::One, &CLUSTERING),
    ],
};

/// Accepted so configs written for Alloy's API tailing run unchanged; it changes nothing here
/// (see the startup note in `load`).
static CLUSTERING: Schema = Schema {
    attrs: &[("enabled", A::Required)],
    blocks: &[],
};

/// Builds the path-answerable part of a pod-role discovery.
pub fn discovery(args: &Args, ctx: &mut Ctx<'_>) -> KubeletPods {
    let mut k = KubeletPods::default();
    let role = args.string("role", "", ctx);
    if args.has("role") && role != "pod" {
        ctx.error(
            args.pos_of("role"),
            format!("attribute \"role\": {role:?} is not supported by this agent (only \"pod\")"),
        );
    }
    if let Some(ns) = args.blocks_named("namespaces").next() {
        k.namespaces = ns
            .get("names", ctx, Value::to_string_list)
            .unwrap_or_default();
        if ns.bool("own_namespace", false, ctx) {
            match own_namespace() {
                Some(own) => k.namespaces.push(own),
                None => ctx.error(
                    ns.pos_of("own_namespace"),
                    format!("own_namespace: the agent's namespace is unknown: set $POD_NAMESPACE (downward API metadata.namespace) or run with a service account ({SA_NAMESPACE})"),
                ),
            }
        }
    }
    for sel in args.blocks_named("selectors") {
        let r = sel.string("role", "", ctx);
        if sel.has("role") && r != "pod" {
            ctx.error(
                sel.pos_of("role"),
                format!("selectors role {r:?} is not supported (only \"pod\")"),
            );
        }
        if let Some(l) = sel
            .opt_string("label", ctx)
            .filter(|l| !l.trim().is_empty())
        {
            match l.parse::<LabelSelector>() {
                Ok(s) => k.label_selectors.push(s),
                Err(e) => ctx.error(sel.pos_of("label"), e.to_string()),
            }
        }
        if let Some(f) = sel.opt_string("field", ctx) {
            for part in f.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (key, val, eq) = if let Some((k, v)) = part.split_once("!=") {
                    (k, v, false)
                } else if let Some((k, v)) = part.split_once("==") {
                    (k, v, true)
                } else if let Some((k, v)) = part.split_once('=') {
                    (k, v, true)
                } else {
                    ctx.error(
                        sel.pos_of("field"),
                        format!("invalid field selector {part:?}"),
                    );
                    continue;
                };
                match key.trim() {
                    // Every pod whose logs are on this node runs on this node.
                    "spec.nodeName" => {}
                    "metadata.name" | "metadata.namespace" => k.field_equals.push((key.trim().to_string(), val.trim().to_string(), eq)),
                    other => ctx.error(sel.pos_of("field"), format!("field selector on {other:?} is not supported: only spec.nodeName, metadata.name and metadata.namespace can be answered from the node's files")),
                }
            }
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_prefers_the_downward_api_then_the_service_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sa = dir.path().join("namespace");
        assert_eq!(own_namespace_from(None, &sa), None);
        std::fs::write(&sa, "logging\n").expect("write");
        assert_eq!(own_namespace_from(None, &sa).as_deref(), Some("logging"));
        assert_eq!(
            own_namespace_from(Some("ops".into()), &sa).as_deref(),
            Some("ops")
        );
        assert_eq!(
            own_namespace_from(Some(" ".into()), &sa).as_deref(),
            Some("logging")
        );
    }
}
