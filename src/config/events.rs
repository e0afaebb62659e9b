//! `[events]`: where opens and clicks are delivered, how they are batched, and how much disk
//! the spool may take while the sink is away.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::server::Refusal;

/// The sink when none is configured: a local JSONL file. It needs nothing running beside
/// mailtrack, so the embedded default works on a laptop, and nothing is lost.
pub const DEFAULT_SINK: SinkKind = SinkKind::File;

/// The JSONL file, relative to the config folder: beside the config in a checkout, and a
/// path an operator changes to their data volume.
pub const DEFAULT_EVENTS_FILE: &str = "data/events.jsonl";

/// The size at which the JSONL file is rotated: 256 MiB is a few hundred thousand events,
/// small enough to ship or grep, large enough that rotation is rare.
pub const DEFAULT_FILE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The Redis stream: namespaced so it sits beside the sender's own keys without clashing.
pub const DEFAULT_STREAM: &str = "mailtrack:events";

/// `MAXLEN ~` for the stream: ten million entries (a few GiB in Redis) keeps days of a large
/// sender's events for consumers that fall behind, and bounds memory if none ever reads.
pub const DEFAULT_STREAM_MAXLEN: u64 = 10_000_000;

/// The events at which a batch closes: one pipelined `XADD` round trip or one `fsync` carries
/// 512 events, past which a larger batch gains little and delays the first event's commit.
/// When more are already waiting, a batch takes up to eight times as many
/// ([`BACKLOG_BATCH_FACTOR`](crate::events::batcher::BACKLOG_BATCH_FACTOR)).
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 512;

/// How long the writer waits for a batch to fill: 5 ms is unnoticeable next to a redirect's
/// round trip (it is what a `sync` response waits at most for its group commit), and at any
/// real rate a batch fills well before.
pub const DEFAULT_BATCH_LINGER: Duration = Duration::from_millis(5);

/// Where the spool lives, relative to the config folder: next to the events file.
pub const DEFAULT_SPOOL_DIR: &str = "data/spool";

/// The most disk the spool may take: 1 GiB holds about a million events, hours of a sink
/// outage at a large sender's rate, and fits any volume mailtrack is given.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// How many events the in-memory queue holds before new ones are dropped. At 1 KiB an event
/// this is 64 MiB at most, and tens of seconds of a large blast's peak: room for the writer
/// to ride out a slow sink until the spool takes over.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

/// The queue depth past which batches go to the spool rather than wait for a slow sink,
/// as a fraction of the capacity: half, so the queue never fills while the disk keeps up.
pub const DEFAULT_SPOOL_WATERMARK_DIVISOR: usize = 2;

/// How long one sink write may take before it counts as failed: 2 s is far past a healthy
/// Redis round trip, and short enough that the queue (65,536 events) does not fill meanwhile.
pub const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(2);

/// The durability when none is configured: `batch`. The response never waits, and an event
/// is on disk or in the sink within one batch linger of its request.
pub const DEFAULT_DURABILITY: Durability = Durability::Batch;

/// Events recorded a minute for one (message id, client address) pair, when not configured:
/// 300. A person opens a message a few times and clicks a few links; a security scanner that
/// follows every link of a message at once follows at most `max_links` (250), and is still
/// recorded whole. Past the budget a request is answered as before and its event is not
/// recorded, so that one holder of one link cannot fill the disk: at 300 a minute, one
/// address writes at most about 7 KiB of events a second. Apple's and Google's image proxies
/// share their addresses between many recipients, but each recipient opens a message of
/// their own, so the pair stays one recipient's.
pub const DEFAULT_BUDGET_PER_MINUTE: u32 = 300;

/// The biggest spool the config may ask for below which nothing useful fits: one batch.
const MIN_SPOOL_MAX_BYTES: u64 = 4096;

/// Which sink receives the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// A local JSONL file, rotated by size.
    File,
    /// A Redis stream (or a stream on Redis Cluster).
    Redis,
    /// Standard output, as JSONL, for containers.
    Stdout,
}

/// Whether a response waits for its event to be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The response does not wait; each batch is committed (sink or fsynced spool) as a unit.
    Batch,
    /// The response waits for its batch's commit (group commit): nothing acknowledged is lost,
    /// even on `kill -9`.
    Sync,
}

