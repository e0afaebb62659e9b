//! The disk spool: where batches wait while the sink is down, slow or behind, in order, for
//! as long as it takes, within a size limit.
//!
//! The spool is a folder of segment files, `{sequence}.spool`, each a run of checksummed
//! frames (see `frame.rs`), one frame per batch. Appends go to the newest segment and are
//! fsynced before they count: a batch in the spool survives `kill -9` and power loss. Replay
//! reads the oldest segment frame by frame; a segment is deleted once all of it reached the
//! sink. At start-up every segment found is sealed for replay and appends start a new one, so
//! a tail torn by a crash is never appended after.
//!
//! **When full**, a new batch is refused whole (drop newest): what is already spooled is
//! older and keeps its order, and the caller counts and logs every dropped event.
//!
//! A crash during replay sends the current segment's replayed frames again at the next
//! start: delivery is at-least-once and consumers dedupe on `eventId`.
//!
//! One process at a time: the spool holds an exclusive lock on `{dir}/.lock` while it is
//! open, so a second `serve` (or `events replay` beside a running `serve`) given the same
//! folder stops at start-up rather than interleave its segments with the first one's. The
//! OS drops the lock with the process, however it ends.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) mod frame;

/// The size at which a segment is sealed and a new one started: 4 MiB is a few thousand
/// events, so a replayed segment is read into memory cheaply, is deleted soon after it is
/// replayed (freeing its room), and bounds the duplicates a crash during replay can cause.
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// The file in the spool folder that the open spool holds locked.
const LOCK_FILE: &str = ".lock";

/// The file name extension of a segment.
const SEGMENT_EXTENSION: &str = "spool";

/// Why the spool did not take a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The spool holds `events.spool_max_bytes` already: the batch was dropped. Bring the
    /// sink back (the spool then drains) or raise the limit.
    #[error("the spool is full ({held} of {max} bytes held; the batch needs {needed})")]
    Full {
        /// Bytes held.
        held: u64,
        /// The limit.
        max: u64,
        /// The frame's size.
        needed: u64,
    },
    /// Another process has this spool folder open. Give each process its own
    /// `events.spool_dir`.
    #[error(
        "spool {}: another process is using this folder; each mailtrack process needs its own \
         events.spool_dir",
        path.display()
    )]
    Locked {
        /// The folder.
        path: PathBuf,
    },
    /// The disk refused a read or write.
    #[error("spool {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// The spool folder, open for appending and replay.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    /// Held locked for as long as the spool is open.
    _lock: File,
    max_bytes: u64,
    segment_bytes: u64,
    /// Segments waiting for replay, oldest first, not counting the one being read.
    sealed: VecDeque<Segment>,
    /// The segment appends go to.
    active: Option<(Segment, File)>,
    /// The oldest segment, read into memory, with the frames not yet replayed.
    reading: Option<Reading>,
    next_sequence: u64,
    /// Bytes on disk in every segment: what the limit applies to.
    held_bytes: u64,
    /// Bytes not yet replayed: what the stats show.
    pending_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    len: u64,
}

#[derive(Debug)]
struct Reading {
    segment: Segment,
    bytes: Vec<u8>,
    frames: VecDeque<std::ops::Range<usize>>,
}

/// A frame read for replay: its payload and what replaying it frees.
#[derive(Debug)]
pub struct SpooledFrame {
    /// The batch's JSON lines.
    pub payload: Vec<u8>,
    /// Bytes skipped as corrupt while reaching it (a torn tail of an older segment).
    pub corrupt_bytes: u64,
}

