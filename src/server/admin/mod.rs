//! The admin listener: the home of every operator and API route, on an address of its own
//! (`[admin] listen`, loopback by default), apart from the public listeners that mail
//! clients reach. It serves `/metrics` and the rewrite API (`/v1/…`, [`api`]), each a line
//! in [`router::ROUTES`]. `mailtrack notify` runs the same listener with its own routes.
//!
//! Beyond loopback a bearer token guards it ([`auth`]). Every answer it cannot give is JSON,
//! `{"error": "..."}` ([`AdminError`]). A route gets its request with the body already read,
//! bounded by `admin.max_body_bytes` and [`body::BODY_READ_TIMEOUT`].
//!
//! The machinery is generic over an [`AdminSite`]: what a listener serves (its route table)
//! and where it counts its answers. Serve's site is the server's [`State`]; `mailtrack
//! notify` brings its own (built in the command line, which may see both), so that neither
//! `server` nor `notify` imports the other, and each listener carries only its own routes.
//!
//! It has its own accept loop and connections, HTTP/1.1 only (what Prometheus, curl and
//! scripts speak), so the public listeners' hot path carries nothing for it. At most
//! [`ADMIN_MAX_CONNECTIONS`] are open at once; each has `header_read_timeout` for every
//! request head, idle waits included. On shutdown it stops accepting and drains with the
//! public listeners, under the same grace period.
//!
//! # Layout
//!
//! - [`router`]: the route table, the token check, 404/405, the bounded body.
//! - [`auth`]: `Authorization: Bearer`.
//! - [`body`]: reading a body whole, bounded in size and time.
//! - [`error`]: the JSON errors.
//! - `operator`: the operators' routes (`/metrics`).
//! - [`api`]: the rewrite API (`/v1/rewrite/html`, `/v1/rewrite/mime`, `/v1/links/…`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::accept::{drain, ACCEPT_ERROR_BACKOFF};
use super::state::State;
use super::ServerError;
use crate::config::{AdminConfig, AdminToken};

pub mod api;
pub mod auth;
pub mod body;
pub mod error;
mod operator;
pub mod router;

pub use error::AdminError;

/// The most admin connections open at once: a scraper, a deploy script and an operator's
/// shell need a few; 64 leaves room for bursts of API calls, and keeps a port that may face
/// more than this machine from being a way around `max_connections`. Past it, a new
/// connection is closed at once and counted as shed (`reason="admin"`).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// The most an admin connection reads at once, which hyper also makes the longest request
/// head it takes (431 past it): 256 KiB. The public listeners' 8 KiB would read a 100 KB
/// document in 14 reads, which cost the rewrite API a twentieth of its throughput
/// (benches/README.md, "api"); here it takes one. An admin request's head is a path and a
/// token, so the longer limit gives nothing away, and the buffers of
/// [`ADMIN_MAX_CONNECTIONS`] connections come to 16 MiB at most.
pub const ADMIN_READ_BUFFER: usize = 256 * 1024;

/// The bound admin socket, with what its routes need from `[admin]`.
#[derive(Debug)]
pub struct AdminListener {
    tcp: TcpListener,
    token: Option<AdminToken>,
    max_body_bytes: usize,
    workers: usize,
}

impl AdminListener {
    /// The address it is bound to (tests bind port 0 and ask).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Whether requests need the bearer token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }
}

/// What an admin listener serves: its routes, and where its answers are counted. Serve's is
/// the server's [`State`]; another binary (`mailtrack notify`) implements it for its own
/// context and runs the same listener with [`run`].
pub trait AdminSite: Send + Sync + Sized + 'static {
    /// Every route it answers; any other path is a JSON 404.
    fn routes(&self) -> &'static [router::Route<Self>];

    /// Counts an answer: `route` is the route's name (or `other`), `status` what was sent.
    fn answered(&self, route: &'static str, status: u16);

    /// Counts a connection closed at once because [`ADMIN_MAX_CONNECTIONS`] were open.
    fn shed(&self);

    /// Whether a request for `path` must carry the bearer token (when one is configured):
    /// every path but those whose own credential is in the request (notify's SNS
    /// confirmations, whose `Token` is in their URL).
    fn needs_token(&self, _path: &str) -> bool {
        true
    }
}

impl AdminSite for State {
    fn routes(&self) -> &'static [router::Route<State>] {
        router::ROUTES
    }

    fn answered(&self, route: &'static str, status: u16) {
        self.shared().metrics.admin_request(route, status);
    }

    fn shed(&self) {
        self.shared().metrics.connection_shed("admin");
    }
}

