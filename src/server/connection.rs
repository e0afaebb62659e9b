//! One connection, from accept to close: the TLS handshake, HTTP/1.1 or HTTP/2, and the
//! bounds that keep a slow, idle or hostile client from holding resources.
//!
//! A connection has [`Limits::header_read_timeout`] from accept until its first request's
//! headers are complete. That one deadline covers the TLS handshake, protocol detection
//! (the HTTP/2 preface or not) and the headers, so a client that trickles bytes at any stage
//! is cut off.
//! After that, each request must have its headers in within [`Limits::idle_timeout`] of the
//! one before, which bounds both the idle wait and a later request's headers.
//!
//! An answer must be taken within [`Limits::answer_timeout`]: a connection with an answer
//! still in flight that long (an HTTP/2 window kept shut), or a write waiting on the peer
//! that long (a socket not read), is closed as `stalled`. A connection that reads far more
//! than its requests need (a flood of HTTP/2 control frames, or of frames of unknown types)
//! reads nothing more and is closed as `flood`: see [`super::activity`] for both.
//! Told to close, a connection says `GOAWAY` (HTTP/2) or `Connection: close` (HTTP/1) and
//! has [`CLOSE_LINGER`] to finish (at shutdown, `shutdown_grace`); then it is dropped.
//!
//! hyper's own HTTP/1 header read timeout is off. It starts when hyper begins waiting for the
//! next request, so an idle keep-alive connection was closed after `header_read_timeout`
//! rather than `idle_timeout`; and it made and dropped a timer entry for every request.
//!
//! Each connection is its own task and every wait in it is bounded, so a slow client costs a
//! small, fixed amount for a bounded time, holds no lock and takes no turn from the clients
//! that send whole requests. Measured as the server's VmRSS growth per connection, at the
//! defaults:
//!
//! - idle after a request, HTTP/1 keep-alive: about 8 KiB (10,000 connections: 79 MB),
//!   until `idle_timeout`;
//! - HTTP/1 that pipelines requests and never reads the answers: about 20 KiB (100
//!   connections), until `answer_timeout` once its writes wait;
//! - HTTP/2 (300 connections) with `SETTINGS_INITIAL_WINDOW_SIZE = 0` and 100 streams opened
//!   on each (16 are taken, [`MAX_CONCURRENT_STREAMS`], the rest refused), each asking for
//!   the interstitial with a 4 KB `:authority`: 62 to 71 KiB over six runs, 44 to 45 for the
//!   pixel, 77 over TLS, until `answer_timeout` (the last is closed within a third more,
//!   plus the linger). It was 332 KiB (169 for the pixel, 312 over TLS) until
//!   `idle_timeout`, with 100 streams taken and nothing to close a stalled one. Per stream,
//!   h2's state, hyper's task and the body hold about 3 KiB; that, times the streams, is
//!   what the stream limit bounds.
//!
//! `tests/serve_h2_attack.rs` holds the HTTP/2 case to 128 KiB a connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

use super::acme::ACME_TLS_ALPN;
use super::activity::{Activity, AnswerBody, AnswerTicket};
use super::admission::ConnectionSlot;
use super::detect::{detect, Protocol, Rewind};
use super::drive::{drive, HttpConnection};
use super::routes::{self, Answer, Reply};
use super::state::State;
use super::unsubscribe;

/// The largest request head accepted, start line and headers together: SES's 8 KiB, which
/// is also the longest link the decoder reads. HTTP/1 answers 431 past it; HTTP/2 refuses
/// the stream.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// HTTP/1's read buffer cap, which is what bounds a request head there: a head that does
/// not fit the buffer is answered 431. 8 KiB is also hyper's floor for this setting.
pub const MAX_HTTP1_BUFFER: usize = MAX_HEADER_BYTES;

/// Streams one HTTP/2 connection may have open at once. A mail client loads a pixel or
/// follows a link, a browser adds a favicon: a handful. RFC 9113 recommends at least 100, so
/// as not to limit parallelism, but nothing here gains from more than a few streams at once,
/// and this is what bounds a connection whose answers the peer will not take: each such
/// stream holds about 3 KiB (its h2 state, its task, its page) until `answer_timeout`. At
/// 100, a connection with a shut window held 332 KiB; at 16 it holds about 65 (see the
/// module docs). A proxy that multiplexes many readers opens another connection past it, as
/// the setting tells it to. A client that opens more before it has read the setting gets
/// `REFUSED_STREAM` for the rest, which RFC 9113 (section 8.7) makes safe to retry: h2load
/// `-m 100` sees 84 such streams on each new connection, and none after.
pub const MAX_CONCURRENT_STREAMS: u32 = 16;

