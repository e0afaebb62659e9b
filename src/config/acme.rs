//! `[tls.acme]`: certificates obtained and renewed automatically from an ACME CA (Let's
//! Encrypt by default), beside any `[[tls.certificate]]` files.
//!
//! Validation checks everything that can be checked before a port is bound: the domains are
//! DNS names, the directory is an `https` URL, the challenge's listener is configured, and the
//! storage folder exists (it is created if missing) and can be written. The folder holds the
//! account key and the private keys, so its path is never logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use url::Url;

use super::server::Refusal;

/// Let's Encrypt's production directory: the CA most users mean when they ask for "automatic
/// HTTPS". Its staging directory, [`LETS_ENCRYPT_STAGING`], issues untrusted certificates
/// under far higher rate limits, for trying a setup out.
pub const DEFAULT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Let's Encrypt's staging directory (documented; never a default).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The first wait after a failed order: one minute. Let's Encrypt allows five failed
/// validations per hostname an hour, so retrying faster only burns that allowance; the wait
/// doubles after each failure up to [`MAX_RETRY_DELAY`].
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The longest wait between two attempts: six hours, so a CA that was down for a day is
/// tried again within a quarter of a day of coming back, long before a 90-day certificate
/// renewed at two-thirds of its life runs out.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(6 * 3600);

/// The challenge used when none is named: TLS-ALPN-01 when HTTPS is served (it needs nothing
/// but port 443), else HTTP-01.
const CHALLENGE_KEY: &str = "tls.acme.challenge";

/// `[tls.acme]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The names on the certificate, the first one naming it in the storage folder.
    pub domains: Vec<String>,
    /// The contact address given to the CA (for expiry warnings), as `mailto:` URLs.
    pub contact: Vec<String>,
    /// The CA's ACME directory.
    pub directory: Url,
    /// A PEM root the directory's own HTTPS certificate chains to, for a private CA; `None`:
    /// the system's roots.
    pub directory_root: Option<PathBuf>,
    /// Where the account key and certificates are kept; never logged.
    pub storage: PathBuf,
    /// How the CA checks that we hold the domains.
    pub challenge: Challenge,
    /// An external account binding, for CAs that need one (ZeroSSL, Google, …).
    pub eab: Option<ExternalAccountBinding>,
    /// The first wait after a failed attempt; doubled after each further failure.
    pub retry_delay: Duration,
}

impl fmt::Debug for AcmeConfig {
    // The storage folder and the EAB key stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeConfig")
            .field("domains", &self.domains)
            .field("directory", &self.directory.as_str())
            .field("challenge", &self.challenge)
            .field("eab", &self.eab.is_some())
            .finish_non_exhaustive()
    }
}

/// The ACME challenge answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 (RFC 8737), on the HTTPS listener: the CA connects to port 443.
    TlsAlpn01,
    /// HTTP-01, on the plain listener: the CA fetches `/.well-known/acme-challenge/{token}`
    /// on port 80.
    Http01,
}

/// An external account binding: the key id and HMAC key the CA gave.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalAccountBinding {
    /// The key identifier.
    pub key_id: String,
    /// The HMAC key, decoded from base64url.
    pub hmac_key: Vec<u8>,
}

/// `[tls.acme]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    #[serde(default)]
    domains: Vec<String>,
    contact: Option<String>,
    directory: Option<String>,
    directory_root: Option<PathBuf>,
    storage: Option<PathBuf>,
    challenge: Option<String>,
    eab: Option<RawEab>,
    retry_delay: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEab {
    key_id: String,
    hmac_key: String,
}

impl RawAcme {
    /// Validates `[tls.acme]`; `http` and `https` say which listeners `[server]` has.
    pub(super) fn validate(
        self,
        folder: &Path,
        http: bool,
        https: bool,
    ) -> Result<AcmeConfig, Refusal> {
        let domains = domains(self.domains)?;
        let contact = match self.contact {
            None => Vec::new(),
            Some(email) if email.contains('@') && !email.contains(char::is_whitespace) => {
                vec![format!("mailto:{email}")]
            }
            Some(email) => {
                return Err((
                    "tls.acme.contact",
                    format!("{email:?} is not an email address"),
                ))
            }
        };
        let directory = directory(self.directory.as_deref().unwrap_or(DEFAULT_DIRECTORY))?;
        let challenge = match self.challenge.as_deref() {
            None if https => Challenge::TlsAlpn01,
            None => Challenge::Http01,
            Some("tls-alpn-01") => Challenge::TlsAlpn01,
            Some("http-01") => Challenge::Http01,
            Some(other) => {
                return Err((
                    CHALLENGE_KEY,
                    format!("{other:?} is not \"tls-alpn-01\" or \"http-01\""),
                ))
            }
        };
        match challenge {
            Challenge::TlsAlpn01 if !https => {
                return Err((CHALLENGE_KEY, "tls-alpn-01 needs server.https".to_owned()))
            }
            Challenge::Http01 if !http => {
                return Err((CHALLENGE_KEY, "http-01 needs server.http".to_owned()))
            }
            _ => {}
        }
        let storage = folder.join(self.storage.ok_or((
            "tls.acme.storage",
            "is required: a folder for the account key and certificates".to_owned(),
        ))?);
        check_writable(&storage)?;
        let eab = self.eab.map(RawEab::validate).transpose()?;
        let retry_delay = match self.retry_delay {
            None => DEFAULT_RETRY_DELAY,
            Some(0) => {
                return Err((
                    "tls.acme.retry_delay",
                    "must be at least 1 second".to_owned(),
                ))
            }
            Some(seconds) => Duration::from_secs(seconds).min(MAX_RETRY_DELAY),
        };
        Ok(AcmeConfig {
            domains,
            contact,
            directory,
            directory_root: self.directory_root.map(|root| folder.join(root)),
            storage,
            challenge,
            eab,
            retry_delay,
        })
    }
}

