//! `loki.write`: every `endpoint` block becomes an [`Endpoint`] of the agent's settings, with
//! Alloy's defaults and validation (auth, `tls_config`, `queue_config`), plus `max_streams`,
//! `external_labels` and the `wal` block.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::alloy::args::{Args, Ctx, Schema, A, B, EMPTY};
use crate::alloy::value::Value;
use crate::config::{Auth, Endpoint, Secret, Settings, Tls, TlsVersion, ENDPOINT_TENANT};
use crate::push::tls::{self, TlsField};

const NO_PROXY: &str = "HTTP proxies are not supported";

pub static BASIC_AUTH: Schema = Schema {
    attrs: &[
        ("username", A::Optional),
        ("password", A::Optional),
        ("password_file", A::Optional),
    ],
    blocks: &[],
};

pub static AUTHORIZATION: Schema = Schema {
    attrs: &[
        ("type", A::Optional),
        ("credentials", A::Optional),
        ("credentials_file", A::Optional),
    ],
    blocks: &[],
};

pub static TLS_CONFIG: Schema = Schema {
    attrs: &[
        ("ca_pem", A::Optional),
        ("ca_file", A::Optional),
        ("cert_pem", A::Optional),
        ("cert_file", A::Optional),
        ("key_pem", A::Optional),
        ("key_file", A::Optional),
        ("server_name", A::Optional),
        ("insecure_skip_verify", A::Optional),
        ("min_version", A::Optional),
    ],
    blocks: &[],
};

pub static QUEUE_CONFIG: Schema = Schema {
    attrs: &[
        ("capacity", A::Optional),
        ("min_shards", A::Optional),
        ("drain_timeout", A::Optional),
        ("block_on_overflow", A::Optional),
    ],
    blocks: &[],
};

pub static WAL: Schema = Schema {
    attrs: &[
        ("enabled", A::Optional),
        ("max_segment_age", A::Optional),
        ("min_read_frequency", A::Optional),
        ("max_read_frequency", A::Optional),
        ("drain_timeout", A::Optional),
    ],
    blocks: &[],
};

pub static ENDPOINT: Schema = Schema {
    attrs: &[
        ("url", A::Required),
        ("name", A::Optional),
        ("headers", A::Optional),
        ("batch_wait", A::Optional),
        ("batch_size", A::Optional),
        ("remote_timeout", A::Optional),
        ("min_backoff_period", A::Optional),
        ("max_backoff_period", A::Optional),
        ("max_backoff_retries", A::Optional),
        ("retry_on_http_429", A::Optional),
        ("tenant_id", A::Optional),
        ("bearer_token", A::Optional),
        ("bearer_token_file", A::Optional),
        ("follow_redirects", A::Optional),
        // Alloy's loki.write turns HTTP/2 off on its client whatever this says, and so do we.
        ("enable_http2", A::Optional),
        ("proxy_url", A::Unsupported(NO_PROXY)),
        ("no_proxy", A::Unsupported(NO_PROXY)),
        ("proxy_from_environment", A::Unsupported(NO_PROXY)),
        ("proxy_connect_header", A::Unsupported(NO_PROXY)),
        ("http_headers", A::Unsupported("use headers")),
    ],
    blocks: &[
        ("basic_auth", B::One, &BASIC_AUTH),
        ("authorization", B::One, &AUTHORIZATION),
        (
            "oauth2",
            B::Unsupported("use bearer_token_file, authorization or basic_auth"),
            &EMPTY,
        ),
        ("tls_config", B::One, &TLS_CONFIG),
        ("queue_config", B::One, &QUEUE_CONFIG),
    ],
};

pub static LOKI_WRITE: Schema = Schema {
    attrs: &[
        ("external_labels", A::Optional),
        ("max_streams", A::Optional),
    ],
    blocks: &[("endpoint", B::Many, &ENDPOINT), ("wal", B::One, &WAL)],
};

/// The parts of `loki.write` the agent's [`Settings`] has no field for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteExtras {
    /// `name` of the first endpoint, for logs.
    pub endpoint_name: String,
    /// Start-up notes (the `wal` block, settings accepted but without effect).
    pub notes: Vec<String>,
}

