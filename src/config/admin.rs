//! `[admin]`: the operators' listener, apart from the public ones: `/metrics` now, the
//! rewrite API and notify's operations later. On loopback it needs nothing more; anywhere
//! else a bearer token guards it, read from `token_file` at validation.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ring::digest;
use serde::Deserialize;

use super::server::Refusal;

/// The admin address when `[admin]` names none: loopback, so that only this machine (a
/// Prometheus agent, a sidecar, an operator's shell) reaches it and no token is needed; 9090
/// is where operators look for a metrics port.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// The largest request body the admin listener reads, when not configured: 1 MiB. The
/// rewrite API takes one HTML message per request, and Gmail clips any HTML body past 102 KB,
/// so a body a mail client shows whole fits ten times over; a body is held whole in memory
/// while it is handled, so this is what one operator request can cost.
pub const DEFAULT_ADMIN_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The largest `max_body_bytes` the config may ask for: a body is held whole in memory, and
/// a whole MIME message with attachments (SES takes up to 40 MB) fits.
pub const MAX_ADMIN_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The most `workers` the config may ask for.
pub const MAX_ADMIN_WORKERS: usize = 256;

/// The shortest token accepted: 32 characters, 128 bits as hex, which no one guesses over
/// the network. `openssl rand -hex 32` makes 64.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// `[admin]`, validated.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where the admin listener binds.
    pub listen: SocketAddr,
    /// The token file, resolved against the config file's folder, if one is configured.
    pub token_file: Option<PathBuf>,
    /// The token every admin request must carry as `Authorization: Bearer …`; `None` on a
    /// loopback listener without a token file.
    pub token: Option<AdminToken>,
    /// The largest request body an admin route reads.
    pub max_body_bytes: usize,
    /// The threads serve's admin listener runs on, rewriting included: a runtime of their
    /// own, apart from the public listeners'.
    pub workers: usize,
}

/// The admin bearer token. Only its SHA-256 digest is kept: requests are checked by
/// comparing digests, which takes the same time wherever they differ and whatever the
/// lengths, and the token itself is never in memory to be logged.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token from its text, which must be a bearer token of at least
    /// [`MIN_ADMIN_TOKEN_CHARS`] characters (RFC 6750: letters, digits and `-._~+/`, then
    /// any `=`). The error says what is wrong without echoing the token.
    pub fn new(token: &str) -> Result<AdminToken, String> {
        let body = token.trim_end_matches('=');
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        if token.is_empty() {
            return Err("is empty".to_owned());
        }
        if !body.bytes().all(allowed) {
            return Err(
                "may hold only A-Z a-z 0-9 - . _ ~ + / and a trailing = (a bearer token)"
                    .to_owned(),
            );
        }
        if token.len() < MIN_ADMIN_TOKEN_CHARS {
            return Err(format!(
                "holds {} characters; at least {MIN_ADMIN_TOKEN_CHARS} are needed \
                 (make one with `openssl rand -hex 32`)",
                token.len()
            ));
        }
        Ok(AdminToken {
            digest: sha256(token.as_bytes()),
        })
    }

    /// Whether `presented` is the token. Digests are compared with every byte's difference
    /// folded in, so the time taken says nothing about where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented = sha256(presented);
        let differ = self
            .digest
            .iter()
            .zip(&presented)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b));
        std::hint::black_box(differ) == 0
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            // The constant is a valid address; the test below checks it.
            listen: DEFAULT_ADMIN_LISTEN
                .parse()
                .expect("DEFAULT_ADMIN_LISTEN is an address"),
            token_file: None,
            token: None,
            max_body_bytes: DEFAULT_ADMIN_MAX_BODY_BYTES,
            workers: default_workers(),
        }
    }
}

/// Half the machine's cores, at least one: however many rewrites are asked for at once, the
/// admin listener's threads are never more than the public listeners' (one per core), so
/// mail clients' opens and clicks keep at least half of the CPU.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / 2).max(1)
}

/// `[admin]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    workers: Option<usize>,
}

impl RawAdmin {
    /// Validates `[admin]`, reading the token file (resolved against `folder`) now, so that
    /// a missing or unusable token stops the process before any port is bound.
    pub(super) fn validate(self, folder: &Path) -> Result<AdminConfig, Refusal> {
        let defaults = AdminConfig::default();
        let listen = match self.listen.as_deref() {
            None => defaults.listen,
            Some(text) => text.parse().map_err(|_| {
                (
                    "admin.listen",
                    format!(
                        "{text:?} is not an address (expected IP:PORT, e.g. \"127.0.0.1:9090\")"
                    ),
                )
            })?,
        };
        let token_file = self.token_file.map(|file| folder.join(file));
        let token = token_file.as_deref().map(read_token).transpose()?;
        require_token_beyond_loopback("admin.listen", listen, token.as_ref())?;
        let max_body_bytes = self.max_body_bytes.unwrap_or(defaults.max_body_bytes);
        if max_body_bytes == 0 || max_body_bytes > MAX_ADMIN_MAX_BODY_BYTES {
            return Err((
                "admin.max_body_bytes",
                format!("{max_body_bytes} is not between 1 and {MAX_ADMIN_MAX_BODY_BYTES}"),
            ));
        }
        let workers = self.workers.unwrap_or(defaults.workers);
        if workers == 0 || workers > MAX_ADMIN_WORKERS {
            return Err((
                "admin.workers",
                format!("{workers} is not between 1 and {MAX_ADMIN_WORKERS}"),
            ));
        }
        Ok(AdminConfig {
            listen,
            token_file,
            token,
            max_body_bytes,
            workers,
        })
    }
}

