//! The JSONL events file as one endpoint's log, with that endpoint's checkpoint, retries and
//! dead letters in local files: `mailtrack notify` over the file sink (the embedded default).
//!
//! # One process
//!
//! Only one `notify` may follow the file for a state folder: it takes an exclusive lock on
//! `{state_dir}/lock` ([`StateLock`]) before anything else, and a second process is refused.
//! The lock is the kernel's (`flock` through [`File::try_lock`]): a process killed with
//! `kill -9` holds it no longer.
//!
//! # The state folder
//!
//! `[notify] state_dir`, by default `{events file}.notify/` beside the events file
//! ([`NotifyConfig::state_dir_for`](crate::config::NotifyConfig::state_dir_for)). Each
//! endpoint has a folder of its own, `{state_dir}/{endpoint}.endpoint/`, holding:
//!
//! - `checkpoint.json`: the file and the byte offset before which every event is settled
//!   (delivered, not wanted by the rule, or safely among the retries). The file is named by
//!   its device and inode, and by a hash of its first bytes, since an inode is reused once a
//!   file is deleted. Written atomically (a temporary file, fsync, rename, fsync of the
//!   folder) at most every [`CHECKPOINT_EVERY`] and at shutdown.
//! - `retry.jsonl`: the deliveries waiting for another attempt, append-only: a line
//!   `{"due":ms,"delivery":{…}}` puts a delivery in (or replaces the one with its id), a line
//!   `{"done":"id"}` takes it out. Fsynced before the checkpoint may pass the delivery's
//!   events, and rewritten with only the waiting deliveries at start and when it is mostly
//!   dead lines.
//! - `dead.jsonl`: the dead letters, one line per delivery whose schedule ran out,
//!   `{"at":ms,"answer":"…","delivery":{…}}`, for `notify recover`.
//!
//! # Following
//!
//! Reading starts at the checkpoint, found by its identity among the live file and the
//! rotated ones (`{name}.{unix ms}` and `{name}.{unix ms}-{n}`, see the file sink). Without a
//! checkpoint it starts at the oldest file there is, as a new Redis consumer group starts at
//! the stream's start. When the checkpoint's file is gone (deleted by the sink's retention),
//! the error is logged and reading starts at the oldest file that remains.
//!
//! Only complete lines (ending in `\n`) are read; a partial last line waits for its end. At
//! the end of the open file the follower looks every [`POLL_EVERY`] for more. The open file
//! has been rotated when the live path names another inode: it is then read to its end (the
//! sink writes to a file only before renaming it) and the follower moves to the next file in
//! rotation order, or to the new live file.
//!
//! Entry ids are `{n}:{offset}`: `n` counts the files this process opened, in order, and
//! `offset` is where the line starts, so that ids order as the log does. Deliveries settle
//! out of order; the checkpoint is the start of the lowest unsettled line, or, when every
//! line read is settled, the end of the last one. A `kill -9` therefore delivers again at
//! most the events that were in flight or gathering in a batch; it never skips one.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::redis_log::{now_ms, Delivery, LogEntry, RETRY_LEASE};

/// How often the follower looks for more at the end of the file: 50 ms is far below a
/// batch's linger, and a `stat` and a `read` that often cost nothing.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// The most often the checkpoint is written: a kill -9 then delivers again at most this much
/// of settled events, and the disk sees five small writes a second at most.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Bytes of a file's start that identify it beside its inode: a line of an event is longer,
/// so two files' heads differ whenever their first events do.
pub const HEAD_BYTES: usize = 64;

/// How much is read at a time from the events file.
const READ_CHUNK: usize = 64 * 1024;

/// The fewest lines `retry.jsonl` has before it is rewritten, and the factor by which its
/// lines must outnumber the waiting deliveries: rewriting is then rare and the file stays a
/// few times the size of what it holds.
const COMPACT_MIN_LINES: usize = 1000;
const COMPACT_FACTOR: usize = 4;

/// The most unread bytes scanned to count the lines of the lag; past it the count is
/// extrapolated from the lines in what was scanned.
const LAG_SCAN_BYTES: u64 = 4 * 1024 * 1024;

/// The lock file's name in the state folder.
pub const LOCK_FILE: &str = "lock";

/// The folder of `endpoint`'s checkpoint, retries and dead letters. The suffix keeps a name
/// such as `..` (a valid endpoint name) inside the state folder.
pub fn endpoint_dir(state_dir: &Path, endpoint: &str) -> PathBuf {
    state_dir.join(format!("{endpoint}.endpoint"))
}

/// The exclusive lock on a state folder, held while this value lives.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Why the state folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another mailtrack notify holds {0}; only one may follow the events file per state folder"
    )]
    Held(PathBuf),
    /// The folder or the lock file could not be made or opened.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