impl RawEab {
    fn validate(self) -> Result<ExternalAccountBinding, Refusal> {
        if self.key_id.is_empty() {
            return Err(("tls.acme.eab.key_id", "is empty".to_owned()));
        }
        let hmac_key = URL_SAFE_NO_PAD
            .decode(self.hmac_key.trim_end_matches('='))
            .map_err(|e| ("tls.acme.eab.hmac_key", format!("is not base64url: {e}")))?;
        Ok(ExternalAccountBinding {
            key_id: self.key_id,
            hmac_key,
        })
    }
}

/// The domains, each a DNS name a certificate can carry; no wildcard, since neither
/// challenge here can prove one.
fn domains(domains: Vec<String>) -> Result<Vec<String>, Refusal> {
    const KEY: &str = "tls.acme.domains";
    if domains.is_empty() {
        return Err((
            KEY,
            "names no domain; give at least one, e.g. [\"track.example.com\"]".to_owned(),
        ));
    }
    for domain in &domains {
        let valid = !domain.starts_with("*.")
            && domain.contains('.')
            && rustls::pki_types::DnsName::try_from(domain.as_str()).is_ok();
        if !valid {
            return Err((
                KEY,
                format!("{domain:?} is not a DNS name (wildcards need DNS-01)"),
            ));
        }
    }
    Ok(domains
        .into_iter()
        .map(|d| d.to_ascii_lowercase())
        .collect())
}

fn directory(text: &str) -> Result<Url, Refusal> {
    const KEY: &str = "tls.acme.directory";
    let url = Url::parse(text).map_err(|e| (KEY, format!("{text:?} is not a URL: {e}")))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err((
            KEY,
            format!("{text:?} is not an https:// URL (ACME needs HTTPS)"),
        ));
    }
    Ok(url)
}

/// Creates the folder if missing and checks that a file can be made in it. The message
/// names the key, not the path: the path is never logged.
fn check_writable(storage: &Path) -> Result<(), Refusal> {
    const KEY: &str = "tls.acme.storage";
    std::fs::create_dir_all(storage).map_err(|e| (KEY, format!("cannot be created: {e}")))?;
    let probe = storage.join(".mailtrack-write-check");
    std::fs::write(&probe, b"").map_err(|e| (KEY, format!("cannot be written: {e}")))?;
    // The probe only showed the folder is writable; a leftover empty file harms nothing.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<AcmeConfig, Refusal> {
        let folder = tempfile::tempdir().unwrap();
        let raw: RawAcme = toml::from_str(text).unwrap();
        raw.validate(folder.path(), true, true)
    }

    #[test]
    fn defaults_to_lets_encrypt_and_tls_alpn() {
        let config = validate("domains = [\"Track.Example.com\"]\nstorage = \"acme\"\n").unwrap();
        assert_eq!(config.directory.as_str(), DEFAULT_DIRECTORY);
        assert_eq!(config.challenge, Challenge::TlsAlpn01);
        assert_eq!(config.domains, ["track.example.com"]);
        assert_eq!(config.retry_delay, DEFAULT_RETRY_DELAY);
        assert!(Url::parse(LETS_ENCRYPT_STAGING).is_ok());
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            ("storage = \"a\"\n", "tls.acme.domains"),
            ("domains = [\"*.example.com\"]\nstorage = \"a\"\n", "tls.acme.domains"),
            ("domains = [\"a.example\"]\n", "tls.acme.storage"),
            ("domains = [\"a.example\"]\nstorage = \"a\"\ndirectory = \"not a url\"\n", "tls.acme.directory"),
            ("domains = [\"a.example\"]\nstorage = \"a\"\ndirectory = \"http://ca.example/dir\"\n", "tls.acme.directory"),
            ("domains = [\"a.example\"]\nstorage = \"a\"\nchallenge = \"dns-01\"\n", CHALLENGE_KEY),
            ("domains = [\"a.example\"]\nstorage = \"a\"\ncontact = \"nobody\"\n", "tls.acme.contact"),
            ("domains = [\"a.example\"]\nstorage = \"a\"\n[eab]\nkey_id = \"k\"\nhmac_key = \"!!\"\n", "tls.acme.eab.hmac_key"),
        ];
        for (text, key) in cases {
            let (refused, message) = validate(text).unwrap_err();
            assert_eq!(refused, key, "{text}: {message}");
        }
    }

    #[test]
    fn the_challenge_needs_its_listener() {
        let folder = tempfile::tempdir().unwrap();
        let raw = |challenge: &str| -> RawAcme {
            toml::from_str(&format!(
                "domains = [\"a.example\"]\nstorage = \"a\"\nchallenge = \"{challenge}\"\n"
            ))
            .unwrap()
        };
        let (key, _) = raw("tls-alpn-01")
            .validate(folder.path(), true, false)
            .unwrap_err();
        assert_eq!(key, CHALLENGE_KEY);
        let (key, _) = raw("http-01")
            .validate(folder.path(), false, true)
            .unwrap_err();
        assert_eq!(key, CHALLENGE_KEY);
        assert!(raw("http-01").validate(folder.path(), true, true).is_ok());
    }
}
