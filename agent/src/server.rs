//! The operations HTTP server: `/metrics`, `/-/ready`, `/-/healthy`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Shared state of the handlers.
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn route(state: &ServerState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        ),
        (&Method::GET, "/-/ready") if state.ready.load(Ordering::Relaxed) => {
            respond(StatusCode::OK, "text/plain", "Agent is ready.\n")
        }
        (&Method::GET, "/-/ready") => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "Agent is not ready.\n",
        ),
        (&Method::GET, "/-/healthy") => {
            respond(StatusCode::OK, "text/plain", "Agent is healthy.\n")
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Serves until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<ServerState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = route(&state, &req);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
