//! `sink = "file"`, the default: JSON lines appended to a local file, fsynced per batch, and
//! rotated by size.
//!
//! A rotated file is renamed `{name}.{unix milliseconds}` (with `-{n}` added in the unlikely
//! case that name is taken), so rotated files sort by age and a log shipper can pick them up
//! by pattern. The live file always has the configured name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::SinkError;

/// The events file, open for appending.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    file: File,
    len: u64,
}

impl FileSink {
    /// Opens (creating it and its folder) the file at `path`, rotated once it would pass
    /// `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> Result<FileSink, SinkError> {
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
        Ok(())
    }

    fn error(&self, source: io::Error) -> SinkError {
        SinkError::File {
            path: self.path.clone(),
            source,
        }
    }
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
        let mut sink = FileSink::open(&path, 20).unwrap();
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
        let mut sink = FileSink::open(&path, 1 << 20).unwrap();
        sink.write(b"{\"n\":4}\n").unwrap();
        assert_eq!(fs::read(sink.path()).unwrap(), b"{\"n\":3}\n{\"n\":4}\n");
    }
}
