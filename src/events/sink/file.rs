//! `sink = "file"`, the default: JSON lines appended to a local file, fsynced per batch, and
//! rotated by size.
//!
//! A rotated file is renamed `{name}.{unix milliseconds}` (with `-{n}` added in the unlikely
//! case that name is taken), so rotated files sort by age and a log shipper can pick them up
//! by pattern. The live file always has the configured name.
//!
//! Rotated files are kept for ever unless `[events] file_keep_rotated` or
//! `file_keep_rotated_bytes` bound them: a file not yet shipped holds events nothing else
//! does. With a bound, each rotation deletes the oldest rotated files past it, and logs each.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::SinkError;
use crate::config::RotatedRetention;

/// The events file, open for appending.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    retention: RotatedRetention,
    file: File,
    len: u64,
}

impl FileSink {
    /// Opens (creating it and its folder) the file at `path`, rotated once it would pass
    /// `max_bytes`, keeping as many rotated files as `retention` allows.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        retention: RotatedRetention,
    ) -> Result<FileSink, SinkError> {
        let io = |source| SinkError::File {
            path: path.to_owned(),
            source,
        };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(folder).map_err(io)?;
        }
        let file = open_append(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(FileSink {
            path: path.to_owned(),
            max_bytes,
            retention,
            file,
            len,
        })
    }

    /// Appends `jsonl` and fsyncs it, rotating first if it would make the file too big.
    ///
    /// On an error the file is cut back to where it was, so that the batch, retried from the
    /// spool, does not leave half a line behind.
    pub fn write(&mut self, jsonl: &[u8]) -> Result<(), SinkError> {
        if self.len > 0 && self.len + jsonl.len() as u64 > self.max_bytes {
            self.rotate().map_err(|source| self.error(source))?;
        }
        let written = self
            .file
            .write_all(jsonl)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Best effort: if even the cut fails, the next line still starts after a newline
            // once the batch is replayed, and consumers skip a line that does not parse.
            let _ = self.file.set_len(self.len);
            return Err(self.error(source));
        }
        self.len += jsonl.len() as u64;
        Ok(())
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the live file aside and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = self
            .path
            .file_name()
            .map_or_else(|| "events".into(), |n| n.to_string_lossy().into_owned());
        let mut rotated = self.path.with_file_name(format!("{name}.{millis}"));
        let mut n = 1;
        while rotated.exists() {
            rotated = self.path.with_file_name(format!("{name}.{millis}-{n}"));
            n += 1;
        }
        fs::rename(&self.path, &rotated)?;
        self.file = open_append(&self.path)?;
        self.len = 0;
        // Both names must survive a crash, or a rotated file's events could vanish.
        if let Some(folder) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(folder)?.sync_all()?;
        }
        tracing::info!(rotated = %rotated.display(), "events file rotated");
        self.prune();
        Ok(())
    }

    /// Deletes the oldest rotated files past the retention bounds. A file that cannot be
    /// listed or deleted is logged and left: the live file matters more than the bound.
    fn prune(&self) {
        if self.retention == RotatedRetention::default() {
            return;
        }
        let mut rotated = match self.rotated_files() {
            Ok(rotated) => rotated,
            Err(error) => {
                tracing::warn!(%error, "cannot list rotated events files to prune them");
                return;
            }
        };
        // Newest first: what is kept is a prefix.
        rotated.sort_by_key(|file| std::cmp::Reverse(file.age));
        let mut kept_bytes = 0u64;
        for (index, RotatedFile { path, bytes, .. }) in rotated.iter().enumerate() {
            kept_bytes += bytes;
            let over_files = self.retention.files.is_some_and(|most| index >= most);
            let over_bytes = self.retention.bytes.is_some_and(|most| kept_bytes > most);
            if !(over_files || over_bytes) {
                continue;
            }
            match fs::remove_file(path) {
                Ok(()) => tracing::warn!(
                    deleted = %path.display(),
                    bytes,
                    "rotated events file deleted: past file_keep_rotated or file_keep_rotated_bytes"
                ),
                Err(error) => tracing::warn!(
                    file = %path.display(), %error, "cannot delete a rotated events file"
                ),
            }
        }
    }

    /// The rotated files beside the live one.
    fn rotated_files(&self) -> io::Result<Vec<RotatedFile>> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let prefix = format!("{}.", name.unwrap_or_else(|| "events".into()));
        let folder = match self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(folder) => folder,
            None => Path::new("."),
        };
        let mut rotated = Vec::new();
        for entry in fs::read_dir(folder)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(age) = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(rotation_age)
            else {
                continue;
            };
            rotated.push(RotatedFile {
                age,
                path: entry.path(),
                bytes: entry.metadata()?.len(),
            });
        }
        Ok(rotated)
    }

    fn error(&self, source: io::Error) -> SinkError {
        SinkError::File {
            path: self.path.clone(),
            source,
        }
    }
}

