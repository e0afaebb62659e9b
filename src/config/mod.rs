//! Configuration: one TOML file, every setting with a named default, validated in full before
//! anything else happens.
//!
//! The default file, `config/mailtrack.toml`, is embedded in the binary and used when no
//! `--config` is given. Relative paths in a config file resolve against the file's folder; for
//! the embedded default, against `config/` under the current directory, as if the repository's
//! copy had been named.
//!
//! Each section has its own file: [`server`], [`admin`], [`tls`] (and [`acme`] under it),
//! [`log`], [`events`], [`notify`], [`classify`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use crate::link::{describe_toml_error, KeyRing, KeyRingError, LinkSigner};

pub mod acme;
pub mod admin;
pub mod classify;
pub mod events;
pub mod log;
pub mod notify;
pub mod server;
pub mod tls;

pub use acme::{AcmeConfig, Challenge, ExternalAccountBinding};
pub use admin::{AdminConfig, AdminToken};
pub use classify::{Certainty, ClassifyConfig, ListConfig, ListKind};
pub use events::{Durability, EventsConfig, RotatedRetention, SinkKind};
pub use log::{LogConfig, LogFormat};
pub use notify::NotifyConfig;
pub use server::{ClientIpHeader, ServerConfig};
pub use tls::{CertificateFiles, TlsConfig};

/// The embedded default configuration: the repository's `config/mailtrack.toml`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/mailtrack.toml");

/// Where the embedded default configuration behaves as if it had been read from.
pub const DEFAULT_CONFIG_PATH: &str = "config/mailtrack.toml";

/// The most links tracked in one message: SES tracks at most 250 links per message, and
/// senders tuned against SES expect the same cut-off.
pub const DEFAULT_MAX_LINKS: usize = 250;

/// The most links the config may allow per message: more would make a message's pixel and
/// links dominate its size, and no real newsletter comes close.
pub const MAX_MAX_LINKS: usize = 10_000;

/// The tracking base URL when none is configured: the embedded default serves plain HTTP on
/// localhost, so links made with it work on the same machine with no certificate.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";

/// Whether a missing key ring is created, when not configured: no. In production a missing
/// ring is a mistake (a volume not mounted, a typo), and a fresh key would silently leave every
/// link already sent unverifiable. The shipped default config turns it on for a first run.
pub const DEFAULT_GENERATE_KEYS_IF_MISSING: bool = false;

/// What to do with a link that can be read but not verified, when not configured: show the
/// interstitial. A recipient whose mail client broke the link still reaches the destination
/// with one more click, and nothing unverified is ever followed automatically.
pub const DEFAULT_UNVERIFIED: UnverifiedPolicy = UnverifiedPolicy::Interstitial;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (or [`DEFAULT_CONFIG_PATH`] for the embedded default).
    pub path: PathBuf,
    /// How links are written.
    pub tracking: TrackingConfig,
    /// The key ring file, resolved against the config file's folder.
    pub keys_file: PathBuf,
    /// Whether a missing key ring file is created with one fresh key (`[keys]
    /// generate_if_missing`).
    pub generate_keys_if_missing: bool,
    /// Where and how `serve` listens.
    pub server: ServerConfig,
    /// The operators' listener (`[admin]`).
    pub admin: AdminConfig,
    /// The HTTPS certificates.
    pub tls: TlsConfig,
    /// How `serve` logs.
    pub log: LogConfig,
    /// Where events go (`[events]`).
    pub events: EventsConfig,
    /// Whom `mailtrack notify` delivers them to (`[notify]`).
    pub notify: NotifyConfig,
    /// What `serve`'s classifier reads (`[classify]`).
    pub classify: ClassifyConfig,
}

/// `[tracking]`: how links are written.
#[derive(Debug, Clone)]
pub struct TrackingConfig {
    /// The tracking domain's scheme and host (and port), e.g. `https://track.example.com`.
    pub base_url: Url,
    /// The most links tracked per message; the rest are left as they are and reported.
    pub max_links: usize,
    /// What `serve` answers to a link it can read but not verify.
    pub unverified: UnverifiedPolicy,
}

/// What `serve` answers to a click whose destination can be read but whose MAC does not
/// verify. It never redirects to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnverifiedPolicy {
    /// A page that names the destination and asks for a click.
    Interstitial,
    /// The same 400 page as for a link that cannot be read at all.
    Reject,
}

