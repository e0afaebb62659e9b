//! One connection, from accept to close: the TLS handshake, HTTP/1.1 or HTTP/2, and the
//! timeouts that keep a slow or idle client from holding resources.
//!
//! A connection has [`Limits::header_read_timeout`] from accept until its first request's
//! headers are complete. That one deadline covers the TLS handshake, protocol detection
//! (the HTTP/2 preface or not) and the headers, so a client that trickles bytes at any stage
//! is cut off.
//! After that, each request must have its headers in within [`Limits::idle_timeout`] of the
//! one before, which bounds both the idle wait and a later request's headers.
//!
//! hyper's own HTTP/1 header read timeout is off. It starts when hyper begins waiting for the
//! next request, so an idle keep-alive connection was closed after `header_read_timeout`
//! rather than `idle_timeout`; and it made and dropped a timer entry for every request.
//!
//! Each connection is its own task and every wait in it is bounded, so a thousand slow
//! clients cost a thousand sleeping tasks and nothing more: they hold no lock and take no
//! turn from the clients that send whole requests.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

use super::admission::ConnectionSlot;
use super::routes::{self, Answer, Reply};
use super::state::{Limits, State};

/// The largest request head accepted, start line and headers together: SES's 8 KiB, which
/// is also the longest link the decoder reads. HTTP/1 answers 431 past it; HTTP/2 refuses
/// the stream.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// HTTP/1's read buffer cap, which is what bounds a request head there: a head that does
/// not fit the buffer is answered 431. 8 KiB is also hyper's floor for this setting.
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

/// The HTTP/2 connection preface (RFC 9113, section 3.4), which a client with prior
/// knowledge sends first. A connection whose first bytes are anything else is HTTP/1.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP/1.1 and HTTP/2 builders every connection is served with, one of them per
/// connection as [`detect`] finds.
///
/// Not hyper-util's `auto` builder: its connection is an enum sized for HTTP/2 (1,560 bytes
/// against HTTP/1's 696), and every HTTP/1 connection would carry that for its whole life.
pub(crate) struct HttpBuilder {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

/// The HTTP/1.1 + HTTP/2 builders. Their timeouts are the connection's own (see the module
/// docs), but for HTTP/2's keep-alive pings.
pub(crate) fn http_builder() -> HttpBuilder {
    let mut http1 = http1::Builder::new();
    // Without a timer: the connection's own deadline (see the module docs) bounds the heads.
    http1
        .header_read_timeout(None)
        .max_buf_size(MAX_HTTP1_BUFFER)
        .keep_alive(true);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    HttpBuilder { http1, http2 }
}

/// What a connection task needs besides its socket.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    pub(crate) state: State,
    pub(crate) builder: Arc<HttpBuilder>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Serves one accepted connection until it closes, times out, or is drained, then gives
/// back `permit`, its place under `max_connections` and `max_connections_per_ip`.
///
/// Not an `async fn`: a task stores its whole future for as long as the connection is open,
/// and an `async fn`'s future keeps room for every argument and local, even those moved on
/// long before. This one holds only what an open connection needs: each connection's task
/// is a 640-byte allocation so, against 1,152 written as `async fn`s.
pub(crate) fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    context: ConnectionContext,
    permit: ConnectionSlot,
) -> impl Future<Output = ()> + Send {
    let ConnectionContext {
        state,
        builder,
        tls,
        mut shutdown,
    } = context;
    let activity = Arc::new(Activity::new(Instant::now(), &state.limits()));
    let service = Respond {
        state,
        activity: Arc::clone(&activity),
        peer: peer.ip(),
    };
    // Boxed: the handshake and protocol detection are over before the connection's long
    // waits begin, and their state is freed with the box then (the future below is 464
    // bytes so, 784 with it inline).
    let start = Box::pin(timeout_at(
        activity.deadline(),
        start(stream, tls, service, builder),
    ));
    async move {
        // Held until the connection is over, however it ends.
        let _permit = permit;
        let started = tokio::select! {
            started = start => started,
            // No request has started, so there is none to finish.
            _ = shutdown.changed() => return,
        };
        match started {
            Ok(Ok(connection)) => drive(connection, &activity, shutdown).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "connection failed before a request"),
            Err(_) => tracing::debug!("connection timed out before a request"),
        }
    }
}

/// The TLS handshake if there is one, then [`start_http`].
async fn start(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    service: Respond,
    builder: Arc<HttpBuilder>,
) -> io::Result<Pin<Box<dyn HttpConnection>>> {
    match tls {
        None => start_http(stream, service, &builder).await,
        // Boxed: an async fn's state is as large as its largest branch, and the TLS
        // handshake's is several KiB. Inline, every plain connection's task would be sized
        // for it; boxed, a TLS connection pays one more allocation, freed after the handshake.
        Some(acceptor) => Box::pin(start_tls(stream, acceptor, service, &builder)).await,
    }
}

/// The TLS handshake, then [`start_http`] over it.
async fn start_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    service: Respond,
    builder: &HttpBuilder,
) -> io::Result<Pin<Box<dyn HttpConnection>>> {
    start_http(acceptor.accept(stream).await?, service, builder).await
}

/// Reads which protocol `io` speaks and starts serving it with that one.
async fn start_http<I>(
    io: I,
    service: Respond,
    builder: &HttpBuilder,
) -> io::Result<Pin<Box<dyn HttpConnection>>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (protocol, io) = detect(io).await?;
    let io = TokioIo::new(io);
    // Boxed, so that a task holds a pointer to its connection whichever it is.
    Ok(match protocol {
        Protocol::Http1 => Box::pin(builder.http1.serve_connection(io, service)),
        Protocol::Http2 => Box::pin(builder.http2.serve_connection(io, service)),
    })
}