/// Applies `loki.write` arguments onto `settings`: `settings.endpoints` gets every endpoint
/// and the flat push fields mirror the first one.
pub fn apply(args: &Args, settings: &mut Settings, ctx: &mut Ctx<'_>) -> WriteExtras {
    let mut extras = WriteExtras::default();
    if let Some(l) = args.get("external_labels", ctx, Value::to_string_map) {
        settings.external_labels = l;
    }
    let max_streams = args
        .get("max_streams", ctx, Value::to_u64)
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    if let Some(w) = args.blocks_named("wal").next() {
        wal(w, &mut extras, ctx);
    }
    let blocks: Vec<&Args> = args.blocks_named("endpoint").collect();
    if blocks.is_empty() {
        ctx.error(args.pos, "at least one endpoint must be configured");
        return extras;
    }
    let mut names = BTreeSet::new();
    let mut drain = None;
    for ep in &blocks {
        let mut e = endpoint(ep, &mut extras, &mut drain, ctx);
        e.max_streams = max_streams;
        if !e.name.is_empty() && !names.insert(e.name.clone()) {
            ctx.error(
                ep.pos_of("name"),
                format!("duplicate endpoint name {:?}", e.name),
            );
        }
        settings.endpoints.push(e);
    }
    if let Some(d) = drain {
        settings.drain_timeout = d;
    }
    let first = settings.endpoints[0].clone();
    extras.endpoint_name = first.name.clone();
    settings.loki_url = first.url;
    settings.headers = first.headers;
    settings.auth = first.auth;
    settings.tls = first.tls;
    settings.batch_bytes = first.batch_bytes;
    settings.batch_wait = first.batch_wait;
    settings.request_timeout = first.request_timeout;
    settings.min_backoff = first.min_backoff;
    settings.max_backoff = first.max_backoff;
    settings.max_retries = first.max_retries;
    settings.retry_on_429 = first.retry_on_429;
    let tenants: BTreeSet<&str> = settings
        .endpoints
        .iter()
        .map(|e| e.tenant.as_str())
        .collect();
    settings.tenant = if tenants.len() == 1 {
        first.tenant
    } else {
        // Each endpoint sends its own tenant_id unless a stage.tenant chose one.
        ENDPOINT_TENANT.to_string()
    };
    if blocks.len() > 1 {
        extras.notes.push(format!(
            "loki.write: {} endpoints; every entry goes to each, and a file position advances only after all of them acknowledged it (a failing endpoint holds positions for all; its queue_config.capacity buffer lets the others go on meanwhile)",
            blocks.len()
        ));
    }
    extras
}

fn wal(w: &Args, extras: &mut WriteExtras, ctx: &mut Ctx<'_>) {
    let enabled = w.bool("enabled", false, ctx);
    let min = w.get("min_read_frequency", ctx, Value::to_duration);
    let max = w.get("max_read_frequency", ctx, Value::to_duration);
    for a in ["max_segment_age", "drain_timeout"] {
        let _ = w.get(a, ctx, Value::to_duration);
    }
    // Alloy's defaults: 250ms and 1s.
    let min = min.unwrap_or(std::time::Duration::from_millis(250));
    let max = max.unwrap_or(std::time::Duration::from_secs(1));
    if min >= max {
        ctx.error(
            w.pos,
            "WAL min read frequency should be lower than max read frequency",
        );
    }
    if enabled {
        extras.notes.push(
            "loki.write: wal is accepted but not needed: positions advance only after Loki acknowledges, so the log files themselves are the write-ahead log (nothing is lost on restart or outage while they exist)".into(),
        );
    }
}