/// What every admin request is answered with: the site (serve's state, or another binary's
/// context), the token, the body cap.
pub struct AdminContext<S> {
    site: S,
    token: Option<AdminToken>,
    max_body_bytes: usize,
}

impl<S> AdminContext<S> {
    /// The site the listener serves, for its routes' handlers.
    pub fn site(&self) -> &S {
        &self.site
    }
}

/// The two timeouts of an admin listener's connections: `header_read_timeout` for every
/// request head (idle waits included), and `shutdown_grace` for the drain. Serve takes them
/// from `[server]`; notify takes the same keys, from the same file.
#[derive(Debug, Clone, Copy)]
pub struct AdminTimeouts {
    /// From connect (or the last answer) until a request's head is complete.
    pub header_read_timeout: Duration,
    /// How long requests in flight may run after shutdown.
    pub shutdown_grace: Duration,
}

/// Binds `config.listen` (serve's `[admin] listen`; notify binds its own address with the
/// rest of `[admin]`).
pub async fn bind(config: &AdminConfig) -> Result<AdminListener, ServerError> {
    let addr = config.listen;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok(AdminListener {
        tcp,
        token: config.token.clone(),
        max_body_bytes: config.max_body_bytes,
        workers: config.workers,
    })
}

/// Serve's admin listener: accepts connections until `shutdown`, then drains them as the
/// public listeners do; returns when it has drained.
///
/// It runs on a runtime of its own, of `admin.workers` threads, which rewrite on the thread
/// that reads the request ([`api`]): however many rewrites are asked for, the public
/// listeners' workers never wait behind one. Should the OS refuse it threads, the error is
/// logged and the public listeners serve on without it.
pub(crate) async fn accept_loop(
    listener: AdminListener,
    state: State,
    shutdown: watch::Receiver<bool>,
) {
    let limits = state.limits();
    let timeouts = AdminTimeouts {
        header_read_timeout: limits.header_read_timeout,
        shutdown_grace: limits.shutdown_grace,
    };
    let (finished, done) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("mailtrack-admin".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(listener.workers)
                .thread_name("mailtrack-admin")
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(async move {
                    // The socket moves to this runtime's reactor, from the one it was bound on.
                    match listener.tcp.into_std().and_then(TcpListener::from_std) {
                        Ok(tcp) => {
                            let listener = AdminListener { tcp, ..listener };
                            run(listener, state, timeouts, shutdown).await;
                        }
                        Err(e) => tracing::error!(error = %e, "the admin listener cannot start"),
                    }
                }),
                Err(e) => tracing::error!(error = %e, "the admin listener has no threads"),
            }
            // The runtime is dropped by now: every admin thread has stopped.
            let _ = finished.send(());
        });
    match thread {
        Ok(_) => {
            let _ = done.await;
        }
        Err(e) => tracing::error!(error = %e, "the admin listener has no thread"),
    }
}

/// Serves `site` on `listener` until `shutdown` turns true, then drains the connections
/// under `timeouts.shutdown_grace`.
pub async fn run<S: AdminSite>(
    listener: AdminListener,
    site: S,
    timeouts: AdminTimeouts,
    mut shutdown: watch::Receiver<bool>,
) {
    let AdminListener {
        tcp,
        token,
        max_body_bytes,
        ..
    } = listener;
    let context = Arc::new(AdminContext {
        site,
        token,
        max_body_bytes,
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read_timeout)
        .max_buf_size(ADMIN_READ_BUFFER);
    let builder = Arc::new(builder);
    let open = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                        context.site.shed();
                        tracing::debug!("at the admin connection cap: closing a new connection");
                        continue; // `stream` is dropped here, which closes it.
                    };
                    connections.spawn(serve(
                        stream,
                        Arc::clone(&context),
                        Arc::clone(&builder),
                        permit,
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(tcp);
    drain(connections, timeouts.shutdown_grace).await;
}

/// Serves one admin connection until it closes, or, once the server shuts down, until the
/// request in flight is answered.
async fn serve<S: AdminSite>(
    stream: TcpStream,
    context: Arc<AdminContext<S>>,
    builder: Arc<http1::Builder>,
    permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
) {
    // Held until the connection is over, however it ends.
    let _permit = permit;
    let service = service_fn(move |request| {
        let context = Arc::clone(&context);
        async move { Ok::<_, Infallible>(router::answer(request, context).await) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "admin connection ended with an error");
    }
}
