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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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
        // `CertifiedKey::from_der` parsed the end-entity certificate, so both steps succeed
        // for every certificate that was loaded; a failure only means "not this one".
        self.certified
            .end_entity_cert()
            .ok()
            .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
            .is_some_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
    }
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
    fn load(files: &[CertificateFiles]) -> Result<CertificateSet, CertificateError> {
        let certificates = files
            .iter()
            .map(Certificate::load)
            .collect::<Result<Vec<_>, _>>()?;
        if certificates.is_empty() {
            return Err(CertificateError::Empty);
        }
        Ok(CertificateSet { certificates })
    }

    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = sni.and_then(|name| ServerName::try_from(name).ok());
        let covering = name.and_then(|name| self.certificates.iter().find(|c| c.covers(&name)));
        covering
            .or_else(|| self.certificates.first())
            .map(|c| Arc::clone(&c.certified))
    }
}

/// The certificate resolver rustls asks at each handshake; reloadable.
#[derive(Debug)]
pub struct CertificateStore {
    files: Vec<CertificateFiles>,
    current: ArcSwap<CertificateSet>,
}

impl CertificateStore {
    /// Loads every certificate named in `files`.
    pub fn load(files: &[CertificateFiles]) -> Result<CertificateStore, CertificateError> {
        let set = CertificateSet::load(files)?;
        Ok(CertificateStore {
            files: files.to_vec(),
            current: ArcSwap::from_pointee(set),
        })
    }

    /// Reads every file again and serves the new set from the next handshake on. On any
    /// error the old set stays in use. Connections already open are not touched.
    pub fn reload(&self) -> Result<(), CertificateError> {
        let set = CertificateSet::load(&self.files)?;
        self.current.store(Arc::new(set));
        Ok(())
    }

    /// The files this store reads, for log messages.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|files| files.cert.as_path())
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().pick(client_hello.server_name())
    }
}
