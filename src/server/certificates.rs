//! The HTTPS certificates: loaded from PEM files, picked per connection by SNI, and swapped
//! on reload without touching connections already open.
//!
//! Each `[[tls.certificate]]` is one [`Certificate`]. A client's SNI name is matched against
//! every certificate's names (wildcards included) by webpki, the same check a browser makes,
//! so a certificate is served only for names it is valid for. A client that sends no SNI, or a
//! name nothing covers, gets the first certificate, as a web server's default host would.
//!
//! [`CertificateStore::reload`] reads every file again and swaps the whole set at once; if any
//! file is bad, the old set stays and the error says which file and why.
//!
//! With `[tls.acme]`, the store also holds the ACME certificate (swapped in by the renewal
//! task) and answers TLS-ALPN-01 validators: a ClientHello offering only ALPN `acme-tls/1`
//! gets the challenge certificate for its SNI name, or nothing. The files are tried first,
//! then the ACME certificate; with no files, a name nothing covers gets the ACME certificate,
//! and before it exists, no certificate at all (the handshake is refused with an alert).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::acme::{ChallengeStore, IssuedCertificate, ACME_TLS_ALPN};
use crate::config::CertificateFiles;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The certificate file is missing, unreadable, or holds no PEM certificate.
    #[error("cert {}: {message}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The key file is missing, unreadable, or holds no PEM private key.
    #[error("key {}: {message}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The key is of a kind rustls cannot sign with, or does not belong to the certificate.
    #[error("cert {} with key {}: {message}", cert.display(), key.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        message: String,
    },
    /// No certificates were given, so HTTPS has nothing to present.
    #[error("no [[tls.certificate]] is configured")]
    Empty,
}

/// One certificate chain with its signing key, ready to present.
#[derive(Clone)]
pub struct Certificate {
    certified: Arc<CertifiedKey>,
}

impl fmt::Debug for Certificate {
    // The key is not shown, and nor is the chain's bulk: the subject is in the files.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("chain_len", &self.certified.cert.len())
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Loads a chain and its key, and checks that they belong together.
    pub fn load(files: &CertificateFiles) -> Result<Certificate, CertificateError> {
        let cert_error = |message: String| CertificateError::Cert {
            path: files.cert.clone(),
            message,
        };
        let chain = CertificateDer::pem_file_iter(&files.cert)
            .map_err(|e| cert_error(pem_message(&e)))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(pem_message(&e)))?;
        if chain.is_empty() {
            return Err(cert_error("no PEM CERTIFICATE in the file".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| CertificateError::Key {
            path: files.key.clone(),
            message: pem_message(&e),
        })?;
        let certified = CertifiedKey::from_der(chain, key, &default_provider()).map_err(|e| {
            CertificateError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Certificate {
            certified: Arc::new(certified),
        })
    }

    /// Whether the certificate is valid for `name`, by webpki's rules (wildcards included).
    fn covers(&self, name: &ServerName<'_>) -> bool {
        covers(&self.certified, name)
    }
}

/// Whether `certified` is valid for `name`, by webpki's rules (wildcards included).
fn covers(certified: &CertifiedKey, name: &ServerName<'_>) -> bool {
    // `CertifiedKey::from_der` parsed the end-entity certificate, so both steps succeed
    // for every certificate that was loaded; a failure only means "not this one".
    certified
        .end_entity_cert()
        .ok()
        .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
        .is_some_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

/// A PEM error as a short message; `NoItemsFound` says what to look for.
fn pem_message(error: &rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM item of the expected kind".to_owned()
        }
        other => format!("not valid PEM: {other:?}"),
    }
}

/// The certificates served now: the first is the default.
#[derive(Debug)]
struct CertificateSet {
    certificates: Vec<Certificate>,
}

impl CertificateSet {
    /// Loads `files`; none at all is refused unless an ACME certificate stands beside them.
    fn load(files: &[CertificateFiles], acme: bool) -> Result<CertificateSet, CertificateError> {
        let certificates = files
            .iter()
            .map(Certificate::load)
            .collect::<Result<Vec<_>, _>>()?;
        if certificates.is_empty() && !acme {
            return Err(CertificateError::Empty);
        }
        Ok(CertificateSet { certificates })
    }