impl StateLock {
    /// Creates `state_dir` if needed and locks it, or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(LockError::Held(path)),
            Err(fs::TryLockError::Error(source)) => Err(io(source)),
        }
    }
}

/// A file's identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(metadata: &fs::Metadata) -> FileId {
        FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
}

/// What `checkpoint.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    dev: u64,
    ino: u64,
    offset: u64,
    /// How many of the file's first bytes `head_hash` covers: at most [`HEAD_BYTES`], and
    /// never past `offset` (bytes past it may not have been written yet).
    head_len: u64,
    head_hash: u64,
}

/// FNV-1a, 64 bits: enough to tell two files' first bytes apart, and no crate for it.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The events files in the order they were written: the rotated ones, oldest first, then the
/// live one (when it exists).
pub fn log_files(live: &Path) -> io::Result<Vec<PathBuf>> {
    let name = live
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "events".into());
    let prefix = format!("{name}.");
    let folder = match live.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(folder) => folder,
        None => Path::new("."),
    };
    let mut rotated = Vec::new();
    let listing = match fs::read_dir(folder) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in listing {
        let entry = entry?;
        let file_name = entry.file_name();
        if let Some(age) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(rotation_age)
        {
            rotated.push((age, entry.path()));
        }
    }
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, path)| path).collect();
    if live.exists() {
        files.push(live.to_owned());
    }
    Ok(files)
}

/// `{millis}` or `{millis}-{n}`, the suffix the file sink gives a rotated file.
fn rotation_age(suffix: &str) -> Option<(u128, u64)> {
    let (millis, n) = suffix.split_once('-').unwrap_or((suffix, "0"));
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(millis) || !digits(n) {
        return None;
    }
    Some((millis.parse().ok()?, n.parse().ok()?))
}

/// A file this process opened, by its number in entry ids.
#[derive(Debug, Clone)]
struct Opened {
    id: FileId,
    /// Its first bytes, up to [`HEAD_BYTES`], as far as they were read.
    head: Vec<u8>,
}

/// The file being read, and where.
#[derive(Debug)]
struct Follower {
    live: PathBuf,
    file: File,
    path: PathBuf,
    /// Its number: the n of entry ids.
    seq: u64,
    /// The end of the last complete line taken.
    pos: u64,
    /// Bytes read past `pos` that do not end a line yet.
    pending: Vec<u8>,
    /// Files read to their end by this process, so that none is read twice.
    finished: HashSet<FileId>,
}

