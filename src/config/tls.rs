//! `[tls]`: the certificates `mailtrack serve` presents on its HTTPS address, one
//! `[[tls.certificate]]` per domain (or per set of domains), picked by SNI.
//!
//! Validation resolves the paths. `serve` then loads every certificate (`server::certificates`)
//! before it binds, so a missing file, a key that does not match its certificate or a PEM with
//! nothing in it is a config error naming `tls.certificate`, exit 64, with no port bound.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::acme::{AcmeConfig, RawAcme};
use super::server::Refusal;

/// `[tls]`, validated.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// The certificate files, resolved against the config file's folder, in the order given.
    /// The first is served to clients that send no SNI or a name no certificate covers.
    pub certificates: Vec<CertificateFiles>,
    /// `[tls.acme]`: a certificate obtained and renewed automatically, if configured.
    pub acme: Option<AcmeConfig>,
}

/// One `[[tls.certificate]]`: a PEM certificate chain and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The chain, end-entity certificate first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[tls]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    #[serde(default)]
    certificate: Vec<RawCertificate>,
    acme: Option<RawAcme>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    cert: PathBuf,
    key: PathBuf,
}

impl RawTls {
    /// Resolves the paths and validates `[tls.acme]`; `http` and `https` say which
    /// listeners `[server]` has.
    pub(super) fn validate(
        self,
        folder: &Path,
        http: bool,
        https: bool,
    ) -> Result<TlsConfig, Refusal> {
        if https && self.certificate.is_empty() && self.acme.is_none() {
            return Err((
                "server.https",
                "needs at least one [[tls.certificate]] with cert and key, or [tls.acme]"
                    .to_owned(),
            ));
        }
        let acme = self
            .acme
            .map(|acme| acme.validate(folder, http, https))
            .transpose()?;
        let certificates: Vec<CertificateFiles> = self
            .certificate
            .into_iter()
            .map(|raw| CertificateFiles {
                cert: folder.join(raw.cert),
                key: folder.join(raw.key),
            })
            .collect();
        Ok(TlsConfig { certificates, acme })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str, https: bool) -> Result<TlsConfig, Refusal> {
        let raw: RawTls = toml::from_str(text).unwrap();
        raw.validate(Path::new("/nonexistent/mailtrack"), true, https)
    }

    #[test]
    fn https_needs_a_certificate() {
        let (key, message) = validate("", true).unwrap_err();
        assert_eq!(key, "server.https");
        assert!(message.contains("[[tls.certificate]]"), "{message}");
        assert!(validate("", false).unwrap().certificates.is_empty());
    }

    #[test]
    fn files_resolve_against_the_config_folder() {
        let text = "[[certificate]]\ncert = \"a.pem\"\nkey = \"/keys/a.key.pem\"\n";
        let config = validate(text, true).unwrap();
        assert_eq!(
            config.certificates,
            [CertificateFiles {
                cert: PathBuf::from("/nonexistent/mailtrack/a.pem"),
                key: PathBuf::from("/keys/a.key.pem"),
            }]
        );
    }
}