/// Streams a client may reset before the server stops accepting new ones from it: the
/// defence against "rapid reset" floods (CVE-2023-44487).
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// How much of a request body one HTTP/2 stream may send before it is read. Only a `POST` to
/// an unsubscribe link has its body read, and at most 1 KiB of it
/// ([`unsubscribe::MAX_FORM_BYTES`]), so this mostly bounds what a client can make us buffer;
/// 16 KiB is one frame, so a client that sends a body anyway is not stalled mid-frame.
pub const HTTP2_STREAM_RECEIVE_WINDOW: u32 = 16 * 1024;

/// The same for the whole connection: the protocol's own initial window (RFC 9113, section
/// 6.9.2), not hyper's 1 MiB, so the request bodies of all of a connection's streams
/// together can hold at most 64 KiB.
pub const HTTP2_CONNECTION_RECEIVE_WINDOW: u32 = 65_535;

/// How much of its answer one HTTP/2 stream may queue before the peer's window lets it go
/// out. Every answer here is a few KiB at most, so 16 KiB queues any of them whole, while
/// a stream can no longer hold hyper's default 400 KiB.
pub const HTTP2_MAX_SEND_BUFFER: usize = 16 * 1024;

/// How often an idle HTTP/2 connection is pinged, and how long the answer may take, so that
/// dead peers behind NAT do not hold a slot until the idle timeout.
pub const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// How long a connection told to close (idle, stalled or flooding) gets to finish what it is
/// writing before it is dropped. At shutdown it has `shutdown_grace` instead.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

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
        .initial_stream_window_size(HTTP2_STREAM_RECEIVE_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_RECEIVE_WINDOW)
        .max_send_buf_size(HTTP2_MAX_SEND_BUFFER)
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
        state: state.clone(),
        activity: Arc::clone(&activity),
        peer: peer.ip(),
    };
    // Boxed: the handshake and protocol detection are over before the connection's long
    // waits begin, and their state is freed with the box then (the future below is 480
    // bytes so, about 800 with it inline).
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
            Ok(Ok(connection)) => drive(connection, &activity, &state, shutdown).await,
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
    let stream = acceptor.accept(stream).await?;
    if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
        // RFC 8737, section 3: the validator only checks the handshake's certificate and
        // closes; nothing is served on this connection.
        return Err(io::Error::other(
            "TLS-ALPN-01 validation handshake answered",
        ));
    }
    start_http(stream, service, builder).await
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
    let (protocol, io) = detect(io, Arc::clone(&service.activity)).await?;
    let io = TokioIo::new(io);
    // Boxed, so that a task holds a pointer to its connection whichever it is.
    Ok(match protocol {
        Protocol::Http1 => Box::pin(builder.http1.serve_connection(io, service)),
        Protocol::Http2 => Box::pin(builder.http2.serve_connection(io, service)),
    })
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
    type Response = Response<AnswerBody>;
    type Error = Infallible;
    /// Ready at once ([`Answered`]), but for a `durability = "sync"` answer waiting on its
    /// event's commit. That wait is boxed, so that the slot an HTTP/1 connection keeps for
    /// this future for its whole life holds no more than an answer, a URI and a ticket.
    type Future = Either<
        Answered,
        Pin<Box<dyn Future<Output = Result<Response<AnswerBody>, Infallible>> + Send>>,
    >;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let ticket = self.activity.begin_answer();
        if unsubscribe::is_post(&request) {
            // The one request whose body is read: boxed like a `sync` answer, and as rare.
            let (state, peer) = (self.state.clone(), self.peer);
            return Either::Right(Box::pin(async move {
                let Reply { answer, commit } =
                    unsubscribe::respond_to_post(request, peer, &state).await;
                if let Some(commit) = commit {
                    commit.wait(&state).await;
                }
                Ok(answer.map(|body| AnswerBody::new(body, ticket)))
            }));
        }
        let Reply { answer, commit } = routes::respond(&request, self.peer, &self.state);
        // Held until the answer is taken: see `Answered`.
        let uri = request.into_parts().0.uri;
        match commit {
            None => Either::Left(Answered {
                answer: Some((answer, ticket)),
                _uri: uri,
            }),
            Some(commit) => {
                let state = self.state.clone();
                Either::Right(Box::pin(async move {
                    commit.wait(&state).await;
                    drop(uri);
                    Ok(answer.map(|body| AnswerBody::new(body, ticket)))
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
    answer: Option<(Answer, AnswerTicket)>,
    _uri: hyper::Uri,
}

impl Future for Answered {
    type Output = Result<Response<AnswerBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        // hyper polls a service future until it is ready, and not after: the answer is
        // always there to take.
        let (answer, ticket) = self.answer.take().expect("an answer is taken once");
        Poll::Ready(Ok(answer.map(|body| AnswerBody::new(body, ticket))))
    }
}
