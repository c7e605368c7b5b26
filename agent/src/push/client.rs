//! The HTTP side of a push: a keep-alive hyper client (http or https via rustls) that posts
//! one encoded batch to one endpoint.
//!
//! Per request, like Alloy's Prometheus HTTP client: credentials files are read again, TLS
//! files are re-read and the TLS setup is rebuilt when they changed, and an `Authorization`
//! header from `headers` wins over the configured auth.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, USER_AGENT,
};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::{Mutex, RwLock};

use super::retry::Outcome;
use super::tls::{self, TlsError};
use crate::config::{Auth, Endpoint, Tls, ENDPOINT_TENANT};
use crate::error::AgentError;

/// Redirect hops followed per push (Go's http.Client stops after 10).
const MAX_REDIRECTS: usize = 10;
/// Response body bytes kept: enough for Loki's refusal messages, bounded for any server.
pub const MAX_DETAIL: usize = 64 * 1024;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What a push attempt returned, with the bits needed for logs and metrics.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: Outcome,
    pub took: Duration,
    /// The response body (up to [`MAX_DETAIL`] bytes: a 400 names the refused entries) or
    /// the connection error.
    pub detail: String,
}

/// What a request carries besides the body: from the endpoint's `headers`, auth and
/// `tenant_id`, which `remote.kubernetes.*` data can change while the agent runs.
#[derive(Debug)]
struct Creds {
    /// Headers the agent sets, then the endpoint's extra `headers` that do not clash.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// An `X-Scope-OrgID` from the endpoint's `headers`: sent only with batches that have no
    /// tenant of their own (as Alloy, which sets the tenant header first and then adds custom
    /// headers whose key is still unset).
    org_id_header: Option<HeaderValue>,
    /// Configured auth, unless `headers` already has an `Authorization`.
    auth: Option<Auth>,
    /// `tenant_id`: the tenant of batches queued under [`ENDPOINT_TENANT`].
    tenant: String,
}

impl Creds {
    /// Validates and prepares the endpoint's headers and auth.
    fn new(ep: &Endpoint) -> Result<Creds, AgentError> {
        let mut headers = vec![
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            ),
            (CONTENT_ENCODING, HeaderValue::from_static("snappy")),
            (
                USER_AGENT,
                HeaderValue::from_static(concat!("agent/", env!("CARGO_PKG_VERSION"))),
            ),
        ];
        let mut custom_auth = false;
        let mut org_id_header = None;
        for (k, v) in &ep.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| AgentError::Settings(format!("header name {k:?}: {e}")))?;
            // Like Alloy, extra headers never replace the ones the client sets itself
            // (content type, user agent, tenant); an Authorization header replaces the
            // configured auth, as Alloy's auth round trippers leave such requests alone.
            if name.as_str() == "x-scope-orgid" {
                if !ep.tenant.is_empty() {
                    tracing::warn!(header = %name, url = %ep.url, tenant = %ep.tenant,
                        "custom header key already exists, skipping: tenant_id is sent instead");
                }
                org_id_header = Some(header_value(v)?);
                continue;
            }
            if headers.iter().any(|(n, _)| *n == name) {
                tracing::warn!(header = %name, url = %ep.url, "custom header key already exists, skipping");
                continue;
            }
            custom_auth |= name == AUTHORIZATION;
            headers.push((name, header_value(v)?));
        }
        // Check the credentials once now so a typo in a path is reported at start.
        if !custom_auth {
            authorization(&ep.auth).map_err(AgentError::Settings)?;
        }
        Ok(Creds {
            headers,
            org_id_header,
            auth: (!custom_auth).then(|| ep.auth.clone()),
            tenant: ep.tenant.clone(),
        })
    }
}

/// The hyper client and the TLS file contents it was built from.
#[derive(Debug)]
struct Transport {
    client: HttpsClient,
    tls_files: Vec<Vec<u8>>,
}

/// A Loki push client for one endpoint, shared by all tenants (connections are pooled).
#[derive(Clone, Debug)]
pub struct LokiClient {
    transport: Arc<Mutex<Transport>>,
    uri: Uri,
    https: bool,
    /// Headers, auth and tenant: replaced as a whole by [`LokiClient::update`].
    creds: Arc<RwLock<Arc<Creds>>>,
    tls: Tls,
    timeout: Duration,
    follow_redirects: bool,
}

fn header_value(s: &str) -> Result<HeaderValue, AgentError> {
    HeaderValue::from_str(s).map_err(|e| AgentError::Settings(format!("header value: {e}")))
}