    /// The file covering `sni`, else the ACME certificate if it covers it, else the first
    /// file, else the ACME certificate.
    fn pick(
        &self,
        sni: Option<&str>,
        acme: Option<&IssuedCertificate>,
    ) -> Option<Arc<CertifiedKey>> {
        let name = sni.and_then(|name| ServerName::try_from(name).ok());
        if let Some(name) = name {
            if let Some(file) = self.certificates.iter().find(|c| c.covers(&name)) {
                return Some(Arc::clone(&file.certified));
            }
            if let Some(acme) = acme.filter(|acme| covers(&acme.certified, &name)) {
                return Some(Arc::clone(&acme.certified));
            }
        }
        self.certificates
            .first()
            .map(|c| Arc::clone(&c.certified))
            .or_else(|| acme.map(|acme| Arc::clone(&acme.certified)))
    }
}

/// The certificate resolver rustls asks at each handshake; reloadable.
#[derive(Debug)]
pub struct CertificateStore {
    files: Vec<CertificateFiles>,
    current: ArcSwap<CertificateSet>,
    /// The ACME certificate, once there is one.
    acme: ArcSwapOption<IssuedCertificate>,
    /// The TLS-ALPN-01 answers, when `[tls.acme]` is configured.
    challenges: Option<Arc<ChallengeStore>>,
}

impl CertificateStore {
    /// Loads every certificate named in `files`.
    pub fn load(files: &[CertificateFiles]) -> Result<CertificateStore, CertificateError> {
        CertificateStore::build(files, None)
    }

    /// Loads `files` (there may be none) beside an ACME certificate that the renewal task
    /// will install, answering TLS-ALPN-01 validators from `challenges`.
    pub fn with_acme(
        files: &[CertificateFiles],
        challenges: Arc<ChallengeStore>,
    ) -> Result<CertificateStore, CertificateError> {
        CertificateStore::build(files, Some(challenges))
    }

    fn build(
        files: &[CertificateFiles],
        challenges: Option<Arc<ChallengeStore>>,
    ) -> Result<CertificateStore, CertificateError> {
        let set = CertificateSet::load(files, challenges.is_some())?;
        Ok(CertificateStore {
            files: files.to_vec(),
            current: ArcSwap::from_pointee(set),
            acme: ArcSwapOption::empty(),
            challenges,
        })
    }

    /// Reads every file again and serves the new set from the next handshake on. On any
    /// error the old set stays in use. Connections already open are not touched.
    pub fn reload(&self) -> Result<(), CertificateError> {
        let set = CertificateSet::load(&self.files, self.challenges.is_some())?;
        self.current.store(Arc::new(set));
        Ok(())
    }

    /// Serves `issued` as the ACME certificate from the next handshake on; connections
    /// already open keep the one they have.
    pub fn set_acme_certificate(&self, issued: IssuedCertificate) {
        self.acme.store(Some(Arc::new(issued)));
    }

    /// The ACME certificate served now, if any.
    pub fn acme_certificate(&self) -> Option<Arc<IssuedCertificate>> {
        self.acme.load_full()
    }

    /// Whether the store answers TLS-ALPN-01 validators, so ALPN must offer `acme-tls/1`.
    pub fn answers_tls_alpn(&self) -> bool {
        self.challenges.is_some()
    }

    /// The files this store reads, for log messages.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|files| files.cert.as_path())
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(challenges) = &self.challenges {
            let validator = client_hello
                .alpn()
                .is_some_and(|mut offered| offered.any(|protocol| protocol == ACME_TLS_ALPN));
            if validator {
                return client_hello
                    .server_name()
                    .and_then(|name| challenges.tls_alpn01(name));
            }
        }
        let acme = self.acme.load();
        self.current
            .load()
            .pick(client_hello.server_name(), acme.as_deref())
    }
}
