//! The accept loop and per-connection limits: a cap on open connections, backoff when
//! the process runs out of descriptors, hyper's header-read timeout and an idle timer.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::{api, State};

/// First pause after an accept failure that retrying cannot fix at once (EMFILE ...).
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between accept attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one accept-failure WARN per this interval; the rest are counted.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// Whether an accept error means the process or system is out of a resource, so an
/// immediate retry would fail again (and spin).
fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accept failures: exponential backoff and a rate-limited WARN.
struct AcceptBackoff {
    next: Duration,
    last_warn: Option<Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    fn new() -> Self {
        AcceptBackoff {
            next: BACKOFF_MIN,
            last_warn: None,
            suppressed: 0,
        }
    }

    /// Records a failure; returns how long to wait before accepting again.
    fn failed(&mut self, e: &io::Error) -> Duration {
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            tracing::warn!(error = %e, suppressed = self.suppressed, "accept failed");
            self.last_warn = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        if !is_resource_exhaustion(e) {
            return Duration::ZERO;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }

    fn succeeded(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// The accept loop: one task per connection, graceful shutdown raced against a timeout.
pub async fn run(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    let mut backoff = AcceptBackoff::new();
    loop {
        // Go's netutil.LimitListener: at the cap, wait for a connection to close.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                backoff.succeeded();
                s
            }
            Err(e) => {
                let wait = backoff.failed(&e);
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => break,
                    }
                }
                continue;
            }
        };
        let conn = serve_connection(stream, state.clone(), &graceful);
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {
            tracing::warn!("connections still open after 5s; closing");
        }
    }
}

/// Serves one connection until it ends, its header-read timeout passes, or it has been
/// idle (no request in flight, no bytes either way) for `idle_timeout`.
fn serve_connection(
    stream: TcpStream,
    state: Arc<State>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let header_timeout = state.config.header_read_timeout;
    let idle_timeout = state.config.idle_timeout;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(ActivityIo {
        inner: stream,
        activity: activity.clone(),
    });
    let in_service = activity.clone();
    let svc = service_fn(move |req| {
        let state = state.clone();
        let activity = in_service.clone();
        async move {
            let _busy = activity.busy();
            match api::handle(state, req).await {
                api::Reply::Respond(r) => Ok(r),
                api::Reply::Reset => Err(crate::ResetConnection),
            }
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper starts this timer whenever it waits for a request head, so it also bounds
    // how long a keep-alive connection may sit between requests.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = graceful.watch(builder.serve_connection(io, svc).into_owned());
    async move {
        tokio::pin!(conn);
        let Some(idle) = idle_timeout else {
            let _ = conn.await;
            return;
        };
        loop {
            let wake = activity.idle_deadline(idle);
            tokio::select! {
                _ = &mut conn => return,
                _ = tokio::time::sleep_until(wake.into()) => {
                    if activity.idle_for(idle) {
                        // Dropping the connection closes the socket.
                        return;
                    }
                }
            }
        }
    }
}

/// When a connection last moved bytes, and how many of its requests are in flight.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// When the connection becomes idle if nothing happens meanwhile.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        self.last() + idle
    }

    fn idle_for(&self, idle: Duration) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && self.last().elapsed() >= idle
    }

    /// Marks a request in flight until the guard drops (a slow query is not idleness).
    fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }
}

struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that records its last successful read or write.
struct ActivityIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
