//! The TLS side of the HTTPS listener: rustls with the `ring` provider, TLS 1.2 and 1.3 only,
//! ALPN `h2` then `http/1.1`, and certificates picked by SNI from a reloadable
//! [`CertificateStore`].

use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::version::{TLS12, TLS13};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::certificates::CertificateStore;

/// The protocols offered in ALPN, most preferred first. HTTP/2 lets a browser that opens
/// several pixels and links reuse one connection; HTTP/1.1 is for everything else.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

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
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_protocol_versions(&[&TLS13, &TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    // Session tickets would need a key rotated across instances behind a load balancer;
    // the stateful cache resumes sessions on the same instance, which is enough for the
    // handful of requests a mail client makes.
    config.max_early_data_size = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
