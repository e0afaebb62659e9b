//! One connection, from accept to close: the TLS handshake, HTTP/1.1 or HTTP/2, and the
//! timeouts that keep a slow or idle client from holding resources.
//!
//! A connection has [`Limits::header_read_timeout`] from accept until its first request's
//! headers are complete. That one deadline covers the TLS handshake, hyper's protocol
//! detection and the headers, so a client that trickles bytes at any stage is cut off.
//! After that, it may sit [`Limits::idle_timeout`] with no new request; hyper's own HTTP/1
//! header read timeout bounds each later request's headers as well.
//!
//! Each connection is its own task and every wait in it is bounded, so a thousand slow
//! clients cost a thousand sleeping tasks and nothing more: they hold no lock and take no
//! turn from the clients that send whole requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

use super::routes;
use super::state::{Limits, State};

/// The largest request head accepted, start line and headers together: SES's 8 KiB, which
/// is also the longest link the decoder reads. HTTP/1 answers 431 past it; HTTP/2 refuses
/// the stream.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// HTTP/1's read buffer cap, which is what bounds a request head there: hyper-util's
/// `auto` builder does not expose hyper's `max_header_size`, and a head that does not fit
/// the buffer is answered 431. 8 KiB is also hyper's floor for this setting.
pub const MAX_HTTP1_BUFFER: usize = MAX_HEADER_BYTES;

/// Streams one HTTP/2 connection may have open at once. A mail client loads a few images
/// and follows one link; 100 is what browsers expect and still bounds one client's share.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Streams a client may reset before the server stops accepting new ones from it: the
/// defence against "rapid reset" floods (CVE-2023-44487).
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// How often an idle HTTP/2 connection is pinged, and how long the answer may take, so that
/// dead peers behind NAT do not hold a slot until the idle timeout.
pub const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// How long a connection told to close (idle, or at shutdown) gets to finish what it is
/// writing before it is dropped.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The HTTP/1.1 + HTTP/2 builder every connection is served with.
pub(crate) fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HTTP1_BUFFER)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    builder
}

/// What a connection task needs besides its socket.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    pub(crate) state: State,
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Serves one accepted connection until it closes, times out, or is drained.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, context: ConnectionContext) {
    let accepted = Instant::now();
    match context.tls.clone() {
        None => drive(TokioIo::new(stream), peer, accepted, &context).await,
        // Boxed: an async fn's state is as large as its largest branch, and the TLS branch
        // (the handshake, then hyper over rustls's buffers) is far larger than the plain one.
        // Inline, every plain connection's task would be sized for TLS; boxed, a plain
        // connection holds about 3.6 KiB less while it is open (VmRSS with 10,000 idle
        // connections: 172 MB before, 136 MB after; `benches/compare.sh`), and a TLS one pays
        // one more allocation, next to its handshake.
        Some(acceptor) => Box::pin(serve_tls(stream, acceptor, peer, accepted, &context)).await,
    }
}

/// The TLS handshake, under the first deadline, then HTTP over it.
async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    peer: SocketAddr,
    accepted: Instant,
    context: &ConnectionContext,
) {
    let first_deadline = accepted + context.state.limits().header_read_timeout;
    match timeout_at(first_deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => drive(TokioIo::new(tls), peer, accepted, context).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

/// Drives HTTP on `io` under the connection's deadlines.
async fn drive<I>(io: TokioIo<I>, peer: SocketAddr, accepted: Instant, context: &ConnectionContext)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = context.state.limits();
    let activity = Arc::new(Activity::new(accepted));
    let service = {
        let (state, activity) = (context.state.clone(), Arc::clone(&activity));
        service_fn(move |request| {
            activity.request_seen();
            let state = state.clone();
            async move { Ok::<_, Infallible>(routes::respond(&request, peer.ip(), &state).await) }
        })
    };
    let connection = context.builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut shutdown = context.shutdown.clone();
    let mut closing = false;
    let mut deadline = accepted + limits.header_read_timeout;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = sleep_until(deadline) => {
                if closing {
                    return;
                }
                match activity.deadline(&limits) {
                    later if later > Instant::now() => deadline = later,
                    _ => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        deadline = Instant::now() + CLOSE_LINGER;
                    }
                }
            }
        }
    }
}

/// When a connection last started a request, to tell idle connections from busy ones.
/// Every answer is built synchronously, so a request is over almost as soon as it starts.
struct Activity {
    accepted: Instant,
    /// Milliseconds from `accepted` to the latest request, or `NONE` before the first.
    last_request_ms: AtomicU64,
}

impl Activity {
    const NONE: u64 = u64::MAX;

    fn new(accepted: Instant) -> Activity {
        Activity {
            accepted,
            last_request_ms: AtomicU64::new(Activity::NONE),
        }
    }

    fn request_seen(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(Activity::NONE - 1);
        self.last_request_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection is to be closed if nothing happens before then.
    fn deadline(&self, limits: &Limits) -> Instant {
        match self.last_request_ms.load(Ordering::Relaxed) {
            Activity::NONE => self.accepted + limits.header_read_timeout,
            ms => self.accepted + Duration::from_millis(ms) + limits.idle_timeout,
        }
    }
}
