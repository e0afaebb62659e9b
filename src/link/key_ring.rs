//! The key ring: the secrets that sign and verify links, each with an id and a state.
//!
//! ```toml
//! sign_with = 2            # optional when exactly one key is active
//!
//! [[key]]
//! id = 1
//! secret = "base64 of at least 32 random bytes"
//! state = "retired"        # active | retired | revoked
//! ```
//!
//! The file is never logged and never committed; [`KeyRing`]'s `Debug` shows ids and states
//! only.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

/// The fewest secret bytes a key may have: HMAC-SHA256's own block of strength.
pub const MIN_SECRET_BYTES: usize = 32;

/// The fewest distinct byte values a secret may have. 32 random bytes have about 30; a secret
/// of all zeros, one repeated byte, or a short pattern has a handful, and is a placeholder
/// somebody forgot to replace. Eight still admits a secret written in hex digits (sixteen
/// values), which, long enough, is strong.
pub const MIN_DISTINCT_SECRET_BYTES: usize = 8;

/// The id of a key in the ring, written in decimal at the end of every link.
pub type KeyId = u32;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Signs new links and verifies old ones.
    Active,
    /// Only verifies: mail already sent keeps working while new mail uses a newer key.
    Retired,
    /// Verifies nothing: links signed with it are treated as unverified.
    Revoked,
}

/// One key of the ring.
pub struct Key {
    id: KeyId,
    state: KeyState,
    hmac: hmac::Key,
}

impl Key {
    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's state.
    pub fn state(&self) -> KeyState {
        self.state
    }

    pub(crate) fn hmac(&self) -> &hmac::Key {
        &self.hmac
    }
}

/// The loaded key ring.
pub struct KeyRing {
    /// Sorted by id; ids are unique.
    keys: Vec<Key>,
    sign_with: KeyId,
}

/// Why a key file was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// The file could not be read: it is missing, or its permissions keep us out.
    #[error("keys file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a field of the wrong type or name.
    #[error("keys file {}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the field and line.
        message: String,
    },
    /// The file parses but describes an unusable ring.
    #[error("keys file {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key id.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    sign_with: Option<KeyId>,
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: KeyId,
    secret: String,
    state: KeyState,
}

impl KeyRing {
    /// Reads and validates the key file at `path`, and logs a warning when the file is
    /// readable by its group or by others: anyone who reads it can sign links.
    pub fn load(path: &Path) -> Result<KeyRing, KeyRingError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyRingError::Read {
            path: path.to_owned(),
            source,
        })?;
        if let Some(mode) = shared_mode(path) {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:04o}"),
                "the keys file is readable by its group or others; anyone who can read it can \
                 sign links: chmod 600 it"
            );
        }
        KeyRing::from_toml(&text, path)
    }

    /// Parses and validates a key file's text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<KeyRing, KeyRingError> {
        let file: KeyFile = toml::from_str(text).map_err(|e| KeyRingError::Syntax {
            path: path.to_owned(),
            message: describe_toml_error(text, &e),
        })?;
        let invalid = |message: String| KeyRingError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut keys = Vec::with_capacity(file.key.len());
        for entry in file.key {
            let secret = STANDARD.decode(entry.secret.trim()).map_err(|_| {
                invalid(format!("key {} has a secret that is not base64", entry.id))
            })?;
            if secret.len() < MIN_SECRET_BYTES {
                return Err(invalid(format!(
                    "key {} has a {}-byte secret; at least {MIN_SECRET_BYTES} random bytes are needed \
                     (make one with `mailtrack keygen --id {}`)",
                    entry.id,
                    secret.len(),
                    entry.id
                )));
            }
            let distinct = distinct_bytes(&secret);
            if distinct < MIN_DISTINCT_SECRET_BYTES {
                return Err(invalid(format!(
                    "key {} has a secret of only {distinct} distinct byte values (all zeros, a \
                     repeated byte or a short pattern), which is no secret; make one with \
                     `mailtrack keygen --id {}`",
                    entry.id, entry.id
                )));
            }
            keys.push(Key {
                id: entry.id,
                state: entry.state,
                hmac: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            });
        }
        keys.sort_by_key(|k| k.id);
        if let Some(pair) = keys.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(invalid(format!("key {} is listed twice", pair[0].id)));
        }
        let sign_with = match file.sign_with {
            Some(id) => id,
            None => sole_active_key(&keys).map_err(invalid)?,
        };
        match keys.iter().find(|k| k.id == sign_with) {
            None => Err(invalid(format!(
                "sign_with = {sign_with}, but there is no key {sign_with}"
            ))),
            Some(k) if k.state != KeyState::Active => Err(invalid(format!(
                "sign_with = {sign_with}, but key {sign_with} is {:?}; only an active key signs",
                k.state
            ))),
            Some(_) => Ok(KeyRing { keys, sign_with }),
        }
    }

    /// The key that signs new links.
    pub fn signing_key(&self) -> &Key {
        self.get(self.sign_with)
            .expect("validated at load: sign_with names a key of the ring")
    }

    /// The key with `id`, in whatever state.
    pub fn get(&self, id: KeyId) -> Option<&Key> {
        self.keys
            .binary_search_by_key(&id, |k| k.id)
            .ok()
            .map(|i| &self.keys[i])
    }

    /// All keys, by id.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

