//! A certificate the CA issued, as stored: its key and chain, ready to serve, with the dates
//! and identifiers that renewal needs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::CertificateIdentifier;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a stored or issued certificate could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuedError {
    /// The PEM holds no certificate or no key, or they do not belong together.
    #[error("certificate PEM: {0}")]
    Pem(String),
    /// The end-entity certificate is not DER that x509-parser can read.
    #[error("certificate: {0}")]
    X509(String),
}

/// A served ACME certificate.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The key and chain, as rustls presents them.
    pub certified: Arc<CertifiedKey>,
    /// When it starts being valid.
    pub not_before: SystemTime,
    /// When it stops being valid.
    pub not_after: SystemTime,
    /// Its serial number in hex, for logs and for telling two certificates apart.
    pub serial: String,
    /// Its RFC 9773 identifier, when it carries an authority key identifier.
    pub ari_id: Option<CertificateIdentifier<'static>>,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl IssuedCertificate {
    /// Reads a PEM holding the private key and the chain (end-entity first).
    pub fn from_pem(pem: &str) -> Result<IssuedCertificate, IssuedError> {
        let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IssuedError::Pem(format!("{e:?}")))?;
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| IssuedError::Pem(format!("private key: {e:?}")))?;
        let Some(end_entity) = chain.first().cloned() else {
            return Err(IssuedError::Pem("no CERTIFICATE".to_owned()));
        };
        let certified = CertifiedKey::from_der(chain, key, &default_provider())
            .map_err(|e| IssuedError::Pem(e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|e| IssuedError::X509(e.to_string()))?;
        let validity = parsed.validity();
        let time = |t: x509_parser::time::ASN1Time| {
            UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
        };
        let serial = parsed
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let ari_id = CertificateIdentifier::try_from(&end_entity)
            .ok()
            .map(CertificateIdentifier::into_owned);
        Ok(IssuedCertificate {
            certified: Arc::new(certified),
            not_before: time(validity.not_before),
            not_after: time(validity.not_after),
            serial,
            ari_id,
        })
    }

    /// Seconds since the Unix epoch at which it expires, for the expiry gauge.
    pub fn expiry_unix(&self) -> i64 {
        self.not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}