/// `[events]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Which sink.
    pub sink: SinkKind,
    /// The JSONL file, resolved against the config folder.
    pub file: PathBuf,
    /// The size at which the file is rotated.
    pub file_max_bytes: u64,
    /// How many rotated files are kept, and how many bytes of them; the oldest go first.
    pub file_retention: RotatedRetention,
    /// Events recorded a minute for one (message id, client address) pair; 0 means no limit.
    pub budget_per_minute: u32,
    /// The Redis URL (`redis://`, `rediss://` for TLS; user and password in it for AUTH).
    pub redis_url: Option<String>,
    /// Whether `redis_url` names a seed node of a Redis Cluster.
    pub redis_cluster: bool,
    /// The stream key.
    pub stream: String,
    /// `MAXLEN ~` for `XADD`; 0 means no trimming.
    pub stream_maxlen: u64,
    /// The events at which a batch closes (up to 8× that when a backlog waits).
    pub batch_max_events: usize,
    /// How long a batch waits to fill.
    pub batch_linger: Duration,
    /// The spool folder, resolved against the config folder.
    pub spool_dir: PathBuf,
    /// The most bytes the spool may hold; past it new events are dropped and counted.
    pub spool_max_bytes: u64,
    /// How many events the in-memory queue holds.
    pub queue_capacity: usize,
    /// The queue depth past which batches go to the spool.
    pub spool_watermark: usize,
    /// How long one sink write may take.
    pub sink_timeout: Duration,
    /// Whether responses wait for the commit.
    pub durability: Durability,
}

/// How much of the rotated events files is kept. The default keeps everything: a rotated
/// file may not have been shipped yet, and deleting it would lose its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotatedRetention {
    /// The most rotated files kept (`events.file_keep_rotated`).
    pub files: Option<usize>,
    /// The most bytes of rotated files kept (`events.file_keep_rotated_bytes`).
    pub bytes: Option<u64>,
}

/// `[events]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    sink: Option<String>,
    file: Option<PathBuf>,
    file_max_bytes: Option<u64>,
    file_keep_rotated: Option<usize>,
    file_keep_rotated_bytes: Option<u64>,
    budget_per_minute: Option<u32>,
    redis_url: Option<String>,
    redis_cluster: Option<bool>,
    stream: Option<String>,
    stream_maxlen: Option<u64>,
    batch_max_events: Option<usize>,
    batch_linger_ms: Option<u64>,
    spool_dir: Option<PathBuf>,
    spool_max_bytes: Option<u64>,
    queue_capacity: Option<usize>,
    spool_watermark: Option<usize>,
    sink_timeout_ms: Option<u64>,
    durability: Option<String>,
}

impl EventsConfig {
    /// The defaults, with relative paths resolved against `folder`.
    pub fn defaults(folder: &Path) -> EventsConfig {
        // An empty section is valid by construction: every value is a default.
        RawEvents::default()
            .validate(folder)
            .expect("the defaults are valid")
    }
}

impl RawEvents {
    /// Validates `[events]`; relative paths resolve against `folder`.
    pub(super) fn validate(self, folder: &Path) -> Result<EventsConfig, Refusal> {
        let sink = parse_sink(self.sink.as_deref())?;
        if let Some(url) = &self.redis_url {
            check_redis_url(url)?;
        } else if sink == SinkKind::Redis {
            return Err((
                "events.redis_url",
                "sink = \"redis\" needs a redis_url".into(),
            ));
        }
        let stream = self.stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned());
        if stream.is_empty() {
            return Err(("events.stream", "the stream name is empty".into()));
        }
        let batch_max_events = self.batch_max_events.unwrap_or(DEFAULT_BATCH_MAX_EVENTS);
        if batch_max_events == 0 {
            return Err(("events.batch_max_events", "must be at least 1".into()));
        }
        let spool_max_bytes = self.spool_max_bytes.unwrap_or(DEFAULT_SPOOL_MAX_BYTES);
        if spool_max_bytes < MIN_SPOOL_MAX_BYTES {
            let message = format!("{spool_max_bytes} is less than {MIN_SPOOL_MAX_BYTES}");
            return Err(("events.spool_max_bytes", message));
        }
        let queue_capacity = self.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
        if queue_capacity == 0 {
            return Err(("events.queue_capacity", "must be at least 1".into()));
        }
        let spool_watermark = self
            .spool_watermark
            .unwrap_or(queue_capacity / DEFAULT_SPOOL_WATERMARK_DIVISOR);
        Ok(EventsConfig {
            sink,
            file: folder.join(
                self.file
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_EVENTS_FILE)),
            ),
            file_max_bytes: self.file_max_bytes.unwrap_or(DEFAULT_FILE_MAX_BYTES),
            file_retention: RotatedRetention {
                files: self.file_keep_rotated,
                bytes: self.file_keep_rotated_bytes,
            },
            budget_per_minute: self.budget_per_minute.unwrap_or(DEFAULT_BUDGET_PER_MINUTE),
            redis_url: self.redis_url,
            redis_cluster: self.redis_cluster.unwrap_or(false),
            stream,
            stream_maxlen: self.stream_maxlen.unwrap_or(DEFAULT_STREAM_MAXLEN),
            batch_max_events,
            batch_linger: self
                .batch_linger_ms
                .map_or(DEFAULT_BATCH_LINGER, Duration::from_millis),
            spool_dir: folder.join(
                self.spool_dir
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_SPOOL_DIR)),
            ),
            spool_max_bytes,
            queue_capacity,
            spool_watermark,
            sink_timeout: self
                .sink_timeout_ms
                .map_or(DEFAULT_SINK_TIMEOUT, Duration::from_millis),
            durability: parse_durability(self.durability.as_deref())?,
        })
    }
}

