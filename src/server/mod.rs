//! `mailtrack serve`: the proxy on the tracking domain.
//!
//! It answers clicks with a redirect and opens with a 1×1 GIF, over HTTP/1.1 and HTTP/2, in
//! plain HTTP (behind a CDN) or with its own certificates, and hands each verified open or
//! click to the event queue without waiting on it.
//!
//! Operators reach it on a listener of their own, [`admin`] (`/metrics`, and later the
//! rewrite API), apart from the public listeners that mail clients reach.
//!
//! [`run`] takes the listeners, the shared [`State`] and a shutdown future. When the future
//! completes: every listener, the admin one too, stops accepting; connections are told to
//! close after their current request (HTTP/1 `Connection: close`, HTTP/2 `GOAWAY`); whatever
//! is still open after `shutdown_grace` is dropped. Every answered request has queued its
//! event before its answer was written, so once `run` returns and the last [`State`] is
//! gone, the queue's receiver sees every event and then its end.
//!
//! # Layout
//!
//! - [`accept`]: the accept loop, draining.
//! - `admission`: the connection caps, `max_connections` and `max_connections_per_ip`.
//! - [`admin`]: the admin listener: its routes, bearer token, JSON errors.
//! - [`connection`]: one connection: TLS handshake, HTTP/1.1 + HTTP/2, timeouts.
//! - [`activity`]: what a connection has done: answers in flight, bytes read, blocked writes;
//!   the stall and flood bounds.
//! - `detect`: HTTP/1 or HTTP/2, and the byte stream that counts reads and blocked writes.
//! - `drive`: a served connection polled to its end, closed when a bound is passed.
//! - [`tls`]: the rustls configuration.
//! - [`certificates`]: PEM loading, SNI selection, reload.
//! - [`acme`]: certificates obtained and renewed from an ACME CA (`[tls.acme]`).
//! - [`routes`]: what each request gets.
//! - [`unsubscribe`]: the one-click unsubscribe link (RFC 8058): its page, and the `POST`
//!   that records the unsubscribe, whose form it reads.
//! - [`interstitial`]: the HTML pages.
//! - [`client_ip`]: the client's address behind trusted proxies; truncation for logs.
//! - [`event_budget`]: how many events one (message, client) pair may record a minute.
//! - [`metrics`]: the Prometheus counters.
//! - [`state`]: what connections share.
//! - [`signals`]: SIGTERM/SIGINT to stop, SIGHUP to reload.
//! - [`logging`]: text or JSON logs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;

pub mod accept;
pub mod acme;
pub mod activity;
pub mod admin;
mod admission;
pub mod certificates;
pub mod client_ip;
pub mod connection;
mod detect;
mod drive;
pub mod event_budget;
pub mod interstitial;
pub mod logging;
pub mod metrics;
pub mod routes;
pub mod signals;
pub mod state;
pub mod tls;
pub mod unsubscribe;

pub use accept::Listener;
pub use admin::AdminListener;
pub use certificates::{CertificateError, CertificateStore};
pub use metrics::Metrics;
pub use state::{Limits, State};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// An address could not be bound: in use, or a privileged port without the right.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `[server]`.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The certificates could not be loaded (they changed since the config was checked).
    #[error(transparent)]
    Certificates(#[from] CertificateError),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The bound sockets [`run`] serves.
#[derive(Debug)]
pub struct Listeners {
    /// What mail clients reach: plain HTTP and/or HTTPS.
    pub public: Vec<Listener>,
    /// What operators reach.
    pub admin: AdminListener,
}

/// Binds the addresses in `config`: `[server]`'s plain HTTP, and HTTPS presenting
/// `certificates` (required when `server.https` is set); then `[admin] listen`.
pub async fn bind(
    config: &Config,
    certificates: Option<Arc<CertificateStore>>,
) -> Result<Listeners, ServerError> {
    let server = &config.server;
    let mut public = Vec::new();
    if let Some(addr) = server.http {
        public.push(Listener::plain(bind_tcp(addr).await?));
    }
    if let Some(addr) = server.https {
        let store = certificates.ok_or(CertificateError::Empty)?;
        let acceptor = tls::acceptor(store)?;
        public.push(Listener::tls(bind_tcp(addr).await?, acceptor));
    }
    let admin = admin::bind(&config.admin).await?;
    Ok(Listeners { public, admin })
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Serves `listeners` until `shutdown` completes, then drains (see the module docs).
///
/// Returns when every connection has closed or been dropped at the end of the grace period.
pub async fn run(listeners: Listeners, state: State, shutdown: impl Future<Output = ()>) {
    let limits = state.limits();
    let (stop, stopped) = watch::channel(false);
    let mut loops = JoinSet::new();
    let admin = listeners.admin;
    if let Ok(addr) = admin.local_addr() {
        tracing::info!(%addr, token = admin.has_token(), "admin listening");
    }
    loops.spawn(admin::accept_loop(admin, state.clone(), stopped.clone()));
    if limits.max_connections_per_ip >= limits.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            max_connections_per_ip = limits.max_connections_per_ip,
            "server.max_connections_per_ip is not below server.max_connections: one client \
             can hold every connection; lower it with max_connections"
        );
    }
    // One admission for every public listener: a client's connections count together,
    // whichever listener they reach.
    let trusted_proxies = state.shared().client_ip.trusted_proxies.clone();
    let admission = admission::Admission::new(&limits, trusted_proxies);
    let context = connection::ConnectionContext {
        builder: Arc::new(connection::http_builder()),
        state,
        tls: None,
        shutdown: stopped,
    };
    for listener in listeners.public {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, tls = listener.is_tls(), "listening");
        }
        loops.spawn(accept::accept_loop(
            listener,
            Arc::clone(&admission),
            context.clone(),
        ));
    }
    // Only the loops and their connections hold the state now, so the event queue closes
    // when the last of them is done.
    drop(context);
    shutdown.await;
    tracing::info!(grace = ?limits.shutdown_grace, "draining connections");
    // The loops hold receivers until they finish, so this send reaches them; should they all
    // be gone already, there is nothing to tell.
    let _ = stop.send(true);
    while loops.join_next().await.is_some() {}
    tracing::info!("all connections closed");
}