fn secret_or_file(
    a: &Args,
    inline: &str,
    file: &str,
    what: &str,
    ctx: &mut Ctx<'_>,
) -> Option<Secret> {
    let i = a
        .get(inline, ctx, Value::to_secret)
        .filter(|s| !s.is_empty());
    let f = a.opt_string(file, ctx).filter(|s| !s.is_empty());
    match (i, f) {
        (Some(_), Some(_)) => {
            ctx.error(
                a.pos_of(file),
                format!("at most one of {what} must be configured"),
            );
            None
        }
        (Some(s), None) => Some(Secret::Inline(s)),
        (None, Some(p)) => Some(Secret::File(PathBuf::from(p))),
        (None, None) => None,
    }
}

fn endpoint(
    ep: &Args,
    extras: &mut WriteExtras,
    drain: &mut Option<std::time::Duration>,
    ctx: &mut Ctx<'_>,
) -> Endpoint {
    let mut e = Endpoint::default();
    let mut https = false;
    if let Some(url) = ep.opt_string("url", ctx) {
        https = url.starts_with("https://");
        if !(url.starts_with("http://") || https) {
            ctx.error(
                ep.pos_of("url"),
                format!("attribute \"url\": {url:?} is not an http:// or https:// URL"),
            );
        }
        // A bare base URL gets Loki's push path (an agent convenience; Alloy posts to the
        // URL as written).
        e.url = crate::config::push_url(&url);
    }
    e.name = ep.string("name", "", ctx);
    e.tenant = ep.string("tenant_id", "", ctx);
    if let Some(h) = ep.get("headers", ctx, Value::to_string_map) {
        e.headers = h;
    }
    if let Some(d) = ep.get("batch_wait", ctx, Value::to_duration) {
        e.batch_wait = d;
    }
    if let Some(b) = ep.get("batch_size", ctx, Value::to_bytes) {
        e.batch_bytes = b;
    }
    if let Some(d) = ep.get("remote_timeout", ctx, Value::to_duration) {
        e.request_timeout = d;
    }
    if let Some(d) = ep.get("min_backoff_period", ctx, Value::to_duration) {
        e.min_backoff = d;
    }
    if let Some(d) = ep.get("max_backoff_period", ctx, Value::to_duration) {
        e.max_backoff = d;
    }
    if let Some(n) = ep.get("max_backoff_retries", ctx, Value::to_u64) {
        e.max_retries = u32::try_from(n).unwrap_or(u32::MAX);
    }
    e.retry_on_429 = ep.bool("retry_on_http_429", true, ctx);
    e.follow_redirects = ep.bool("follow_redirects", true, ctx);
    let _ = ep.bool("enable_http2", true, ctx);
    e.auth = auth(ep, ctx);
    if let Some(t) = ep.blocks_named("tls_config").next() {
        e.tls = tls_config(t, https, extras, ctx);
    }
    if let Some(q) = ep.blocks_named("queue_config").next() {
        if let Some(c) = q.get("capacity", ctx, Value::to_bytes) {
            e.queue_capacity = c;
        }
        e.block_on_overflow = q.bool("block_on_overflow", true, ctx);
        if let Some(d) = q.get("drain_timeout", ctx, Value::to_duration) {
            *drain = Some(drain.map_or(d, |x: std::time::Duration| x.max(d)));
        }
        if let Some(n) = q.get("min_shards", ctx, Value::to_u64) {
            if n > 1 {
                extras.notes.push(format!(
                    "loki.write: queue_config.min_shards = {n} is accepted and ignored: each tenant has its own sender per endpoint, one request at a time, so Loki receives every stream in order"
                ));
            }
        }
    }
    e
}

