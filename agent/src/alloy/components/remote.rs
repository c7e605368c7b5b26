//! `remote.kubernetes.secret` and `remote.kubernetes.configmap`: the schema, the object the
//! agent fetches, and the `data` export (secret values are `secret`, configmap values strings).
//! Fetching is the run-time side's job (`crate::k8s::remote`); without fetched data (`agent
//! check`) every key the config reads is a placeholder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::alloy::args::{Args, Ctx, Schema, A, B, EMPTY};
use crate::alloy::ast::{Expr, ExprKind, Stmt};
use crate::alloy::eval::{eval, Scope};
use crate::alloy::value::Value;

const CLIENT_ONLY_KUBECONFIG: &str =
    "the client comes from the in-cluster service account, $KUBECONFIG or kubeconfig_file";

/// `client { ... }` of the components that talk to the API server: only `kubeconfig_file`.
pub(crate) static CLIENT: Schema = Schema {
    attrs: &[
        ("kubeconfig_file", A::Optional),
        ("api_server", A::Unsupported(CLIENT_ONLY_KUBECONFIG)),
        ("bearer_token", A::Unsupported(CLIENT_ONLY_KUBECONFIG)),
        ("bearer_token_file", A::Unsupported(CLIENT_ONLY_KUBECONFIG)),
        ("proxy_url", A::Unsupported(CLIENT_ONLY_KUBECONFIG)),
        ("no_proxy", A::Unsupported(CLIENT_ONLY_KUBECONFIG)),
        (
            "proxy_from_environment",
            A::Unsupported(CLIENT_ONLY_KUBECONFIG),
        ),
        (
            "proxy_connect_header",
            A::Unsupported(CLIENT_ONLY_KUBECONFIG),
        ),
        ("follow_redirects", A::Unsupported(CLIENT_ONLY_KUBECONFIG)),
        ("enable_http2", A::Unsupported(CLIENT_ONLY_KUBECONFIG)),
        ("http_headers", A::Unsupported(CLIENT_ONLY_KUBECONFIG)),
    ],
    blocks: &[
        ("basic_auth", B::Unsupported(CLIENT_ONLY_KUBECONFIG), &EMPTY),
        (
            "authorization",
            B::Unsupported(CLIENT_ONLY_KUBECONFIG),
            &EMPTY,
        ),
        ("oauth2", B::Unsupported(CLIENT_ONLY_KUBECONFIG), &EMPTY),
        ("tls_config", B::Unsupported(CLIENT_ONLY_KUBECONFIG), &EMPTY),
    ],
};

/// Both components take the same arguments.
pub static REMOTE_KUBERNETES: Schema = Schema {
    attrs: &[
        ("namespace", A::Required),
        ("name", A::Required),
        ("poll_frequency", A::Optional),
        ("poll_timeout", A::Optional),
    ],
    blocks: &[("client", B::One, &CLIENT)],
};

/// Which API object a component reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    ConfigMap,
}

/// One `remote.kubernetes.*` component as the fetcher needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSpec {
    /// Component id, e.g. `remote.kubernetes.secret.creds`.
    pub id: String,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub poll_frequency: Duration,
    pub poll_timeout: Duration,
    /// `client { kubeconfig_file }`; otherwise in-cluster or `$KUBECONFIG`.
    pub kubeconfig_file: Option<PathBuf>,
}

/// Object data fetched before loading, by component id (values already decoded).
pub type Fetched = BTreeMap<String, BTreeMap<String, String>>;

/// The kind of object a component name reads, if it is a `remote.kubernetes.*` component.
pub fn kind(name: &str) -> Option<Kind> {
    match name {
        "remote.kubernetes.secret" => Some(Kind::Secret),
        "remote.kubernetes.configmap" => Some(Kind::ConfigMap),
        _ => None,
    }
}

