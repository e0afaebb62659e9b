//! The accept loop: one per listening socket. It takes connections, holds the server to
//! `max_connections` and each client to `max_connections_per_ip` (see `admission`), and on
//! shutdown stops accepting and waits for its connections to drain.
//!
//! Over either cap a new connection is accepted and closed at once (and counted as shed, by
//! the cap), not left in the kernel's backlog. A full backlog makes every new client,
//! including normal ones, wait for a SYN retry measured in seconds; a closed connection fails
//! fast and the client (or CDN) retries on a fresh one, while the connections already open
//! are served as before.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::admission::Admission;
use super::client_ip::LoggedIp;
use super::connection::{self, ConnectionContext};

/// How long to pause after a failed `accept`. The usual cause is running out of file
/// descriptors; retrying at once would spin on the same error, and a short pause lets
/// closing connections give some back.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A bound socket, plain or TLS.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Listener {
    /// A plain-HTTP listener.
    pub fn plain(tcp: TcpListener) -> Listener {
        Listener { tcp, tls: None }
    }

    /// An HTTPS listener.
    pub fn tls(tcp: TcpListener, acceptor: TlsAcceptor) -> Listener {
        Listener {
            tcp,
            tls: Some(acceptor),
        }
    }

    /// The address it is bound to (tests bind port 0 and ask).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }

    /// Whether it speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Accepts on `listener` until shutdown, then drains its connections for at most the grace
/// period and drops whatever is left.
pub(crate) async fn accept_loop(
    listener: Listener,
    admission: Arc<Admission>,
    context: ConnectionContext,
) {
    let mut shutdown = context.shutdown.clone();
    let mut connections = JoinSet::new();
    let context = ConnectionContext {
        tls: listener.tls.clone(),
        ..context
    };
    loop {
        tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let slot = match admission.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(refused) => {
                            let shared = context.state.shared();
                            shared.metrics.connection_shed(refused.as_str());
                            tracing::debug!(
                                cap = refused.as_str(),
                                client = %LoggedIp::new(peer.ip(), shared.full_client_ip),
                                "over a connection cap: closing a new connection"
                            );
                            continue; // `stream` is dropped here, which closes it.
                        }
                    };
                    // Small answers go out at once; failure only costs latency.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection::serve(stream, peer, context.clone(), slot));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    drain(connections, context.state.limits().shutdown_grace).await;
}

/// Waits for `connections` for at most `grace`, then aborts the rest.
pub(crate) async fn drain(mut connections: JoinSet<()>, grace: Duration) {
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "shutdown grace period over; closing the remaining connections"
        );
        connections.shutdown().await;
    }
}