/// How many different byte values `secret` holds.
fn distinct_bytes(secret: &[u8]) -> usize {
    let mut seen = [false; 256];
    for &byte in secret {
        seen[usize::from(byte)] = true;
    }
    seen.iter().filter(|&&seen| seen).count()
}

/// The file's permission bits when its group or others may read it.
#[cfg(unix)]
fn shared_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn shared_mode(_path: &Path) -> Option<u32> {
    None
}

/// A TOML error as one line: `line N: message`, without echoing the file's text (a keys
/// file's text holds secrets). The config file's errors are described the same way; the
/// helper lives here, in the lower layer.
pub(crate) fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().lines().next().unwrap_or("invalid TOML");
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_owned(),
    }
}

fn sole_active_key(keys: &[Key]) -> Result<KeyId, String> {
    let mut active = keys.iter().filter(|k| k.state == KeyState::Active);
    match (active.next(), active.next()) {
        (Some(k), None) => Ok(k.id),
        (None, _) => Err("no active key; add one with `mailtrack keygen --id N`".to_owned()),
        (Some(_), Some(_)) => Err(
            "more than one active key and no sign_with; set sign_with to the id that signs new links"
                .to_owned(),
        ),
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets.
        let keys: Vec<_> = self.keys.iter().map(|k| (k.id, k.state)).collect();
        f.debug_struct("KeyRing")
            .field("sign_with", &self.sign_with)
            .field("keys", &keys)
            .finish()
    }
}

/// Creates a key file at `path` holding one fresh active key with id `id`, readable by its owner
/// only. Never overwrites: an existing file is an error.
pub fn create_key_file(path: &Path, id: KeyId) -> Result<(), KeyRingError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;

    let failed = |source| KeyRingError::Read {
        path: path.to_owned(),
        source,
    };
    let table = generate_key_table(id)
        .map_err(|_| failed(std::io::Error::other("the system has no randomness")))?;
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(failed)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(failed)?;
    let text = format!(
        "# mailtrack's key ring: never commit or share it. Links signed with a key need it to\n\
         # verify for as long as the mail is read; retire keys, never delete them.\n{table}"
    );
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)
}