impl Follower {
    /// Reads the complete lines after `pos`, at most `count`, as (start offset, line).
    fn read_lines(&mut self, count: usize) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let mut lines = Vec::new();
        loop {
            self.take_lines(count, &mut lines);
            if lines.len() >= count {
                return Ok(lines);
            }
            let mut chunk = vec![0u8; READ_CHUNK];
            let from = self.pos + self.pending.len() as u64;
            let got = self.file.read_at(&mut chunk, from)?;
            if got == 0 {
                return Ok(lines);
            }
            self.pending.extend_from_slice(&chunk[..got]);
        }
    }

    /// Moves complete lines from `pending` into `lines`, up to `count` in all.
    fn take_lines(&mut self, count: usize, lines: &mut Vec<(u64, Vec<u8>)>) {
        let mut used = 0;
        while lines.len() < count {
            let Some(end) = memchr::memchr(b'\n', &self.pending[used..]) else {
                break;
            };
            let line = self.pending[used..used + end].to_vec();
            lines.push((self.pos + used as u64, line));
            used += end + 1;
        }
        self.pending.drain(..used);
        self.pos += used as u64;
    }

    /// Whether the open file is no longer the live one.
    fn rotated(&self) -> io::Result<bool> {
        let ours = FileId::of(&self.file.metadata()?);
        match fs::metadata(&self.live) {
            Ok(live) => Ok(FileId::of(&live) != ours),
            // Between the rename and the new file's creation: not yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The file after the open one: the next in rotation order, or the live file.
    fn next_file(&self) -> io::Result<Option<(PathBuf, File)>> {
        let ours = FileId::of(&self.file.metadata()?);
        let mut candidates = Vec::new();
        for path in log_files(&self.live)? {
            match File::open(&path) {
                Ok(file) => {
                    let id = FileId::of(&file.metadata()?);
                    candidates.push((id, path, file));
                }
                // Deleted by retention meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let after = match candidates.iter().position(|(id, _, _)| *id == ours) {
            Some(index) => index + 1,
            // Ours was deleted after we opened it: every older file was too, so the oldest
            // left not read yet is next.
            None => 0,
        };
        Ok(candidates
            .into_iter()
            .skip(after)
            .find(|(id, _, _)| *id != ours && !self.finished.contains(id))
            .map(|(_, path, file)| (path, file)))
    }
}

/// The deliveries waiting for another attempt, in memory and in `retry.jsonl`.
#[derive(Debug)]
struct Retries {
    path: PathBuf,
    file: File,
    waiting: HashMap<String, Waiting>,
    lines: usize,
}

#[derive(Debug, Clone)]
struct Waiting {
    /// When it is due, in ms; moved [`RETRY_LEASE`] ahead while it is attempted.
    due: u64,
    delivery: Delivery,
}

/// A line of `retry.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum RetryLine {
    Waiting { due: u64, delivery: Delivery },
    Done { done: String },
}

impl Retries {
    fn open(path: PathBuf) -> io::Result<Retries> {
        let mut waiting = HashMap::new();
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    // A torn last line (a kill -9 mid-write) does not parse and is ignored:
                    // its delivery's events were not yet settled, so they are read again.
                    match serde_json::from_slice::<RetryLine>(&line?) {
                        Ok(RetryLine::Waiting { due, delivery }) => {
                            waiting.insert(delivery.id.clone(), Waiting { due, delivery });
                        }
                        Ok(RetryLine::Done { done }) => {
                            waiting.remove(&done);
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = rewrite_jsonl(&path, waiting.values().map(Waiting::line))?;
        Ok(Retries {
            path,
            file,
            lines: waiting.len(),
            waiting,
        })
    }

    fn append(&mut self, line: &RetryLine) -> io::Result<()> {
        append_line(&mut self.file, line)?;
        self.lines += 1;
        Ok(())
    }

    fn put(&mut self, due: u64, delivery: &Delivery) -> io::Result<()> {
        let entry = Waiting {
            due,
            delivery: delivery.clone(),
        };
        self.append(&entry.line())?;
        self.waiting.insert(delivery.id.clone(), entry);
        Ok(())
    }

    fn remove(&mut self, id: &str) -> io::Result<()> {
        if self.waiting.remove(id).is_none() {
            return Ok(());
        }
        self.append(&RetryLine::Done {
            done: id.to_owned(),
        })?;
        if self.lines >= COMPACT_MIN_LINES && self.lines > COMPACT_FACTOR * self.waiting.len() {
            self.file = rewrite_jsonl(&self.path, self.waiting.values().map(Waiting::line))?;
            self.lines = self.waiting.len();
        }
        Ok(())
    }

    fn take_due(&mut self, count: usize) -> Vec<Delivery> {
        let now = now_ms();
        let mut due: Vec<&mut Waiting> =
            self.waiting.values_mut().filter(|w| w.due <= now).collect();
        due.sort_by_key(|w| w.due);
        due.into_iter()
            .take(count)
            .map(|w| {
                // Only in memory: after a restart no attempt is under way.
                w.due = now + RETRY_LEASE.as_millis() as u64;
                w.delivery.clone()
            })
            .collect()
    }
}

impl Waiting {
    fn line(&self) -> RetryLine {
        RetryLine::Waiting {
            due: self.due,
            delivery: self.delivery.clone(),
        }
    }
}

/// A dead letter, as `dead.jsonl` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// When the delivery died, in ms since the epoch.
    pub at: u64,
    /// Its last answer.
    pub answer: String,
    /// The delivery, with its events.
    pub delivery: Delivery,
}

/// Appends `value`'s JSON line to `file` and fsyncs it.
fn append_line(file: &mut File, value: &impl Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)?;
    file.sync_data()
}

/// Replaces `path` with `lines` atomically and returns it open for appending.
fn rewrite_jsonl(path: &Path, lines: impl Iterator<Item = RetryLine>) -> io::Result<File> {
    let mut text = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut text, &line).map_err(io::Error::other)?;
        text.push(b'\n');
    }
    replace_file(path, &text)?;
    OpenOptions::new().append(true).open(path)
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync the folder.
fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Everything of one endpoint's file log, behind one lock.
#[derive(Debug)]
struct Inner {
    endpoint: String,
    follower: Follower,
    /// The files opened, by their number.
    opened: HashMap<u64, Opened>,
    /// Lines read and not settled: (file number, start offset).
    unsettled: BTreeSet<(u64, u64)>,
    checkpoint_path: PathBuf,
    written: Option<Checkpoint>,
    written_at: Option<Instant>,
    retries: Retries,
    dead_path: PathBuf,
    dead: File,
}

/// One endpoint's view of the JSONL events file, and its local retries and dead letters.
/// Clones share it.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Mutex<Inner>>,
}