/// Why the configuration was refused. Every message names the file, and the key where
/// there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("config {}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message with the line, naming the key.
        message: String,
    },
    /// A value is of the right type but unusable.
    #[error("config {}: {key}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, as `section.key`.
        key: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The key ring named by `[keys] file` is unusable.
    #[error(transparent)]
    Keys(#[from] KeyRingError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tracking: RawTracking,
    keys: RawKeys,
    #[serde(default)]
    server: server::RawServer,
    #[serde(default)]
    admin: admin::RawAdmin,
    #[serde(default)]
    tls: tls::RawTls,
    #[serde(default)]
    log: log::RawLog,
    #[serde(default)]
    events: events::RawEvents,
    #[serde(default)]
    notify: notify::RawNotify,
    #[serde(default)]
    classify: classify::RawClassify,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTracking {
    base_url: Option<String>,
    max_links: Option<usize>,
    unverified: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    file: PathBuf,
    generate_if_missing: Option<bool>,
}

impl Config {
    /// Loads the file at `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_toml(&text, path)
            }
            None => Config::from_toml(DEFAULT_CONFIG_TOML, Path::new(DEFAULT_CONFIG_PATH)),
        }
    }

    /// Parses and validates a config file's text; `path` names it in errors and anchors its
    /// relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: describe_toml_error(text, &e),
        })?;
        let invalid = |key, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };

        let folder = path.parent().unwrap_or(Path::new(""));
        let refused = |(key, message)| invalid(key, message);
        let tracking = raw.tracking.validate().map_err(refused)?;
        let server = raw.server.validate().map_err(refused)?;
        let admin = raw.admin.validate(folder).map_err(refused)?;
        if let Some(public) = [server.http, server.https]
            .into_iter()
            .flatten()
            .find(|public| same_port(*public, admin.listen))
        {
            return Err(invalid(
                "admin.listen",
                format!(
                    "{} is also a public address ({public}); give it a port of its own",
                    admin.listen
                ),
            ));
        }
        let tls = raw
            .tls
            .validate(folder, server.http.is_some(), server.https.is_some())
            .map_err(refused)?;
        let log = raw.log.validate().map_err(refused)?;
        let events = raw.events.validate(folder).map_err(refused)?;
        let notify = raw.notify.validate(folder).map_err(refused)?;
        let classify = raw.classify.validate(folder).map_err(refused)?;
        admin::require_token_beyond_loopback(
            "notify.admin_listen",
            notify.admin_listen,
            admin.token.as_ref(),
        )
        .map_err(refused)?;
        if same_port(notify.admin_listen, admin.listen) {
            return Err(invalid(
                "notify.admin_listen",
                format!(
                    "{} is also admin.listen: serve and notify may run on one machine, so \
                     give notify's admin listener a port of its own",
                    notify.admin_listen
                ),
            ));
        }
        let config = Config {
            path: path.to_owned(),
            tracking,
            keys_file: folder.join(raw.keys.file),
            generate_keys_if_missing: raw
                .keys
                .generate_if_missing
                .unwrap_or(DEFAULT_GENERATE_KEYS_IF_MISSING),
            server,
            admin,
            tls,
            log,
            events,
            notify,
            classify,
        };
        // A base URL the signer refuses is a config error, found before anything runs.
        if let Err(e) = LinkSigner::new(&config.tracking.base_url, Arc::new(empty_ring())) {
            return Err(invalid("tracking.base_url", e.to_string()));
        }
        Ok(config)
    }

    /// Creates the key ring file with one fresh active key when it is missing and
    /// `generate_if_missing` allows it. Returns whether it created one, so the caller can say so.
    pub fn ensure_key_ring(&self) -> Result<bool, ConfigError> {
        if !self.generate_keys_if_missing || self.keys_file.exists() {
            return Ok(false);
        }
        crate::link::key_ring::create_key_file(&self.keys_file, 1)?;
        Ok(true)
    }

    /// Loads the key ring named by `[keys] file`.
    pub fn key_ring(&self) -> Result<KeyRing, ConfigError> {
        Ok(KeyRing::load(&self.keys_file)?)
    }

    /// A link signer for the configured tracking domain and key ring.
    pub fn signer(&self) -> Result<LinkSigner, ConfigError> {
        let ring = Arc::new(self.key_ring()?);
        LinkSigner::new(&self.tracking.base_url, ring).map_err(|e| ConfigError::Invalid {
            path: self.path.clone(),
            key: "tracking.base_url",
            message: e.to_string(),
        })
    }
}