/// A new `[[key]]` table with a fresh 32-byte random secret, in the key file's format.
pub fn generate_key_table(id: KeyId) -> Result<String, ring::error::Unspecified> {
    let mut secret = [0u8; MIN_SECRET_BYTES];
    SystemRandom::new().fill(&mut secret)?;
    Ok(format!(
        "[[key]]\nid = {id}\nsecret = \"{}\"\nstate = \"active\"\n",
        STANDARD.encode(secret)
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ring for tests: key 1 retired, key 2 active (signs), key 3 revoked.
    pub(crate) fn test_ring() -> KeyRing {
        let text = format!(
            "sign_with = 2\n{}{}{}",
            table(1, "retired"),
            table(2, "active"),
            table(3, "revoked")
        );
        KeyRing::from_toml(&text, Path::new("test-keys.toml")).unwrap()
    }

    /// 32 bytes, each different, and different for every id.
    fn secret(id: u32) -> [u8; 32] {
        std::array::from_fn(|i| (id as u8).wrapping_mul(61).wrapping_add(i as u8 * 7))
    }

    fn table(id: u32, state: &str) -> String {
        let secret = STANDARD.encode(secret(id));
        format!("[[key]]\nid = {id}\nsecret = \"{secret}\"\nstate = \"{state}\"\n")
    }

    fn load(text: &str) -> Result<KeyRing, String> {
        KeyRing::from_toml(text, Path::new("k.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn loads_a_ring_and_hides_secrets_in_debug() {
        let ring = test_ring();
        assert_eq!(ring.signing_key().id(), 2);
        assert_eq!(ring.get(1).unwrap().state(), KeyState::Retired);
        assert!(ring.get(4).is_none());
        let debug = format!("{ring:?}");
        assert!(!debug.contains(&STANDARD.encode(secret(2))), "{debug}");
    }

    #[test]
    fn keygen_output_alone_is_a_valid_ring() {
        let ring = load(&generate_key_table(7).unwrap()).unwrap();
        assert_eq!(ring.signing_key().id(), 7);
        let other = generate_key_table(7).unwrap();
        assert_ne!(generate_key_table(7).unwrap(), other, "secrets are random");
    }

    #[test]
    fn refuses_unusable_rings_naming_the_file_and_key() {
        let short = "[[key]]\nid = 1\nsecret = \"c2hvcnQ=\"\nstate = \"active\"\n";
        let err = load(short).unwrap_err();
        assert!(
            err.starts_with("keys file k.toml: key 1 has a 5-byte secret"),
            "{err}"
        );

        let zeros = STANDARD.encode([0u8; 36]);
        let zeros = format!("[[key]]\nid = 3\nsecret = \"{zeros}\"\nstate = \"active\"\n");
        let err = load(&zeros).unwrap_err();
        assert!(
            err.starts_with("keys file k.toml: key 3 has a secret of only 1 distinct byte values"),
            "{err}"
        );
        let pattern = STANDARD.encode(b"abcabcabcabcabcabcabcabcabcabcabcabc");
        let pattern = format!("[[key]]\nid = 4\nsecret = \"{pattern}\"\nstate = \"active\"\n");
        assert!(load(&pattern)
            .unwrap_err()
            .contains("key 4 has a secret of only 3"));
        let hex =
            STANDARD.encode(b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        let hex = format!("[[key]]\nid = 5\nsecret = \"{hex}\"\nstate = \"active\"\n");
        assert!(load(&hex).is_ok(), "a long hex secret is strong");

        let not_b64 = "[[key]]\nid = 1\nsecret = \"!!!\"\nstate = \"active\"\n";
        assert!(load(not_b64)
            .unwrap_err()
            .contains("key 1 has a secret that is not base64"));

        let bad_state = table(1, "active").replace("active", "sleeping");
        assert!(load(&bad_state)
            .unwrap_err()
            .contains("unknown variant `sleeping`"));

        let twice = format!("{}{}", table(1, "active"), table(1, "retired"));
        assert!(load(&twice).unwrap_err().contains("key 1 is listed twice"));

        let retired_signer = format!("sign_with = 1\n{}", table(1, "retired"));
        assert!(load(&retired_signer)
            .unwrap_err()
            .contains("only an active key signs"));

        let missing_signer = format!("sign_with = 9\n{}", table(1, "active"));
        assert!(load(&missing_signer)
            .unwrap_err()
            .contains("there is no key 9"));

        let two_active = format!("{}{}", table(1, "active"), table(2, "active"));
        assert!(load(&two_active).unwrap_err().contains("no sign_with"));

        assert!(load("").unwrap_err().contains("no active key"));
        assert!(load("sign_with = 1\nextra = 2\n")
            .unwrap_err()
            .contains("unknown field `extra`"));
    }

    #[test]
    fn created_key_files_are_private_valid_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/keys.toml");
        create_key_file(&path, 1).unwrap();
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.signing_key().id(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = std::fs::read(&path).unwrap();
        assert!(create_key_file(&path, 1).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn syntax_errors_do_not_echo_secrets() {
        let text = "[[key]]\nid = 1\nsecret = \"AAAAsecretAAAA\" oops\n";
        let err = load(text).unwrap_err();
        assert!(!err.contains("secretAAAA"), "{err}");
    }
}