/// Reads the arguments (Alloy's defaults: poll every minute, 15 s timeout).
pub fn spec(id: &str, kind: Kind, args: &Args, ctx: &mut Ctx<'_>) -> RemoteSpec {
    let kubeconfig_file = args
        .blocks_named("client")
        .next()
        .and_then(|c| c.opt_string("kubeconfig_file", ctx))
        .map(PathBuf::from);
    let poll_frequency = args
        .get("poll_frequency", ctx, Value::to_duration)
        .unwrap_or(Duration::from_secs(60));
    if poll_frequency.is_zero() {
        ctx.error(
            args.pos_of("poll_frequency"),
            "attribute \"poll_frequency\": must be greater than 0",
        );
    }
    RemoteSpec {
        id: id.to_string(),
        kind,
        namespace: args.string("namespace", "", ctx),
        name: args.string("name", "", ctx),
        poll_frequency,
        poll_timeout: args
            .get("poll_timeout", ctx, Value::to_duration)
            .unwrap_or(Duration::from_secs(15)),
        kubeconfig_file,
    }
}

/// The `data` export: the fetched object's data, or a placeholder for every key `keys` lists.
pub fn data_export(
    spec: &RemoteSpec,
    fetched: Option<&BTreeMap<String, String>>,
    keys: &BTreeSet<String>,
) -> Value {
    let wrap = |s: String| match spec.kind {
        Kind::Secret => Value::Secret(s),
        Kind::ConfigMap => Value::String(s),
    };
    let data = match fetched {
        Some(d) => d
            .iter()
            .map(|(k, v)| (k.clone(), wrap(v.clone())))
            .collect(),
        None => keys
            .iter()
            .map(|k| (k.clone(), wrap(format!("placeholder-{}-{k}", spec.name))))
            .collect(),
    };
    Value::Object(data)
}

/// Keys read from `<id>.data` anywhere in `bodies`: `data["k"]` (any constant index) and
/// `data.k`.
pub fn referenced_keys<'a>(id: &str, bodies: impl Iterator<Item = &'a [Stmt]>) -> BTreeSet<String> {
    let mut want: Vec<String> = id.split('.').map(str::to_string).collect();
    want.push("data".into());
    let mut out = BTreeSet::new();
    for body in bodies {
        keys_in_body(body, &want, &mut out);
    }
    out
}

fn keys_in_body(body: &[Stmt], want: &[String], out: &mut BTreeSet<String>) {
    for s in body {
        match s {
            Stmt::Attr(a) => keys_in_expr(&a.value, want, out),
            Stmt::Block(b) => keys_in_body(&b.body, want, out),
        }
    }
}

fn keys_in_expr(e: &Expr, want: &[String], out: &mut BTreeSet<String>) {
    if let Some(p) = e.reference_path() {
        if p.len() > want.len() && p[..want.len()] == *want {
            out.insert(p[want.len()].clone());
        }
        return;
    }
    match &e.kind {
        ExprKind::Literal(_) | ExprKind::Ident(_) => {}
        ExprKind::Index(a, b) => {
            if a.reference_path().as_deref() == Some(want) {
                if let Ok(Value::String(k)) = eval(b, &Scope::with_env(|_| None)) {
                    out.insert(k);
                }
            }
            keys_in_expr(a, want, out);
            keys_in_expr(b, want, out);
        }
        ExprKind::Array(v) => v.iter().for_each(|x| keys_in_expr(x, want, out)),
        ExprKind::Object(f) => f.iter().for_each(|x| keys_in_expr(&x.value, want, out)),
        ExprKind::Access(a, _) | ExprKind::Unary(_, a) | ExprKind::Paren(a) => {
            keys_in_expr(a, want, out)
        }
        ExprKind::Binary(_, a, b) => {
            keys_in_expr(a, want, out);
            keys_in_expr(b, want, out);
        }
        ExprKind::Call(f, args) => {
            keys_in_expr(f, want, out);
            args.iter().for_each(|x| keys_in_expr(x, want, out));
        }
    }
}
