//! The TLS side of the HTTPS listener: rustls with the `ring` provider, TLS 1.2 and 1.3 only,
//! AES-128-GCM preferred, ALPN `h2` then `http/1.1`, sessions resumed from a server-side
//! cache, and certificates picked by SNI from a reloadable [`CertificateStore`].

use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::acme::ACME_TLS_ALPN;
use super::certificates::CertificateStore;

/// The protocols offered in ALPN, most preferred first. HTTP/2 lets a browser that opens
/// several pixels and links reuse one connection; HTTP/1.1 is for everything else.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Sessions kept for resumption: 16,384, a few MiB. rustls's default of 256 lasted a few
/// hundredths of a second at a few thousand new connections a second, so a reader coming back
/// to the next link would rarely have found theirs.
pub const SESSION_CACHE_ENTRIES: usize = 16_384;

/// TLS 1.3 tickets sent after each handshake: one, for the client's next connection (a
/// ticket is used once). rustls sends two by default; each is an entry in the session cache
/// and a message the client must take in. With one, wrk made 3.5% more new connections a
/// second (4,890–5,130 against 4,720–4,860, alternating runs).
pub const TLS13_TICKETS: usize = 1;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the protocol versions for the provider: a build without `tls12`.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS acceptor presenting the certificates in `store`.
///
/// The store is shared: reloading it changes what new handshakes get, while connections
/// already open keep the certificate they were given.
pub fn acceptor(store: Arc<CertificateStore>) -> Result<TlsAcceptor, TlsError> {
    let answers_tls_alpn = store.answers_tls_alpn();
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&TLS13, &TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    if answers_tls_alpn {
        // Offered last: only a TLS-ALPN-01 validator asks for it, and it asks for nothing else.
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    // Stateless tickets would need a key rotated across instances behind a load balancer;
    // the stateful cache resumes sessions on the same instance, which is enough for the
    // handful of requests a mail client makes.
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.send_tls13_tickets = TLS13_TICKETS;
    config.max_early_data_size = 0;
    // The server's order of cipher suites, not the client's: see `provider`.
    config.ignore_client_order = true;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// rustls's `ring` provider with its cipher suites in the order the server prefers:
/// AES-128-GCM first, then ChaCha20-Poly1305 (also SHA-256), then AES-256-GCM, for TLS 1.3
/// and 1.2 alike.
///
/// OpenSSL's clients (curl, wrk) and rustls's own list AES-256-GCM with SHA-384 first. Its
/// handshake derives every key with HMAC-SHA-384, which `ring` computes without the CPU's
/// SHA instructions (x86 has none for SHA-512), while SHA-256 uses them: on a new connection
/// with a resumed session, SHA-512 was 14% of the server's CPU, and with AES-128-GCM the
/// server made 7% more handshakes a second. AES-128-GCM is the suite TLS 1.3 requires of everyone,
/// and the one Go's TLS stack prefers on hardware with AES instructions.
fn provider() -> CryptoProvider {
    let mut provider = default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| match suite.suite() {
            CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => 1,
            _ => 2,
        });
    provider
}