impl FileStore {
    /// Opens `endpoint`'s state in `state_dir` (creating it) and finds where to read the
    /// events file `live` (the live path; its rotated files lie beside it) from. The caller
    /// holds the [`StateLock`] of `state_dir`.
    pub fn open(live: &Path, state_dir: &Path, endpoint: &str) -> io::Result<FileStore> {
        let dir = endpoint_dir(state_dir, endpoint);
        fs::create_dir_all(&dir).map_err(|e| named(e, &dir))?;
        let checkpoint_path = dir.join("checkpoint.json");
        let checkpoint = read_checkpoint(&checkpoint_path)?;
        let (path, file, pos) = start_at(live, checkpoint.as_ref(), endpoint)?;
        let id = FileId::of(&file.metadata()?);
        let mut head = vec![0u8; HEAD_BYTES.min(pos as usize)];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| named(e, &path))?;
        let retries_path = dir.join("retry.jsonl");
        let retries = Retries::open(retries_path.clone()).map_err(|e| named(e, &retries_path))?;
        let dead_path = dir.join("dead.jsonl");
        let dead = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dead_path)
            .map_err(|e| named(e, &dead_path))?;
        tracing::info!(endpoint, file = %path.display(), offset = pos, retries = retries.waiting.len(), "following the events file");
        let follower = Follower {
            live: live.to_owned(),
            file,
            path,
            seq: 0,
            pos,
            pending: Vec::new(),
            finished: HashSet::new(),
        };
        let mut opened = HashMap::new();
        opened.insert(0, Opened { id, head });
        Ok(FileStore {
            inner: Arc::new(Mutex::new(Inner {
                endpoint: endpoint.to_owned(),
                follower,
                opened,
                unsettled: BTreeSet::new(),
                checkpoint_path,
                written: checkpoint,
                written_at: None,
                retries,
                dead_path,
                dead,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves state that is still consistent enough to
        // checkpoint: every change is one step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads up to `count` complete lines never read before, waiting up to `block` for one.
    pub async fn read_new(&self, count: usize, block: Duration) -> io::Result<Vec<LogEntry>> {
        let started = Instant::now();
        loop {
            let entries = {
                let mut inner = self.lock();
                let entries = inner.read(count)?;
                inner.maybe_checkpoint()?;
                entries
            };
            let waited = started.elapsed();
            if !entries.is_empty() || waited >= block {
                return Ok(entries);
            }
            tokio::time::sleep(POLL_EVERY.min(block - waited)).await;
        }
    }

    /// Settles entries: delivered, or not wanted.
    pub fn acknowledge(&self, ids: &[String]) -> io::Result<()> {
        let mut inner = self.lock();
        inner.settle(ids);
        inner.maybe_checkpoint()
    }

    /// Puts a delivery of entries `ids` among the retries (fsynced), then settles them.
    pub fn schedule_first_retry(
        &self,
        delivery: &Delivery,
        due_ms: u64,
        ids: &[String],
    ) -> io::Result<()> {
        let mut inner = self.lock();
        inner.retries.put(due_ms, delivery)?;
        inner.settle(ids);
        inner.maybe_checkpoint()
    }

    /// Takes up to `count` retries due now, under a lease.
    pub fn take_due(&self, count: usize) -> io::Result<Vec<Delivery>> {
        Ok(self.lock().retries.take_due(count))
    }

    /// A retry was delivered.
    pub fn retry_done(&self, delivery: &Delivery) -> io::Result<()> {
        self.lock().retries.remove(&delivery.id)
    }

    /// A retry failed again: `after` is due at `due_ms`.
    pub fn retry_again(&self, before: &Delivery, after: &Delivery, due_ms: u64) -> io::Result<()> {
        let mut inner = self.lock();
        if before.id != after.id {
            inner.retries.remove(&before.id)?;
        }
        inner.retries.put(due_ms, after)
    }

    /// A delivery whose schedule ran out: appended to `dead.jsonl` (fsynced), then out of the
    /// retries and its entries settled.
    pub fn dead_letter(
        &self,
        delivery: &Delivery,
        from_retries: bool,
        ids: &[String],
        last_answer: &str,
    ) -> io::Result<()> {
        let mut inner = self.lock();
        let letter = DeadLetter {
            at: now_ms(),
            answer: last_answer.to_owned(),
            delivery: delivery.clone(),
        };
        let dead_path = inner.dead_path.clone();
        append_line(&mut inner.dead, &letter).map_err(|e| named(e, &dead_path))?;
        if from_retries {
            inner.retries.remove(&delivery.id)?;
        }
        inner.settle(ids);
        inner.maybe_checkpoint()
    }

    /// How far the endpoint is behind the live file's end: the lines not yet read (counted
    /// in the first [`LAG_SCAN_BYTES`], extrapolated past them), and the age of the first of
    /// them by its event's timestamp.
    pub fn lag(&self) -> io::Result<(u64, Duration)> {
        let inner = self.lock();
        let follower = &inner.follower;
        let from = follower.pos;
        let mut behind = follower.file.metadata()?.len().saturating_sub(from);
        let ours = FileId::of(&follower.file.metadata()?);
        let mut later = false;
        let mut later_files = Vec::new();
        for path in log_files(&follower.live)? {
            let Ok(metadata) = fs::metadata(&path) else {
                continue;
            };
            if later {
                behind += metadata.len();
                later_files.push(path);
            } else if FileId::of(&metadata) == ours {
                later = true;
            }
        }
        if behind == 0 {
            return Ok((0, Duration::ZERO));
        }
        let scan = behind.min(LAG_SCAN_BYTES) as usize;
        let mut bytes = vec![0u8; scan];
        let got = follower.file.read_at(&mut bytes, from)?;
        bytes.truncate(got);
        let first_line_end = memchr::memchr(b'\n', &bytes);
        let age = first_line_end
            .and_then(|end| std::str::from_utf8(&bytes[..end]).ok())
            .and_then(event_time)
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .unwrap_or_default();
        let counted = memchr::memchr_iter(b'\n', &bytes).count() as u64;
        let lines = if bytes.is_empty() {
            // All in later files: estimate at one line a kilobyte, an event's usual size.
            behind / 1024
        } else {
            counted * behind / bytes.len() as u64
        };
        Ok((lines.max(u64::from(counted > 0)), age))
    }

    /// Writes the checkpoint now, if it moved.
    pub fn checkpoint_now(&self) -> io::Result<()> {
        self.lock().write_checkpoint()
    }
}

impl Inner {
    /// Reads up to `count` lines, following the file through rotation.
    fn read(&mut self, count: usize) -> io::Result<Vec<LogEntry>> {
        let mut entries = Vec::new();
        loop {
            // Fewer lines than asked for means the end of the open file.
            self.read_into(count, &mut entries)?;
            if entries.len() >= count || !self.follower.rotated()? {
                return Ok(entries);
            }
            // Rotated: what the sink wrote before the rename may have come after the read.
            self.read_into(count, &mut entries)?;
            if entries.len() >= count {
                return Ok(entries);
            }
            let path = self.follower.path.clone();
            if !self.follower.pending.is_empty() {
                tracing::warn!(endpoint = %self.endpoint, file = %path.display(), bytes = self.follower.pending.len(), "a rotated events file ends in a partial line; it is skipped");
            }
            let Some((next_path, next)) = self.follower.next_file()? else {
                return Ok(entries);
            };
            let ours = FileId::of(&self.follower.file.metadata()?);
            self.follower.finished.insert(ours);
            let next_seq = self.follower.seq + 1;
            let id = FileId::of(&next.metadata()?);
            self.opened.insert(
                next_seq,
                Opened {
                    id,
                    head: Vec::new(),
                },
            );
            tracing::debug!(endpoint = %self.endpoint, file = %next_path.display(), "following the next events file");
            self.follower.file = next;
            self.follower.path = next_path;
            self.follower.seq = next_seq;
            self.follower.pos = 0;
            self.follower.pending.clear();
            self.forget_old_files();
        }
    }

    /// Reads lines of the open file into `entries`, until it holds `count`.
    fn read_into(&mut self, count: usize, entries: &mut Vec<LogEntry>) -> io::Result<()> {
        let path = self.follower.path.clone();
        let lines = self
            .follower
            .read_lines(count.saturating_sub(entries.len()))
            .map_err(|e| named(e, &path))?;
        self.note_head();
        let seq = self.follower.seq;
        for (start, line) in lines {
            self.unsettled.insert((seq, start));
            entries.push(LogEntry {
                id: format!("{seq}:{start}"),
                // Not text, or blank: not an event of ours, and settled as unwanted.
                event: String::from_utf8(line)
                    .ok()
                    .filter(|line| !line.trim().is_empty()),
                event_type: None,
            });
        }
        Ok(())
    }

    /// Keeps the open file's first bytes, as far as they are read, for its identity.
    fn note_head(&mut self) {
        let seq = self.follower.seq;
        let pos = self.follower.pos;
        if let Some(opened) = self.opened.get_mut(&seq) {
            let have = opened.head.len() as u64;
            if have < HEAD_BYTES as u64 && pos > have {
                let want = (HEAD_BYTES as u64).min(pos) as usize;
                let mut head = vec![0u8; want];
                if self.follower.file.read_exact_at(&mut head, 0).is_ok() {
                    opened.head = head;
                }
            }
        }
    }

    /// Drops the files no unsettled line and no checkpoint needs.
    fn forget_old_files(&mut self) {
        let oldest = self
            .unsettled
            .first()
            .map_or(self.follower.seq, |(seq, _)| *seq);
        self.opened.retain(|seq, _| *seq >= oldest);
    }

    fn settle(&mut self, ids: &[String]) {
        for id in ids {
            let parsed = id
                .split_once(':')
                .and_then(|(seq, start)| Some((seq.parse().ok()?, start.parse().ok()?)));
            match parsed {
                Some(key) => {
                    self.unsettled.remove(&key);
                }
                None => {
                    tracing::warn!(endpoint = %self.endpoint, id, "not an entry id of the events file")
                }
            }
        }
    }

    /// Where every line before is settled.
    fn checkpoint(&self) -> Option<Checkpoint> {
        let (seq, offset) = self
            .unsettled
            .first()
            .copied()
            .unwrap_or((self.follower.seq, self.follower.pos));
        let opened = self.opened.get(&seq)?;
        let head_len = opened.head.len().min(offset as usize);
        Some(Checkpoint {
            dev: opened.id.dev,
            ino: opened.id.ino,
            offset,
            head_len: head_len as u64,
            head_hash: fnv1a(&opened.head[..head_len]),
        })
    }

    fn maybe_checkpoint(&mut self) -> io::Result<()> {
        if self
            .written_at
            .is_some_and(|at| at.elapsed() < CHECKPOINT_EVERY)
        {
            return Ok(());
        }
        self.write_checkpoint()
    }

    fn write_checkpoint(&mut self) -> io::Result<()> {
        let Some(checkpoint) = self.checkpoint() else {
            return Ok(());
        };
        if self.written.as_ref() == Some(&checkpoint) {
            return Ok(());
        }
        let text = serde_json::to_vec(&checkpoint).map_err(io::Error::other)?;
        replace_file(&self.checkpoint_path, &text).map_err(|e| named(e, &self.checkpoint_path))?;
        self.written = Some(checkpoint);
        self.written_at = Some(Instant::now());
        Ok(())
    }
}

fn read_checkpoint(path: &Path) -> io::Result<Option<Checkpoint>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a checkpoint: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(named(e, path)),
    }
}

/// The file and offset to start reading at: the checkpoint's, when its file is still there;
/// else the oldest file's start. Creates the live file (and its folder) when there is none
/// yet, as the sink would: it is where the first events will be.
fn start_at(
    live: &Path,
    checkpoint: Option<&Checkpoint>,
    endpoint: &str,
) -> io::Result<(PathBuf, File, u64)> {
    let mut files = log_files(live).map_err(|e| named(e, live))?;
    if files.is_empty() {
        if let Some(folder) = live.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(folder).map_err(|e| named(e, folder))?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(live)
            .map_err(|e| named(e, live))?;
        files.push(live.to_owned());
    }
    let mut opened = Vec::new();
    for path in files {
        match File::open(&path) {
            Ok(file) => opened.push((path, file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(named(e, &path)),
        }
    }
    if let Some(checkpoint) = checkpoint {
        for (path, file) in &opened {
            let metadata = file.metadata()?;
            let same = FileId::of(&metadata)
                == FileId {
                    dev: checkpoint.dev,
                    ino: checkpoint.ino,
                }
                && metadata.len() >= checkpoint.offset
                && head_hash(file, checkpoint.head_len)? == Some(checkpoint.head_hash);
            if same {
                let file = file.try_clone()?;
                return Ok((path.clone(), file, checkpoint.offset));
            }
        }
        let oldest = opened.first().map_or_else(
            || live.display().to_string(),
            |(p, _)| p.display().to_string(),
        );
        tracing::error!(
            endpoint,
            offset = checkpoint.offset,
            oldest = %oldest,
            "the checkpoint's events file is gone (deleted by file_keep_rotated or file_keep_rotated_bytes?): the rest of that file past the offset, and any rotated files deleted after it, are skipped; starting at the oldest file left"
        );
    }
    let (path, file) = opened
        .into_iter()
        .next()
        .ok_or_else(|| named(io::ErrorKind::NotFound.into(), live))?;
    Ok((path, file, 0))
}

/// The hash of `file`'s first `len` bytes, or `None` when it is shorter.
fn head_hash(file: &File, len: u64) -> io::Result<Option<u64>> {
    let mut head = vec![0u8; len.min(HEAD_BYTES as u64) as usize];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => Ok(Some(fnv1a(&head))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// `error`, with the path it concerns.
fn named(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// The time of an event line: its `open.timestamp`, `click.timestamp` or
/// `subscription.timestamp`.
pub fn event_time(line: &str) -> Option<SystemTime> {
    #[derive(Deserialize)]
    struct Stamped {
        timestamp: String,
    }
    #[derive(Deserialize)]
    struct Event {
        open: Option<Stamped>,
        click: Option<Stamped>,
        subscription: Option<Stamped>,
    }
    let event: Event = serde_json::from_str(line).ok()?;
    let stamp = event.open.or(event.click).or(event.subscription)?;
    humantime::parse_rfc3339(&stamp.timestamp).ok()
}

/// For `notify recover`: calls `each` with every event line of the live file `live` and its
/// rotated files whose timestamp is in `since..=until` (open-ended when `None`), oldest file
/// first. Lines without a timestamp, and a partial last line, are passed over.
pub fn events_between(
    live: &Path,
    since: SystemTime,
    until: Option<SystemTime>,
    mut each: impl FnMut(String),
) -> io::Result<()> {
    for path in log_files(live)? {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(named(e, &path)),
        };
        for line in BufReader::new(file).split(b'\n') {
            let Ok(line) = String::from_utf8(line.map_err(|e| named(e, &path))?) else {
                continue;
            };
            let Some(at) = event_time(&line) else {
                continue;
            };
            if at >= since && until.is_none_or(|until| at <= until) {
                each(line);
            }
        }
    }
    Ok(())
}

/// For `notify recover`: the dead letters of `endpoint` in `state_dir`, oldest first, each
/// with its line number in `dead.jsonl` (from 0), which [`remove_dead_letters`] takes. A torn
/// last line is passed over.
pub fn dead_letters(state_dir: &Path, endpoint: &str) -> io::Result<Vec<(usize, DeadLetter)>> {
    let path = endpoint_dir(state_dir, endpoint).join("dead.jsonl");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(named(e, &path)),
    };
    let mut letters = Vec::new();
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        if let Ok(letter) = serde_json::from_slice(&line.map_err(|e| named(e, &path))?) {
            letters.push((n, letter));
        }
    }
    Ok(letters)
}

/// For `notify recover`: rewrites `endpoint`'s `dead.jsonl` (atomically) without the lines
/// numbered in `lines`. The caller holds the state folder's [`StateLock`], so that no
/// `notify` appends meanwhile.
pub fn remove_dead_letters(
    state_dir: &Path,
    endpoint: &str,
    lines: &BTreeSet<usize>,
) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let path = endpoint_dir(state_dir, endpoint).join("dead.jsonl");
    let text = fs::read(&path).map_err(|e| named(e, &path))?;
    let mut kept = Vec::with_capacity(text.len());
    for (n, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        if !lines.contains(&n) {
            kept.extend_from_slice(line);
        }
    }
    replace_file(&path, &kept).map_err(|e| named(e, &path))
}

/// Milliseconds since the epoch of `at`.
pub fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(path: &Path, text: &str) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    async fn read_all(store: &FileStore) -> Vec<LogEntry> {
        store.read_new(100, Duration::ZERO).await.unwrap()
    }

    fn texts(entries: &[LogEntry]) -> Vec<&str> {
        entries
            .iter()
            .map(|e| e.event.as_deref().unwrap_or("-"))
            .collect()
    }

    fn ids(entries: &[LogEntry]) -> Vec<String> {
        entries.iter().map(|e| e.id.clone()).collect()
    }

    #[tokio::test]
    async fn lines_are_followed_through_rotation_and_resumed_from_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("events.jsonl");
        let state = dir.path().join("state");
        append(&live, "a\nb\npart");
        let store = FileStore::open(&live, &state, "hook").unwrap();
        let first = read_all(&store).await;
        assert_eq!(texts(&first), ["a", "b"], "a partial line waits");
        append(&live, "ial\n");
        let second = read_all(&store).await;
        assert_eq!(texts(&second), ["partial"]);
        // Rotated: renamed aside with one more line, and a new live file.
        append(&live, "last\n");
        fs::rename(&live, dir.path().join("events.jsonl.1700000000000")).unwrap();
        append(&live, "c\n");
        let third = read_all(&store).await;
        assert_eq!(texts(&third), ["last", "c"]);
        for entries in [&first, &second, &third] {
            store.acknowledge(&ids(entries)).unwrap();
        }
        store.checkpoint_now().unwrap();
        drop(store);

        append(&live, "d\n");
        let store = FileStore::open(&live, &state, "hook").unwrap();
        assert_eq!(texts(&read_all(&store).await), ["d"]);
    }

    #[tokio::test]
    async fn the_checkpoint_stays_at_the_lowest_unsettled_line() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("events.jsonl");
        let state = dir.path().join("state");
        append(&live, "a\nb\nc\n");
        let store = FileStore::open(&live, &state, "hook").unwrap();
        let entries = read_all(&store).await;
        // Settled out of order: b and c, not a.
        store.acknowledge(&ids(&entries)[1..]).unwrap();
        store.checkpoint_now().unwrap();
        drop(store);
        let store = FileStore::open(&live, &state, "hook").unwrap();
        assert_eq!(texts(&read_all(&store).await), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_checkpoint_whose_file_is_gone_starts_at_the_oldest_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("events.jsonl");
        let state = dir.path().join("state");
        let old = dir.path().join("events.jsonl.1700000000000");
        append(&old, "old1\nold2\n");
        let store = FileStore::open(&live, &state, "hook").unwrap();
        let entries = store.read_new(1, Duration::ZERO).await.unwrap();
        assert_eq!(texts(&entries), ["old1"]);
        store.acknowledge(&ids(&entries)).unwrap();
        store.checkpoint_now().unwrap();
        drop(store);
        // Retention deletes the checkpoint's file; a newer rotated one and the live one stay.
        fs::remove_file(&old).unwrap();
        append(&dir.path().join("events.jsonl.1700000000001"), "newer\n");
        append(&live, "live\n");
        let store = FileStore::open(&live, &state, "hook").unwrap();
        assert_eq!(texts(&read_all(&store).await), ["newer", "live"]);
    }

    #[test]
    fn retries_and_dead_letters_outlive_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("events.jsonl");
        let state = dir.path().join("state");
        let delivery = |id: &str, attempts| Delivery {
            id: id.into(),
            attempts,
            events: vec![r#"{"a":1}"#.into()],
            logged_ms: Vec::new(),
        };
        let store = FileStore::open(&live, &state, "hook").unwrap();
        store
            .schedule_first_retry(&delivery("one", 1), 0, &[])
            .unwrap();
        store
            .schedule_first_retry(&delivery("two", 1), u64::MAX, &[])
            .unwrap();
        drop(store);
        let store = FileStore::open(&live, &state, "hook").unwrap();
        assert_eq!(store.take_due(10).unwrap(), [delivery("one", 1)]);
        assert!(store.take_due(10).unwrap().is_empty(), "leased");
        store
            .dead_letter(&delivery("one", 1), true, &[], "400 no")
            .unwrap();
        drop(store);
        let store = FileStore::open(&live, &state, "hook").unwrap();
        assert!(store.take_due(10).unwrap().is_empty());
        let letters = dead_letters(&state, "hook").unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].0, 0);
        assert_eq!(letters[0].1.delivery, delivery("one", 1));
        assert_eq!(letters[0].1.answer, "400 no");
        remove_dead_letters(&state, "hook", &BTreeSet::from([0])).unwrap();
        assert!(dead_letters(&state, "hook").unwrap().is_empty());
        // A torn last line (a kill -9 mid-append) is passed over.
        append(
            &endpoint_dir(&state, "hook").join("retry.jsonl"),
            "{\"due\":1,\"deli",
        );
        drop(store);
        let store = FileStore::open(&live, &state, "hook").unwrap();
        store.retry_done(&delivery("two", 1)).unwrap();
        drop(store);
        let store = FileStore::open(&live, &state, "hook").unwrap();
        assert!(store.lock().retries.waiting.is_empty());
    }

    #[test]
    fn one_process_holds_a_state_folder() {
        let dir = tempfile::tempdir().unwrap();
        let held = StateLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            StateLock::acquire(dir.path()),
            Err(LockError::Held(_))
        ));
        drop(held);
        StateLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn recovery_reads_the_events_of_a_window_from_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("events.jsonl");
        let at = |stamp: &str| {
            format!(r#"{{"eventType":"Open","open":{{"timestamp":"{stamp}"}}}}"#) + "\n"
        };
        append(
            &dir.path().join("events.jsonl.1700000000000"),
            &(at("2026-12-01T23:59:59.999Z") + &at("2026-12-02T00:00:00.000Z")),
        );
        append(&live, &(at("2026-12-02T01:00:00.000Z") + "not json\n"));
        let since = humantime::parse_rfc3339("2026-12-02T00:00:00Z").unwrap();
        let until = humantime::parse_rfc3339("2026-12-02T00:59:59Z").unwrap();
        let mut got = Vec::new();
        events_between(&live, since, Some(until), |line| got.push(line)).unwrap();
        assert_eq!(got, [at("2026-12-02T00:00:00.000Z").trim_end()]);
        got.clear();
        events_between(&live, since, None, |line| got.push(line)).unwrap();
        assert_eq!(got.len(), 2);
    }
}