/// A rotated events file.
struct RotatedFile {
    /// When it was rotated: milliseconds, then the `-{n}` counter.
    age: (u128, u64),
    path: PathBuf,
    bytes: u64,
}

/// `{millis}` or `{millis}-{n}`, the suffix [`FileSink::rotate`] gives a rotated file.
fn rotation_age(suffix: &str) -> Option<(u128, u64)> {
    let (millis, n) = suffix.split_once('-').unwrap_or((suffix, "0"));
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(millis) || !digits(n) {
        return None;
    }
    Some((millis.parse().ok()?, n.parse().ok()?))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_the_file_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/events.jsonl");
        let mut sink = FileSink::open(&path, 20, RotatedRetention::default()).unwrap();
        sink.write(b"{\"n\":1}\n").unwrap();
        sink.write(b"{\"n\":2}\n").unwrap();
        sink.write(b"{\"n\":3}\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"n\":3}\n");
        let rotated: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("events.jsonl."))
            .collect();
        assert_eq!(rotated.len(), 1, "{rotated:?}");
        let old = fs::read(path.with_file_name(&rotated[0])).unwrap();
        assert_eq!(old, b"{\"n\":1}\n{\"n\":2}\n");

        // Reopening appends after what is there.
        drop(sink);
        let mut sink = FileSink::open(&path, 1 << 20, RotatedRetention::default()).unwrap();
        sink.write(b"{\"n\":4}\n").unwrap();
        assert_eq!(fs::read(sink.path()).unwrap(), b"{\"n\":3}\n{\"n\":4}\n");
    }

    fn rotated(folder: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("events.jsonl."))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn retention_keeps_the_newest_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        // Not ours: kept whatever the bound.
        fs::write(dir.path().join("events.jsonl.bak"), b"x").unwrap();
        let by_count = RotatedRetention {
            files: Some(2),
            bytes: None,
        };
        let mut sink = FileSink::open(&path, 10, by_count).unwrap();
        for n in 0..6 {
            sink.write(format!("{{\"n\":{n}}}\n").as_bytes()).unwrap();
        }
        let kept = rotated(dir.path());
        assert_eq!(
            kept.len(),
            3,
            "two rotated files and the stranger: {kept:?}"
        );
        assert!(kept.contains(&"events.jsonl.bak".to_owned()));
        let contents: Vec<_> = kept
            .iter()
            .filter(|name| *name != "events.jsonl.bak")
            .map(|name| fs::read_to_string(dir.path().join(name)).unwrap())
            .collect();
        assert_eq!(contents.len(), 2);
        assert!(contents.contains(&"{\"n\":3}\n".to_owned()), "{contents:?}");
        assert!(contents.contains(&"{\"n\":4}\n".to_owned()), "{contents:?}");
        assert_eq!(fs::read(&path).unwrap(), b"{\"n\":5}\n");

        // 8 bytes a file: a bound of 20 bytes keeps two.
        let by_bytes = RotatedRetention {
            files: None,
            bytes: Some(20),
        };
        drop(sink);
        let mut sink = FileSink::open(&path, 10, by_bytes).unwrap();
        for n in 6..9 {
            sink.write(format!("{{\"n\":{n}}}\n").as_bytes()).unwrap();
        }
        assert_eq!(rotated(dir.path()).len(), 3, "{:?}", rotated(dir.path()));
    }

    #[test]
    fn rotation_ages_read_only_our_suffixes() {
        assert_eq!(rotation_age("1700000000000"), Some((1_700_000_000_000, 0)));
        assert_eq!(
            rotation_age("1700000000000-2"),
            Some((1_700_000_000_000, 2))
        );
        assert_eq!(rotation_age("bak"), None);
        assert_eq!(rotation_age("17-"), None);
        assert_eq!(rotation_age(""), None);
    }
}