impl Spool {
    /// Opens (creating) the folder `dir`; every segment already there is kept for replay.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<Spool, SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let lock = lock(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let sequence = path
                .extension()
                .filter(|e| *e == SEGMENT_EXTENSION)
                .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
            if let Some(sequence) = sequence {
                let len = fs::metadata(&path).map_err(io)?.len();
                found.push((sequence, Segment { path, len }));
            }
        }
        found.sort_by_key(|(sequence, _)| *sequence);
        let next_sequence = found.last().map_or(0, |(sequence, _)| sequence + 1);
        let held_bytes = found.iter().map(|(_, s)| s.len).sum();
        Ok(Spool {
            dir: dir.to_owned(),
            _lock: lock,
            max_bytes,
            segment_bytes,
            sealed: found.into_iter().map(|(_, segment)| segment).collect(),
            active: None,
            reading: None,
            next_sequence,
            held_bytes,
            pending_bytes: held_bytes,
        })
    }

    /// Appends a batch's JSON lines as one frame and fsyncs it.
    pub fn append(&mut self, jsonl: &[u8]) -> Result<(), SpoolError> {
        let frame = frame::encode(jsonl);
        let needed = frame.len() as u64;
        if self.held_bytes + needed > self.max_bytes {
            return Err(SpoolError::Full {
                held: self.held_bytes,
                max: self.max_bytes,
                needed,
            });
        }
        if self.active.is_none() {
            self.active = Some(self.create_segment()?);
        }
        // Made just above when there was none.
        let (segment, file) = self.active.as_mut().expect("an active segment");
        let io = |source| SpoolError::Io {
            path: segment.path.clone(),
            source,
        };
        file.write_all(&frame).map_err(io)?;
        file.sync_data().map_err(io)?;
        segment.len += needed;
        self.held_bytes += needed;
        self.pending_bytes += needed;
        if segment.len >= self.segment_bytes {
            self.seal_active();
        }
        Ok(())
    }

    /// The oldest frame not yet replayed, without consuming it: call [`Spool::advance`] once
    /// the sink has it.
    pub fn peek(&mut self) -> Result<Option<SpooledFrame>, SpoolError> {
        let mut corrupt_bytes = 0;
        loop {
            if let Some(reading) = &self.reading {
                if let Some(range) = reading.frames.front() {
                    let payload = reading.bytes[range.clone()].to_vec();
                    return Ok(Some(SpooledFrame {
                        payload,
                        corrupt_bytes,
                    }));
                }
                self.finish_reading()?;
            }
            if self.sealed.is_empty() {
                self.seal_active();
            }
            let Some(segment) = self.sealed.pop_front() else {
                return Ok(None);
            };
            corrupt_bytes += self.start_reading(segment)?;
        }
    }

    /// Marks the frame [`Spool::peek`] returned as replayed.
    pub fn advance(&mut self) {
        if let Some(reading) = &mut self.reading {
            if let Some(range) = reading.frames.pop_front() {
                let freed = (range.len() + frame::HEADER_LEN) as u64;
                self.pending_bytes = self.pending_bytes.saturating_sub(freed);
            }
        }
    }

    /// Whether nothing waits for replay.
    pub fn is_empty(&self) -> bool {
        self.pending_bytes == 0
    }

    /// Bytes waiting for replay.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Whether a batch of `bytes` JSON lines would be refused now.
    pub fn is_full_for(&self, bytes: usize) -> bool {
        self.held_bytes + (bytes + frame::HEADER_LEN) as u64 > self.max_bytes
    }

    fn create_segment(&mut self) -> Result<(Segment, File), SpoolError> {
        let name = format!("{:016}.{SEGMENT_EXTENSION}", self.next_sequence);
        let path = self.dir.join(name);
        self.next_sequence += 1;
        let opened = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            // The new name must survive a crash too, or its fsynced frames are lost with it.
            .and_then(|file| File::open(&self.dir)?.sync_all().map(|()| file));
        match opened {
            Ok(file) => Ok((Segment { path, len: 0 }, file)),
            Err(source) => Err(SpoolError::Io { path, source }),
        }
    }

    /// Closes the active segment and queues it for replay, if it holds anything.
    fn seal_active(&mut self) {
        if self
            .active
            .as_ref()
            .is_some_and(|(segment, _)| segment.len > 0)
        {
            // Checked just above: there is an active segment. Dropping its file closes it.
            let (segment, _file) = self.active.take().expect("an active segment");
            self.sealed.push_back(segment);
        }
    }

    /// Reads `segment` for replay; returns the corrupt bytes skipped at its end.
    fn start_reading(&mut self, segment: Segment) -> Result<u64, SpoolError> {
        let bytes = fs::read(&segment.path).map_err(|source| SpoolError::Io {
            path: segment.path.clone(),
            source,
        })?;
        let frames = frame::decode(&bytes);
        if frames.corrupt_bytes > 0 {
            tracing::warn!(
                segment = %segment.path.display(),
                skipped_bytes = frames.corrupt_bytes,
                "a spool segment ends in a torn or corrupt frame (a crash while writing?); skipped"
            );
        }
        self.pending_bytes = self.pending_bytes.saturating_sub(frames.corrupt_bytes);
        self.reading = Some(Reading {
            segment,
            bytes,
            frames: frames.payloads.into(),
        });
        Ok(frames.corrupt_bytes)
    }

    /// Deletes the segment that was read to its end.
    fn finish_reading(&mut self) -> Result<(), SpoolError> {
        if let Some(reading) = self.reading.take() {
            let segment = reading.segment;
            fs::remove_file(&segment.path).map_err(|source| SpoolError::Io {
                path: segment.path.clone(),
                source,
            })?;
            self.held_bytes = self.held_bytes.saturating_sub(segment.len);
        }
        Ok(())
    }
}

/// Opens `{dir}/.lock` and takes its exclusive lock, without waiting.
fn lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| SpoolError::Io {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::Locked {
            path: dir.to_owned(),
        }),
        Err(fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

#[cfg(test)]
mod tests;