fn parse_sink(value: Option<&str>) -> Result<SinkKind, Refusal> {
    match value {
        None => Ok(DEFAULT_SINK),
        Some("file") => Ok(SinkKind::File),
        Some("redis") => Ok(SinkKind::Redis),
        Some("stdout") => Ok(SinkKind::Stdout),
        Some(other) => Err((
            "events.sink",
            format!("{other:?} is not \"file\", \"redis\" or \"stdout\""),
        )),
    }
}

fn parse_durability(value: Option<&str>) -> Result<Durability, Refusal> {
    match value {
        None => Ok(DEFAULT_DURABILITY),
        Some("batch") => Ok(Durability::Batch),
        Some("sync") => Ok(Durability::Sync),
        Some(other) => Err((
            "events.durability",
            format!("{other:?} is not \"batch\" or \"sync\""),
        )),
    }
}

/// A Redis URL the client can use, checked without connecting: an unreachable Redis is not a
/// config error (the spool covers it), but a URL that can never work is.
fn check_redis_url(url: &str) -> Result<(), Refusal> {
    redis::Client::open(url).map(drop).map_err(|e| {
        // The URL may hold a password: name its scheme only.
        let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
        let message = format!("not a usable Redis URL (scheme {scheme:?}): {}", e);
        ("events.redis_url", message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EventsConfig, Refusal> {
        toml::from_str::<RawEvents>(text)
            .unwrap()
            .validate(Path::new("/etc/mailtrack"))
    }

    #[test]
    fn defaults_are_the_file_sink_beside_the_config() {
        let config = parse("").unwrap();
        assert_eq!(config.sink, SinkKind::File);
        assert_eq!(config.file, Path::new("/etc/mailtrack/data/events.jsonl"));
        assert_eq!(config.spool_dir, Path::new("/etc/mailtrack/data/spool"));
        assert_eq!(config.durability, Durability::Batch);
        assert_eq!(config.budget_per_minute, DEFAULT_BUDGET_PER_MINUTE);
        assert_eq!(
            config.file_retention,
            RotatedRetention::default(),
            "rotated files are kept for ever unless bounded"
        );
        assert_eq!(config, EventsConfig::defaults(Path::new("/etc/mailtrack")));
        let config =
            parse("file_keep_rotated = 3\nfile_keep_rotated_bytes = 1000\nbudget_per_minute = 0")
                .unwrap();
        assert_eq!(
            config.file_retention,
            RotatedRetention {
                files: Some(3),
                bytes: Some(1000)
            }
        );
        assert_eq!(config.budget_per_minute, 0);
        assert!(toml::from_str::<RawEvents>("budget_per_minute = -1").is_err());
    }

    #[test]
    fn redis_needs_a_usable_url() {
        let err = parse("sink = \"redis\"").unwrap_err();
        assert_eq!(err.0, "events.redis_url");
        let err = parse("sink = \"redis\"\nredis_url = \"http://secret@x\"").unwrap_err();
        assert_eq!(err.0, "events.redis_url");
        assert!(!err.1.contains("secret"), "{}", err.1);
        let config = parse("sink = \"redis\"\nredis_url = \"rediss://u:p@h:6380/0\"").unwrap();
        assert_eq!(config.stream, DEFAULT_STREAM);
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(parse("sink = \"kafka\"").unwrap_err().0, "events.sink");
        assert_eq!(
            parse("durability = \"x\"").unwrap_err().0,
            "events.durability"
        );
        assert_eq!(
            parse("spool_max_bytes = 1").unwrap_err().0,
            "events.spool_max_bytes"
        );
        assert_eq!(
            parse("batch_max_events = 0").unwrap_err().0,
            "events.batch_max_events"
        );
    }
}