/// The endpoint's auth, with Alloy's "at most one" rules.
fn auth(ep: &Args, ctx: &mut Ctx<'_>) -> Auth {
    let basic = ep.blocks_named("basic_auth").next();
    let authz = ep.blocks_named("authorization").next();
    let token = ep
        .get("bearer_token", ctx, Value::to_secret)
        .filter(|s| !s.is_empty());
    let token_file = ep
        .opt_string("bearer_token_file", ctx)
        .filter(|s| !s.is_empty());
    let count = usize::from(basic.is_some())
        + usize::from(authz.is_some())
        + usize::from(token.is_some())
        + usize::from(token_file.is_some());
    if count > 1 {
        ctx.error(
            ep.pos,
            "at most one of basic_auth, authorization, oauth2, bearer_token & bearer_token_file must be configured",
        );
        return Auth::None;
    }
    if let Some(t) = token {
        return Auth::Credentials {
            scheme: "Bearer".into(),
            credentials: Secret::Inline(t),
        };
    }
    if let Some(f) = token_file {
        return Auth::Credentials {
            scheme: "Bearer".into(),
            credentials: Secret::File(PathBuf::from(f)),
        };
    }
    if let Some(b) = basic {
        let username = b.string("username", "", ctx);
        let password = secret_or_file(
            b,
            "password",
            "password_file",
            "basic_auth password & password_file",
            ctx,
        )
        .unwrap_or_default();
        return Auth::Basic { username, password };
    }
    if let Some(a) = authz {
        let scheme = a.string("type", "", ctx).trim().to_string();
        let scheme = if scheme.is_empty() {
            "Bearer".to_string()
        } else {
            scheme
        };
        if scheme.eq_ignore_ascii_case("basic") {
            ctx.error(
                a.pos_of("type"),
                "authorization type cannot be set to \"basic\", use \"basic_auth\" block instead",
            );
        }
        let credentials = secret_or_file(
            a,
            "credentials",
            "credentials_file",
            "authorization credentials & credentials_file",
            ctx,
        )
        .unwrap_or_default();
        return Auth::Credentials {
            scheme,
            credentials,
        };
    }
    Auth::None
}

fn tls_config(t: &Args, https: bool, extras: &mut WriteExtras, ctx: &mut Ctx<'_>) -> Tls {
    let mut tls = Tls {
        ca: secret_or_file(t, "ca_pem", "ca_file", "ca_pem and ca_file", ctx),
        cert: secret_or_file(t, "cert_pem", "cert_file", "cert_pem and cert_file", ctx),
        key: secret_or_file(t, "key_pem", "key_file", "key_pem and key_file", ctx),
        server_name: t.opt_string("server_name", ctx).filter(|s| !s.is_empty()),
        insecure_skip_verify: t.bool("insecure_skip_verify", false, ctx),
        min_version: TlsVersion::Tls12,
    };
    if let Some(v) = t.opt_string("min_version", ctx) {
        match v.as_str() {
            "TLS13" => tls.min_version = TlsVersion::Tls13,
            "TLS12" => {}
            "TLS10" | "TLS11" => extras.notes.push(format!(
                "loki.write: tls_config.min_version = {v:?}: the agent's TLS stack speaks TLS 1.2 and 1.3 only"
            )),
            _ => ctx.error(t.pos_of("min_version"), format!("unknown TLS version: {v}")),
        }
    }
    let pos_of = |field: TlsField| match field {
        TlsField::Ca if t.has("ca_file") => t.pos_of("ca_file"),
        TlsField::Ca => t.pos_of("ca_pem"),
        TlsField::Cert if t.has("cert_file") => t.pos_of("cert_file"),
        TlsField::Cert => t.pos_of("cert_pem"),
        TlsField::Key if t.has("key_file") => t.pos_of("key_file"),
        TlsField::Key => t.pos_of("key_pem"),
        TlsField::ServerName => t.pos_of("server_name"),
        TlsField::SystemRoots => t.pos,
    };
    if let Some(n) = &tls.server_name {
        if let Err(e) = tls::server_name(n) {
            ctx.error(pos_of(e.field), e.message);
        }
    }
    // Files are read and PEM parsed now, so a typo is reported with its position. The
    // system roots are only loaded when the agent starts.
    if https {
        let check = Tls {
            insecure_skip_verify: tls.insecure_skip_verify || tls.ca.is_none(),
            ..tls.clone()
        };
        if let Err(e) = tls::client_config(&check) {
            ctx.error(pos_of(e.field), format!("tls_config: {}", e.message));
        }
    } else if tls != Tls::default() {
        extras
            .notes
            .push("loki.write: tls_config has no effect on an http:// endpoint".into());
    }
    tls
}
