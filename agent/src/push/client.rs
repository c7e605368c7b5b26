//! The HTTP side of a push: a keep-alive hyper client that posts one encoded batch.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::retry::Outcome;
use crate::config::{Auth, Settings};
use crate::error::AgentError;

/// What a push attempt returned, with the bits needed for logs and metrics.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: Outcome,
    pub took: Duration,
    /// Start of the response body or the connection error, for the log line.
    pub detail: String,
}

/// A Loki push client shared by all tenants (connections are pooled and kept alive).
#[derive(Clone, Debug)]
pub struct LokiClient {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

fn header_value(s: &str) -> Result<HeaderValue, AgentError> {
    HeaderValue::from_str(s).map_err(|e| AgentError::Settings(format!("header value: {e}")))
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl LokiClient {
    pub fn new(settings: &Settings) -> Result<Self, AgentError> {
        let uri: Uri = settings
            .push_url()
            .parse()
            .map_err(|e| AgentError::Settings(format!("loki url {:?}: {e}", settings.loki_url)))?;
        if uri.scheme_str() != Some("http") {
            return Err(AgentError::Settings(format!(
                "loki url {:?}: only http:// is supported",
                settings.loki_url
            )));
        }
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
        match &settings.auth {
            Auth::None => {}
            Auth::Basic { username, password } => headers.push((
                AUTHORIZATION,
                header_value(&format!(
                    "Basic {}",
                    base64(format!("{username}:{password}").as_bytes())
                ))?,
            )),
            Auth::Bearer { token } => {
                headers.push((AUTHORIZATION, header_value(&format!("Bearer {token}"))?))
            }
        }
        for (k, v) in &settings.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| AgentError::Settings(format!("header name {k:?}: {e}")))?;
            // Like Alloy, extra headers never override the ones the agent sets.
            if !headers.iter().any(|(n, _)| *n == name) && name.as_str() != "x-scope-orgid" {
                headers.push((name, header_value(v)?));
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.request_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(LokiClient {
            client,
            uri,
            headers,
            timeout: settings.request_timeout,
        })
    }

    /// `host:port` of the endpoint (the `host` metric label).
    pub fn host(&self) -> String {
        self.uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Posts one snappy-compressed `PushRequest`.
    pub async fn push(&self, body: Bytes, tenant: &str) -> Attempt {
        let started = Instant::now();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if !tenant.is_empty() {
            req = req.header("X-Scope-OrgID", tenant);
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return Attempt {
                    outcome: Outcome::Connection,
                    took: started.elapsed(),
                    detail: format!("building request: {e}"),
                }
            }
        };
        let result = tokio::time::timeout(self.timeout, async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let status = resp.status().as_u16();
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
            let detail = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            Ok::<_, String>((status, retry_after, detail))
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

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