/// Drives `connection` until it is over, telling it to close when it has been idle too long
/// or the server shuts down.
async fn drive(
    mut connection: Pin<Box<dyn HttpConnection>>,
    activity: &Activity,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut closing = false;
    let mut deadline = activity.deadline();
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed(), if !closing => {
                connection.as_mut().close();
                closing = true;
            }
            () = sleep_until(deadline) => {
                if closing {
                    return;
                }
                match activity.deadline() {
                    later if later > Instant::now() => deadline = later,
                    _ => {
                        connection.as_mut().close();
                        closing = true;
                        deadline = Instant::now() + CLOSE_LINGER;
                    }
                }
            }
        }
    }
}

/// An HTTP/1 or HTTP/2 connection being served, as [`drive`] sees it.
trait HttpConnection: Future<Output = hyper::Result<()>> + Send {
    /// Asks it to close once the requests in flight are answered: HTTP/1 `Connection:
    /// close`, HTTP/2 `GOAWAY`.
    fn close(self: Pin<&mut Self>);
}

impl<I> HttpConnection for http1::Connection<TokioIo<Rewind<I>>, Respond>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn close(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I> HttpConnection for http2::Connection<TokioIo<Rewind<I>>, Respond, TokioExecutor>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn close(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// How a connection's requests are answered: [`routes::respond`], each noted in the
/// connection's [`Activity`].
struct Respond {
    state: State,
    activity: Arc<Activity>,
    peer: IpAddr,
}

impl Service<Request<Incoming>> for Respond {
    type Response = Answer;
    type Error = Infallible;
    /// Ready at once ([`Answered`]), but for a `durability = "sync"` answer waiting on its
    /// event's commit. That wait is boxed, so that the slot an HTTP/1 connection keeps for
    /// this future for its whole life holds no more than an answer and a URI.
    type Future =
        Either<Answered, Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.request_seen();
        let Reply { answer, commit } = routes::respond(&request, self.peer, &self.state);
        // Held until the answer is taken: see `Answered`.
        let uri = request.into_parts().0.uri;
        match commit {
            None => Either::Left(Answered {
                answer: Some(answer),
                _uri: uri,
            }),
            Some(commit) => {
                let state = self.state.clone();
                Either::Right(Box::pin(async move {
                    commit.wait(&state).await;
                    drop(uri);
                    Ok(answer)
                }))
            }
        }
    }
}

/// An answer made at once, ready when hyper polls for it, and the request's URI, let go of
/// only then.
///
/// The URI (like the headers) is a slice of hyper's read buffer. Between taking a request and
/// polling for its answer, hyper reserves room in that buffer for the next request; while
/// the URI still shares it, hyper starts a fresh buffer instead of reusing the one the
/// request was written to. A connection that then goes idle holds a buffer no byte was ever
/// written to, which costs no resident memory: with the URI dropped at once, 10,000 idle
/// connections held 120 MB, not 78 (`benches/idle_connections.py`).
struct Answered {
    answer: Option<Answer>,
    _uri: hyper::Uri,
}

impl Future for Answered {
    type Output = Result<Answer, Infallible>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        // hyper polls a service future until it is ready, and not after: the answer is
        // always there to take.
        Poll::Ready(Ok(self.answer.take().expect("an answer is taken once")))
    }
}

/// The protocol a connection speaks.
enum Protocol {
    Http1,
    Http2,
}

/// Reads a connection's first bytes until they depart from the HTTP/2 preface or complete it,
/// and hands back `io` with those bytes put back in front. A connection closed at once is
/// HTTP/1's to answer (hyper closes it quietly).
async fn detect<I: AsyncRead + Unpin>(mut io: I) -> io::Result<(Protocol, Rewind<I>)> {
    let mut prefix = [0; H2_PREFACE.len()];
    let mut filled = 0;
    let protocol = loop {
        if filled == prefix.len() {
            break Protocol::Http2;
        }
        let n = io.read(&mut prefix[filled..]).await?;
        let preface_so_far = n > 0 && prefix[filled..filled + n] == H2_PREFACE[filled..filled + n];
        filled += n;
        if !preface_so_far {
            break Protocol::Http1;
        }
    };
    let rewind = Rewind {
        prefix,
        unread: 0..filled,
        io,
    };
    Ok((protocol, rewind))
}

/// `io` with the bytes [`detect`] read from it put back in front, for hyper to read again.
struct Rewind<I> {
    prefix: [u8; H2_PREFACE.len()],
    /// The part of `prefix` not yet read again.
    unread: Range<usize>,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unread.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.unread.len().min(buf.remaining());
        let start = this.unread.start;
        buf.put_slice(&this.prefix[start..start + n]);
        this.unread.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// When a connection last started a request, to tell idle connections from busy ones.
/// Every answer is built synchronously, so a request is over almost as soon as it starts.
struct Activity {
    accepted: Instant,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Milliseconds from `accepted` to the latest request, or `NONE` before the first.
    last_request_ms: AtomicU64,
}

impl Activity {
    const NONE: u64 = u64::MAX;

    fn new(accepted: Instant, limits: &Limits) -> Activity {
        Activity {
            accepted,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            last_request_ms: AtomicU64::new(Activity::NONE),
        }
    }

    fn request_seen(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(Activity::NONE - 1);
        self.last_request_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection is to be closed if nothing happens before then.
    fn deadline(&self) -> Instant {
        match self.last_request_ms.load(Ordering::Relaxed) {
            Activity::NONE => self.accepted + self.header_read_timeout,
            ms => self.accepted + Duration::from_millis(ms) + self.idle_timeout,
        }
    }
}
