//! The storage folder: the ACME account and the certificate, shared by every instance that
//! mounts it, and the lock that lets only one of them order at a time.
//!
//! Layout: `account-{hash of the directory URL}.json` (the account key, mode 0600), one per
//! CA so that a changed `directory` never reuses another CA's account; `{first domain}.pem`,
//! the private key and then the chain in one file, so that a reader never sees a key from one
//! order beside a chain from another; and `order.lock`, held while an instance orders.
//! Every file is written to a temporary name and renamed over the old one, so a reader (another
//! instance polling the folder) sees the old file or the new one, never half of one.
//!
//! The folder's path is never logged: errors name the file, not where it lives.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use ring::digest::{digest, SHA256};

/// Why the storage folder could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file in the folder could not be read or written.
    #[error("tls.acme.storage: {file}: {source}")]
    Io {
        /// The file's name inside the folder.
        file: String,
        /// What the OS said.
        source: io::Error,
    },
}

/// The storage folder for one `[tls.acme]`.
#[derive(Clone)]
pub struct AcmeStorage {
    folder: PathBuf,
    account_file: String,
    certificate_file: String,
}

impl std::fmt::Debug for AcmeStorage {
    // The folder is left out: it is never logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeStorage")
            .field("certificate_file", &self.certificate_file)
            .finish_non_exhaustive()
    }
}

/// The held `order.lock`: released when dropped (the OS releases it too if the process dies).
#[derive(Debug)]
pub struct OrderLock {
    _file: File,
}

impl AcmeStorage {
    /// The folder `folder`, for the CA at `directory` and a certificate named after `domain`.
    pub fn new(folder: &Path, directory: &str, domain: &str) -> AcmeStorage {
        let hash = digest(&SHA256, directory.as_bytes());
        let short: String = hash.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        AcmeStorage {
            folder: folder.to_owned(),
            account_file: format!("account-{short}.json"),
            certificate_file: format!("{domain}.pem"),
        }
    }

    /// The stored account credentials (JSON), if any.
    pub fn read_account(&self) -> Result<Option<String>, StorageError> {
        self.read(&self.account_file)
    }

    /// Stores the account credentials, readable by the owner only.
    pub fn write_account(&self, json: &str) -> Result<(), StorageError> {
        self.write(&self.account_file, json)
    }

    /// The stored key and chain (PEM), if any.
    pub fn read_certificate(&self) -> Result<Option<String>, StorageError> {
        self.read(&self.certificate_file)
    }

    /// Stores a key and chain (PEM), readable by the owner only.
    pub fn write_certificate(&self, pem: &str) -> Result<(), StorageError> {
        self.write(&self.certificate_file, pem)
    }

    /// Takes `order.lock` if no other instance (or task) holds it; `None` if one does.
    pub fn try_lock(&self) -> Result<Option<OrderLock>, StorageError> {
        const FILE: &str = "order.lock";
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.folder.join(FILE))
            .map_err(|source| io_error(FILE, source))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(OrderLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(io_error(FILE, source)),
        }
    }

    fn read(&self, name: &str) -> Result<Option<String>, StorageError> {
        match std::fs::read_to_string(self.folder.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error(name, source)),
        }
    }

    fn write(&self, name: &str, text: &str) -> Result<(), StorageError> {
        let temporary = format!(".{name}.{}.tmp", std::process::id());
        let temporary_path = self.folder.join(&temporary);
        let mut options = OpenOptions::new();
        options.create(true).truncate(true).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&temporary_path)
            .map_err(|source| io_error(&temporary, source))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_error(&temporary, source))?;
        std::fs::rename(&temporary_path, self.folder.join(name))
            .map_err(|source| io_error(name, source))
    }
}

fn io_error(file: &str, source: io::Error) -> StorageError {
    StorageError::Io {
        file: file.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_the_lock_is_exclusive() {
        let folder = tempfile::tempdir().unwrap();
        let storage = AcmeStorage::new(folder.path(), "https://ca.example/dir", "a.example");
        assert!(storage.read_certificate().unwrap().is_none());
        storage.write_certificate("pem").unwrap();
        assert_eq!(storage.read_certificate().unwrap().as_deref(), Some("pem"));
        let held = storage.try_lock().unwrap();
        assert!(held.is_some());
        assert!(
            storage.try_lock().unwrap().is_none(),
            "a second lock while held"
        );
        drop(held);
        assert!(storage.try_lock().unwrap().is_some());
        let other = AcmeStorage::new(folder.path(), "https://other.example/dir", "a.example");
        storage.write_account("{}").unwrap();
        assert!(
            other.read_account().unwrap().is_none(),
            "one account per CA"
        );
    }
}