/// The contents of the TLS files (empty when a file is unreadable: the rebuild reports it).
fn snapshot(tls: &Tls) -> Vec<Vec<u8>> {
    tls.files()
        .into_iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect()
}

fn build_transport(tls: &Tls, https: bool, timeout: Duration) -> Result<HttpsClient, TlsError> {
    let config = if https {
        tls::client_config(tls)?
    } else {
        // Never used for http:// URLs; avoids loading the system roots for nothing.
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            field: tls::TlsField::Ca,
            message: e.to_string(),
        })?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
    };
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    http.enforce_http(false);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match &tls.server_name {
        Some(name) => {
            builder.with_server_name_resolver(FixedServerNameResolver::new(tls::server_name(name)?))
        }
        None => builder,
    };
    let connector = builder.enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// The `Authorization` value for `auth` now (files are read again).
pub fn authorization(auth: &Auth) -> Result<Option<String>, String> {
    match auth {
        Auth::None => Ok(None),
        Auth::Basic { username, password } => {
            let p = password
                .read()
                .map_err(|e| format!("unable to read basic auth password: {e}"))?;
            Ok(Some(basic(username, &p)))
        }
        Auth::Credentials {
            scheme,
            credentials,
        } => {
            let c = credentials
                .read()
                .map_err(|e| format!("unable to read authorization credentials: {e}"))?;
            Ok(Some(format!("{scheme} {c}")))
        }
    }
}

