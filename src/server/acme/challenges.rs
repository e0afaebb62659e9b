//! The answers to the CA's challenges while an order is open: HTTP-01 key authorizations by
//! token, and TLS-ALPN-01 certificates by domain.
//!
//! The order task puts an answer in before telling the CA it is ready and takes it out when
//! the order is over. Readers are the routes (HTTP-01) and the certificate resolver
//! (TLS-ALPN-01); both look a key up in a small map under a read lock, never across an
//! await, so answering a challenge costs the clicks and opens beside it nothing.
//!
//! Instances behind one load balancer share the storage folder, and the CA's validation
//! request may reach any of them, not only the one that ordered. So every answer is also
//! written to `challenges/` in the folder, and an instance that does not have an answer in
//! memory looks there: `{token}` holds an HTTP-01 key authorization, `{domain}.tls-alpn-01`
//! the hex SHA-256 digest from which any instance makes the same kind of TLS-ALPN-01
//! certificate. A token is only used as a file name when it is base64url, as RFC 8555 makes
//! every token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::ring::default_provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// The ALPN protocol a TLS-ALPN-01 validator offers (RFC 8737, section 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of an HTTP-01 challenge (RFC 8555, section 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Why a TLS-ALPN-01 answer could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// rcgen could not make the self-signed challenge certificate.
    #[error("TLS-ALPN-01 certificate for {domain}: {message}")]
    Certificate {
        /// The domain being validated.
        domain: String,
        /// What rcgen or rustls said.
        message: String,
    },
}

/// The open challenges' answers.
#[derive(Debug, Default)]
pub struct ChallengeStore {
    http01: RwLock<HashMap<String, String>>,
    tls_alpn01: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// `challenges/` in the storage folder, shared with the other instances; `None` without
    /// `[tls.acme]`.
    shared: Option<PathBuf>,
}

impl ChallengeStore {
    /// A store that shares its answers through `folder` (created when first written).
    pub fn shared_through(folder: PathBuf) -> ChallengeStore {
        ChallengeStore {
            shared: Some(folder),
            ..ChallengeStore::default()
        }
    }

    /// Answers `GET /.well-known/acme-challenge/{token}` with `key_authorization`, here and
    /// through the shared folder.
    pub fn put_http01(&self, token: &str, key_authorization: &str) {
        if is_token(token) {
            self.share(token, key_authorization);
        }
        self.http01
            .write()
            // A panic elsewhere while holding the lock leaves a map that is still whole.
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    /// The key authorization for an HTTP-01 `token`, if one is open here or in the shared
    /// folder.
    pub fn http01(&self, token: &str) -> Option<String> {
        let here = self
            .http01
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned();
        here.or_else(|| {
            let folder = self.shared.as_ref().filter(|_| is_token(token))?;
            std::fs::read_to_string(folder.join(token)).ok()
        })
    }

    /// Makes the self-signed certificate that proves `domain` to a TLS-ALPN-01 validator:
    /// the domain as its only name and the SHA-256 of the key authorization in the
    /// `acmeIdentifier` extension (RFC 8737, section 3); and shares the digest.
    pub fn put_tls_alpn01(&self, domain: &str, digest: &[u8]) -> Result<(), ChallengeError> {
        let certified = tls_alpn01_certificate(domain, digest)?;
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.share(
            &format!("{}.tls-alpn-01", domain.to_ascii_lowercase()),
            &hex,
        );
        self.tls_alpn01
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(domain.to_ascii_lowercase(), certified);
        Ok(())
    }

    /// The TLS-ALPN-01 certificate for `domain`, if its challenge is open here or in the
    /// shared folder.
    pub fn tls_alpn01(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let domain = domain.to_ascii_lowercase();
        let here = self
            .tls_alpn01
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&domain)
            .cloned();
        here.or_else(|| {
            // The domain came in a ClientHello: only a DNS name is used as a file name.
            rustls::pki_types::DnsName::try_from(domain.as_str()).ok()?;
            let folder = self.shared.as_ref()?;
            let hex = std::fs::read_to_string(folder.join(format!("{domain}.tls-alpn-01"))).ok()?;
            let digest = from_hex(hex.trim())?;
            tls_alpn01_certificate(&domain, &digest).ok()
        })
    }

    /// Writes an answer for the other instances; a failure only means they cannot answer
    /// for this one, so it is logged, not returned.
    fn share(&self, name: &str, content: &str) {
        let Some(folder) = &self.shared else { return };
        let written = std::fs::create_dir_all(folder)
            .and_then(|()| std::fs::write(folder.join(name), content));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot share an ACME challenge answer in tls.acme.storage");
        }
    }

    /// Takes every answer out: the order is over.
    pub fn clear(&self) {
        let mut http01 = self.http01.write().unwrap_or_else(PoisonError::into_inner);
        let mut tls_alpn01 = self
            .tls_alpn01
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(folder) = &self.shared {
            let names = http01
                .keys()
                .filter(|token| is_token(token))
                .cloned()
                .chain(
                    tls_alpn01
                        .keys()
                        .map(|domain| format!("{domain}.tls-alpn-01")),
                );
            for name in names {
                // Already gone (another instance cleared its own, or never written): fine.
                let _ = std::fs::remove_file(folder.join(name));
            }
        }
        http01.clear();
        tls_alpn01.clear();
    }
}

/// Whether `token` is base64url (RFC 8555, section 8.1), so safe as a file name.
fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The TLS-ALPN-01 certificate for `domain` carrying `digest`.
fn tls_alpn01_certificate(
    domain: &str,
    digest: &[u8],
) -> Result<Arc<CertifiedKey>, ChallengeError> {
    let failed = |message: String| ChallengeError::Certificate {
        domain: domain.to_owned(),
        message,
    };
    let mut params =
        CertificateParams::new(vec![domain.to_owned()]).map_err(|e| failed(e.to_string()))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| failed(e.to_string()))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // `CertifiedKey::new`, not `from_der`: `from_der` checks the key against the certificate
    // through webpki, which refuses the critical `acmeIdentifier` extension that only a
    // validator understands.
    let signing_key = default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| failed(e.to_string()))?;
    let certified = CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing_key);
    Ok(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_shared_through_the_folder() {
        let folder = tempfile::tempdir().unwrap();
        let ordering = ChallengeStore::shared_through(folder.path().join("challenges"));
        let other = ChallengeStore::shared_through(folder.path().join("challenges"));
        ordering.put_http01("tok_1-A", "tok_1-A.thumb");
        ordering
            .put_tls_alpn01("track.example.com", &[9; 32])
            .unwrap();
        assert_eq!(other.http01("tok_1-A").as_deref(), Some("tok_1-A.thumb"));
        assert!(
            other.http01("../tok_1-A").is_none(),
            "not a token: never a path"
        );
        assert!(other.tls_alpn01("Track.Example.com").is_some());
        ordering.clear();
        assert!(other.http01("tok_1-A").is_none());
        assert!(other.tls_alpn01("track.example.com").is_none());
    }

    #[test]
    fn answers_are_found_until_cleared() {
        let store = ChallengeStore::default();
        store.put_http01("tok", "tok.thumb");
        store.put_tls_alpn01("Track.Example.com", &[7; 32]).unwrap();
        assert_eq!(store.http01("tok").as_deref(), Some("tok.thumb"));
        assert!(store.http01("other").is_none());
        assert!(store.tls_alpn01("track.example.com").is_some());
        store.clear();
        assert!(store.http01("tok").is_none());
        assert!(store.tls_alpn01("track.example.com").is_none());
    }
}