impl RawTracking {
    /// Validates `[tracking]`, except what needs the signer (checked by the caller).
    fn validate(self) -> Result<TrackingConfig, server::Refusal> {
        let base_url = self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let base_url = Url::parse(base_url).map_err(|e| {
            (
                "tracking.base_url",
                format!("{base_url:?} is not a URL: {e}"),
            )
        })?;
        let max_links = self.max_links.unwrap_or(DEFAULT_MAX_LINKS);
        if max_links > MAX_MAX_LINKS {
            return Err((
                "tracking.max_links",
                format!("{max_links} is more than the limit of {MAX_MAX_LINKS}"),
            ));
        }
        let unverified = match self.unverified.as_deref() {
            None => DEFAULT_UNVERIFIED,
            Some("interstitial") => UnverifiedPolicy::Interstitial,
            Some("reject") => UnverifiedPolicy::Reject,
            Some(other) => {
                return Err((
                    "tracking.unverified",
                    format!("{other:?} is not \"interstitial\" or \"reject\""),
                ))
            }
        };
        Ok(TrackingConfig {
            base_url,
            max_links,
            unverified,
        })
    }
}

/// Whether binding both `a` and `b` would fail: the same port (not 0, which picks a free one)
/// on the same address, or on any address when either is the unspecified one.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A ring with one throwaway key, only to check a base URL with [`LinkSigner::new`].
fn empty_ring() -> KeyRing {
    // 32 distinct bytes (0x00 to 0x1f): any valid secret does; it never signs a real link.
    let text = "[[key]]\nid = 0\nsecret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\nstate = \"active\"\n";
    KeyRing::from_toml(text, Path::new("(base URL check)")).expect("a fixed valid ring")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("/etc/mailtrack/mailtrack.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn embedded_default_is_valid() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.tracking.base_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(config.tracking.max_links, DEFAULT_MAX_LINKS);
        assert_eq!(config.keys_file, Path::new("config/keys.toml"));
        assert!(
            config.generate_keys_if_missing,
            "the shipped default runs from a fresh clone"
        );
        assert_eq!(
            config.admin.listen,
            admin::DEFAULT_ADMIN_LISTEN.parse().unwrap(),
            "the admin listener is on loopback, so it needs no token"
        );
        assert!(config.admin.token.is_none());
        assert_eq!(
            config.server.max_connections_per_ip,
            server::DEFAULT_MAX_CONNECTIONS_PER_IP
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let config = load("[keys]\nfile = \"keys.toml\"\n").unwrap();
        assert_eq!(config.keys_file, Path::new("/etc/mailtrack/keys.toml"));
        let config = load("[keys]\nfile = \"/var/lib/keys.toml\"\n").unwrap();
        assert_eq!(config.keys_file, Path::new("/var/lib/keys.toml"));
        assert!(!config.generate_keys_if_missing);
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let err = load("[tracking]\nbse_url = \"x\"\n[keys]\nfile = \"k\"\n").unwrap_err();
        assert!(
            err.starts_with(
                "config /etc/mailtrack/mailtrack.toml: line 2: unknown field `bse_url`"
            ),
            "{err}"
        );

        let err = load("[tracking]\nbase_url = \"https://t.example/path\"\n[keys]\nfile = \"k\"\n")
            .unwrap_err();
        assert!(
            err.starts_with("config /etc/mailtrack/mailtrack.toml: tracking.base_url: "),
            "{err}"
        );

        let err = load("[tracking]\nbase_url = \"not a url\"\n[keys]\nfile = \"k\"\n").unwrap_err();
        assert!(
            err.contains("tracking.base_url: \"not a url\" is not a URL"),
            "{err}"
        );

        let err = load("[tracking]\nmax_links = 20000\n[keys]\nfile = \"k\"\n").unwrap_err();
        assert!(
            err.contains("tracking.max_links: 20000 is more than"),
            "{err}"
        );

        let err = load("[tracking]\nmax_links = -1\n[keys]\nfile = \"k\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");

        let err = load("").unwrap_err();
        assert!(err.contains("missing field `keys`"), "{err}");

        let err = load("[keys]\nfile = \"k\"\n[admin]\nlisten = \"0.0.0.0:9090\"\n").unwrap_err();
        assert!(err.contains(": admin.token_file: required"), "{err}");

        let err = load("[keys]\nfile = \"k\"\n[server]\nhttp = \"0.0.0.0:9090\"\n").unwrap_err();
        assert!(
            err.contains(": admin.listen: 127.0.0.1:9090 is also a public"),
            "{err}"
        );
        let ports_0 = "[keys]\nfile = \"k\"\n[server]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
        assert!(load(ports_0).is_ok(), "port 0 is a fresh port each time");

        let open = "[keys]\nfile = \"k\"\n[notify]\nadmin_listen = \"0.0.0.0:9091\"\n";
        let err = load(open).unwrap_err();
        assert!(
            err.contains(": admin.token_file: required when notify.admin_listen"),
            "{err}"
        );
        let same = "[keys]\nfile = \"k\"\n[notify]\nadmin_listen = \"127.0.0.1:9090\"\n";
        let err = load(same).unwrap_err();
        assert!(
            err.contains(": notify.admin_listen: 127.0.0.1:9090 is also"),
            "{err}"
        );
    }
}
