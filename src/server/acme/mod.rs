//! Automatic HTTPS: certificates for `[tls.acme]` obtained from an ACME CA at start-up,
//! renewed before they expire, and swapped into the HTTPS listener with no connection
//! dropped (connections keep the certificate they shook hands with; new handshakes get the
//! new one).
//!
//! Until the first certificate exists, handshakes for its domains are refused (the resolver
//! has nothing to present, so rustls answers with a TLS alert) while plain HTTP serves on.
//! Certificates from `[[tls.certificate]]` files sit beside it, chosen by SNI.
//!
//! # Layout
//!
//! - [`challenges`]: the open challenges' answers: HTTP-01 tokens, TLS-ALPN-01 certificates.
//! - [`storage`]: the storage folder shared by instances, and its order lock.
//! - [`issued`]: a stored certificate, parsed: key, chain, validity, ARI identifier.
//! - [`order`]: one ACME order with instant-acme.
//! - [`schedule`]: when to renew (ARI window, else two-thirds), and the failure backoff.
//! - [`renewal`]: the task that ties them together.
//! - [`metrics`]: expiry per domain, attempts and failures.

pub mod challenges;
pub mod issued;
pub mod metrics;
pub mod order;
pub mod renewal;
pub mod schedule;
pub mod storage;

pub use challenges::{ChallengeStore, ACME_TLS_ALPN, HTTP01_PREFIX};
pub use issued::IssuedCertificate;
pub use metrics::AcmeMetrics;
pub use renewal::Renewal;