impl LokiClient {
    /// Builds the client of one endpoint. Fails on a bad URL, header or TLS setup (files are
    /// read now, so a missing CA is a start-up error, not a stream of failed pushes).
    pub fn new(ep: &Endpoint) -> Result<Self, AgentError> {
        let uri: Uri = ep
            .url
            .parse()
            .map_err(|e| AgentError::Settings(format!("loki url {:?}: {e}", ep.url)))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(AgentError::Settings(format!(
                    "loki url {:?}: must start with http:// or https://",
                    ep.url
                )))
            }
        };
        let creds = Creds::new(ep)?;
        let client = build_transport(&ep.tls, https, ep.request_timeout)
            .map_err(|e| AgentError::Settings(format!("loki url {:?}: tls_config: {e}", ep.url)))?;
        Ok(LokiClient {
            transport: Arc::new(Mutex::new(Transport {
                client,
                tls_files: snapshot(&ep.tls),
            })),
            uri,
            https,
            creds: Arc::new(RwLock::new(Arc::new(creds))),
            tls: ep.tls.clone(),
            timeout: ep.request_timeout,
            follow_redirects: ep.follow_redirects,
        })
    }

    /// Takes the headers, auth and `tenant_id` of `ep` (the same endpoint, its
    /// `remote.kubernetes.*` data changed) for every later request, retries included. On an
    /// error the previous values stay.
    pub fn update(&self, ep: &Endpoint) -> Result<(), AgentError> {
        let creds = Creds::new(ep)?;
        *self.creds.write() = Arc::new(creds);
        Ok(())
    }

    /// `host:port` of the endpoint (the `host` metric label).
    pub fn host(&self) -> String {
        self.uri
            .authority()
            .map(|a| a.host().to_string() + &a.port().map(|p| format!(":{p}")).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The hyper client, rebuilt first when a TLS file changed since the last request.
    fn client(&self) -> Result<HttpsClient, String> {
        let mut t = self.transport.lock();
        if self.https && !self.tls.files().is_empty() {
            let now = snapshot(&self.tls);
            if now != t.tls_files {
                let client = build_transport(&self.tls, self.https, self.timeout)
                    .map_err(|e| format!("tls_config: {e}"))?;
                tracing::info!(url = %self.uri, "TLS files changed; new connections use them");
                *t = Transport {
                    client,
                    tls_files: now,
                };
            }
        }
        Ok(t.client.clone())
    }

    /// Posts one snappy-compressed `PushRequest`.
    pub async fn push(&self, body: Bytes, tenant: &str) -> Attempt {
        let started = Instant::now();
        let failed = |detail: String| Attempt {
            outcome: Outcome::Connection,
            took: started.elapsed(),
            detail,
        };
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let creds = self.creds.read().clone();
        let tenant = if tenant == ENDPOINT_TENANT {
            creds.tenant.as_str()
        } else {
            tenant
        };
        let auth = match creds.auth.as_ref().map(authorization) {
            Some(Ok(a)) => a,
            Some(Err(e)) => return failed(e),
            None => None,
        };
        let result = tokio::time::timeout(self.timeout, async {
            let mut uri = self.uri.clone();
            let mut same_origin = true;
            let mut hops = 0;
            loop {
                let mut req = Request::builder().method(Method::POST).uri(uri.clone());
                for (k, v) in &creds.headers {
                    // Go drops credentials when a redirect leaves the original host.
                    if same_origin || *k != AUTHORIZATION {
                        req = req.header(k, v);
                    }
                }
                if let (Some(a), true) = (&auth, same_origin) {
                    req = req.header(AUTHORIZATION, a);
                }
                if !tenant.is_empty() {
                    req = req.header("X-Scope-OrgID", tenant);
                } else if let Some(v) = &creds.org_id_header {
                    req = req.header("X-Scope-OrgID", v);
                }
                let req = req
                    .body(Full::new(body.clone()))
                    .map_err(|e| format!("building request: {e}"))?;
                let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
                let status = resp.status().as_u16();
                if self.follow_redirects && matches!(status, 307 | 308) && hops < MAX_REDIRECTS {
                    if let Some(next) = redirect_target(&uri, resp.headers().get(LOCATION)) {
                        // Drain so the connection can be reused.
                        let _ = resp.into_body().collect().await;
                        same_origin &= next.authority() == self.uri.authority();
                        uri = next;
                        hops += 1;
                        continue;
                    }
                }
                let retry_after = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                // Read the body to the end so the connection goes back to the pool.
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let detail =
                    String::from_utf8_lossy(&body[..body.len().min(MAX_DETAIL)]).into_owned();
                return Ok::<_, String>((status, retry_after, detail));
            }
        })
        .await;
        let took = started.elapsed();
        match result {
            Ok(Ok((code, retry_after, detail))) => Attempt {
                outcome: Outcome::Status { code, retry_after },
                took,
                detail,
            },
            Ok(Err(e)) => Attempt {
                outcome: Outcome::Connection,
                took,
                detail: e,
            },
            Err(_) => Attempt {
                outcome: Outcome::Connection,
                took,
                detail: "request timed out".into(),
            },
        }
    }
}

/// Where a 307/308 points: an absolute URL, or a path on the current origin.
fn redirect_target(current: &Uri, location: Option<&HeaderValue>) -> Option<Uri> {
    let loc = location?.to_str().ok()?;
    if loc.starts_with('/') && !loc.starts_with("//") {
        let mut parts = current.clone().into_parts();
        parts.path_and_query = Some(loc.parse().ok()?);
        return Uri::from_parts(parts).ok();
    }
    let uri: Uri = loc.parse().ok()?;
    matches!(uri.scheme_str(), Some("http" | "https")).then_some(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        let a = Auth::Basic {
            username: "user".into(),
            password: Secret::Inline("pass".into()),
        };
        assert_eq!(
            authorization(&a).unwrap().as_deref(),
            Some("Basic dXNlcjpwYXNz")
        );
    }

    #[test]
    fn credentials_files_are_read_on_every_call_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "one\n").unwrap();
        let a = Auth::Credentials {
            scheme: "Bearer".into(),
            credentials: Secret::File(f.clone()),
        };
        assert_eq!(authorization(&a).unwrap().as_deref(), Some("Bearer one"));
        std::fs::write(&f, "  two  ").unwrap();
        assert_eq!(authorization(&a).unwrap().as_deref(), Some("Bearer two"));
        std::fs::remove_file(&f).unwrap();
        assert!(authorization(&a)
            .unwrap_err()
            .starts_with("unable to read authorization credentials"));
    }

    #[test]
    fn redirect_targets_resolve_relative_paths_on_the_same_origin() {
        let cur: Uri = "http://127.0.0.1:1/loki/api/v1/push".parse().unwrap();
        let loc = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            redirect_target(&cur, Some(&loc("/other/push"))).unwrap(),
            "http://127.0.0.1:1/other/push"
        );
        assert_eq!(
            redirect_target(&cur, Some(&loc("https://h:2/p"))).unwrap(),
            "https://h:2/p"
        );
        assert_eq!(redirect_target(&cur, Some(&loc("ftp://h/p"))), None);
        assert_eq!(redirect_target(&cur, None), None);
    }

    #[test]
    fn host_is_host_and_port_without_userinfo() {
        let ep = Endpoint {
            url: "https://u:p@loki.example:8443/loki/api/v1/push".into(),
            tls: Tls {
                insecure_skip_verify: true,
                ..Tls::default()
            },
            ..Endpoint::default()
        };
        assert_eq!(LokiClient::new(&ep).unwrap().host(), "loki.example:8443");
        assert_eq!(ep.host(), "loki.example:8443");
    }
}