/// Refuses a listener on `listen` (the address of key `key`) that is reachable from other
/// machines when there is no token to guard it. Serve's admin listener and notify's
/// (`notify.admin_listen`, guarded by the same `[admin] token_file`) share this rule.
pub(super) fn require_token_beyond_loopback(
    key: &str,
    listen: SocketAddr,
    token: Option<&AdminToken>,
) -> Result<(), Refusal> {
    if token.is_none() && !is_loopback(listen) {
        return Err((
            "admin.token_file",
            format!(
                "required when {key} ({listen}) is not a loopback address: \
                 name a file holding the bearer token, or listen on 127.0.0.1"
            ),
        ));
    }
    Ok(())
}

/// The token in `path`, without the whitespace around it (`echo` adds a newline).
fn read_token(path: &Path) -> Result<AdminToken, Refusal> {
    let refused = |message: String| ("admin.token_file", format!("{}: {message}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| refused(e.to_string()))?;
    AdminToken::new(text.trim()).map_err(refused)
}

/// Whether only this machine can reach `addr`: 127.0.0.0/8 and `::1`, also as an IPv4-mapped
/// IPv6 address.
fn is_loopback(addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(v4) => v4.ip().is_loopback(),
        SocketAddr::V6(v6) => {
            v6.ip().is_loopback() || v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn validate(text: &str, folder: &Path) -> Result<AdminConfig, Refusal> {
        toml::from_str::<RawAdmin>(text).unwrap().validate(folder)
    }

    #[test]
    fn default_is_loopback_9090_without_a_token() {
        let config = validate("", Path::new("/nonexistent")).unwrap();
        assert_eq!(config.listen, DEFAULT_ADMIN_LISTEN.parse().unwrap());
        assert!(config.token.is_none() && config.token_file.is_none());
        assert_eq!(config.max_body_bytes, DEFAULT_ADMIN_MAX_BODY_BYTES);
        assert_eq!(config.workers, default_workers());
        assert!(config.workers >= 1);
        for loopback in ["127.0.0.2:0", "[::1]:9090", "[::ffff:127.0.0.1]:9090"] {
            let text = format!("listen = \"{loopback}\"");
            assert!(validate(&text, Path::new("/")).is_ok(), "{loopback}");
        }
    }

    #[test]
    fn beyond_loopback_a_token_is_required() {
        for open in ["0.0.0.0:9090", "[::]:9090", "192.0.2.1:9090"] {
            let text = format!("listen = \"{open}\"");
            let (key, message) = validate(&text, Path::new("/")).unwrap_err();
            assert_eq!(key, "admin.token_file", "{open}");
            assert!(message.contains("admin.listen"), "{message}");
        }
    }

    #[test]
    fn the_token_file_is_read_relative_to_the_config_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), format!("{TOKEN}\n")).unwrap();
        let text = "listen = \"0.0.0.0:9090\"\ntoken_file = \"admin.token\"";
        let config = validate(text, dir.path()).unwrap();
        assert_eq!(config.token_file, Some(dir.path().join("admin.token")));
        let token = config.token.unwrap();
        assert!(token.matches(TOKEN.as_bytes()));
        assert!(!token.matches(format!("{TOKEN}\n").as_bytes()));
        assert!(!token.matches(&TOKEN.as_bytes()[1..]));
        assert!(!token.matches(b""));
        assert_eq!(format!("{token:?}"), "AdminToken(..)", "never printed");
    }

    #[test]
    fn unusable_tokens_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("short-token\n", "at least 32"),
            ("\n", "is empty"),
            ("0123456789abcdef 0123456789abcdef", "may hold only"),
        ];
        for (contents, expected) in cases {
            std::fs::write(dir.path().join("admin.token"), contents).unwrap();
            let (key, message) = validate("token_file = \"admin.token\"", dir.path()).unwrap_err();
            assert_eq!(key, "admin.token_file");
            assert!(message.contains(expected), "{expected} in {message}");
            assert!(!message.contains("0123456789abcdef"), "{message}");
        }
        let (key, message) = validate("token_file = \"missing\"", dir.path()).unwrap_err();
        assert_eq!(key, "admin.token_file");
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn refusals_name_the_key() {
        let root = Path::new("/");
        assert_eq!(
            validate("listen = \"nope\"", root).unwrap_err().0,
            "admin.listen"
        );
        for size in ["0", "67108865"] {
            let text = format!("max_body_bytes = {size}");
            assert_eq!(validate(&text, root).unwrap_err().0, "admin.max_body_bytes");
        }
        for workers in ["0", "257"] {
            let text = format!("workers = {workers}");
            assert_eq!(validate(&text, root).unwrap_err().0, "admin.workers");
        }
        assert_eq!(validate("workers = 3", root).unwrap().workers, 3);
    }
}
