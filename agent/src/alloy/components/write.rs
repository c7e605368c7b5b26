//! `loki.write`: one endpoint mapped onto the agent's push settings.

use crate::alloy::args::{Args, Ctx, Schema, A, B, EMPTY};
use crate::alloy::value::Value;
use crate::config::{Auth, Settings};

const NO_TLS: &str = "the agent speaks plain HTTP to Loki; put TLS in front (gateway or sidecar)";
const NO_PROXY: &str = "HTTP proxies are not supported";

pub static BASIC_AUTH: Schema = Schema {
    attrs: &[
        ("username", A::Optional),
        ("password", A::Optional),
        (
            "password_file",
            A::Unsupported("put the password in the config, e.g. from sys.env(\"LOKI_PASSWORD\")"),
        ),
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
        (
            "bearer_token_file",
            A::Unsupported("put the token in the config, e.g. from sys.env(\"LOKI_TOKEN\")"),
        ),
        ("proxy_url", A::Unsupported(NO_PROXY)),
        ("no_proxy", A::Unsupported(NO_PROXY)),
        ("proxy_from_environment", A::Unsupported(NO_PROXY)),
        ("proxy_connect_header", A::Unsupported(NO_PROXY)),
        (
            "follow_redirects",
            A::Unsupported("redirects are never followed"),
        ),
        ("enable_http2", A::Unsupported("the agent uses HTTP/1.1")),
        ("http_headers", A::Unsupported("use headers")),
    ],
    blocks: &[
        ("basic_auth", B::One, &BASIC_AUTH),
        (
            "authorization",
            B::Unsupported("use bearer_token or basic_auth"),
            &EMPTY,
        ),
        (
            "oauth2",
            B::Unsupported("use bearer_token or basic_auth"),
            &EMPTY,
        ),
        ("tls_config", B::Unsupported(NO_TLS), &EMPTY),
        (
            "queue_config",
            B::Unsupported(
                "the agent queues in bytes per tenant and applies back-pressure to reading",
            ),
            &EMPTY,
        ),
    ],
};

pub static LOKI_WRITE: Schema = Schema {
    attrs: &[
        ("external_labels", A::Optional),
        (
            "max_streams",
            A::Unsupported("the agent never drops streams; set limits in Loki"),
        ),
    ],
    blocks: &[
        ("endpoint", B::Many, &ENDPOINT),
        (
            "wal",
            B::Unsupported(
                "positions advance only when Loki acknowledges, so the log files are the WAL",
            ),
            &EMPTY,
        ),
    ],
};

/// The parts of `loki.write` the agent's [`Settings`] has no field for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteExtras {
    /// `endpoint.name`, for metric labels.
    pub endpoint_name: String,
}

/// Applies `loki.write` arguments onto `settings`.
pub fn apply(args: &Args, settings: &mut Settings, ctx: &mut Ctx<'_>) -> WriteExtras {
    let mut extras = WriteExtras::default();
    if let Some(l) = args.get("external_labels", ctx, Value::to_string_map) {
        settings.external_labels = l;
    }
    let endpoints: Vec<&Args> = args.blocks_named("endpoint").collect();
    match endpoints.as_slice() {
        [] => ctx.error(args.pos, "missing required block \"endpoint\""),
        [ep, rest @ ..] => {
            for extra in rest {
                ctx.error(extra.pos, "only one endpoint per loki.write is supported (fan-out to several Lokis is not implemented)");
            }
            endpoint(ep, settings, &mut extras, ctx);
        }
    }
    extras
}

fn endpoint(ep: &Args, s: &mut Settings, extras: &mut WriteExtras, ctx: &mut Ctx<'_>) {
    if let Some(url) = ep.opt_string("url", ctx) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            ctx.error(
                ep.pos_of("url"),
                format!("attribute \"url\": {url:?} is not an http:// URL"),
            );
        } else if url.starts_with("https://") {
            ctx.error(
                ep.pos_of("url"),
                format!("attribute \"url\": https is not supported ({NO_TLS})"),
            );
        }
        s.loki_url = url;
    }
    extras.endpoint_name = ep.string("name", "", ctx);
    s.tenant = ep.string("tenant_id", "", ctx);
    if let Some(h) = ep.get("headers", ctx, Value::to_string_map) {
        s.headers = h;
    }
    if let Some(d) = ep.get("batch_wait", ctx, Value::to_duration) {
        s.batch_wait = d;
    }
    if let Some(b) = ep.get("batch_size", ctx, Value::to_bytes) {
        s.batch_bytes = b;
    }
    if let Some(d) = ep.get("remote_timeout", ctx, Value::to_duration) {
        s.request_timeout = d;
    }
    if let Some(d) = ep.get("min_backoff_period", ctx, Value::to_duration) {
        s.min_backoff = d;
    }
    if let Some(d) = ep.get("max_backoff_period", ctx, Value::to_duration) {
        s.max_backoff = d;
    }
    if let Some(n) = ep.get("max_backoff_retries", ctx, Value::to_u64) {
        s.max_retries = u32::try_from(n).unwrap_or(u32::MAX);
    }
    s.retry_on_429 = ep.bool("retry_on_http_429", true, ctx);
    let bearer = ep.get("bearer_token", ctx, Value::to_secret);
    let basic = ep.blocks_named("basic_auth").next();
    match (bearer, basic) {
        (Some(_), Some(b)) => ctx.error(
            b.pos,
            "at most one of basic_auth and bearer_token may be set",
        ),
        (Some(token), None) => s.auth = Auth::Bearer { token },
        (None, Some(b)) => {
            s.auth = Auth::Basic {
                username: b.string("username", "", ctx),
                password: b.get("password", ctx, Value::to_secret).unwrap_or_default(),
            }
        }
        (None, None) => {}
    }
}
