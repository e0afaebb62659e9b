//! `mailtrack events tail`: reads the events stream as a member of a consumer group and
//! prints each event as one JSON line. It is a tool for operators and a model for consumers:
//!
//! 1. `XGROUP CREATE {stream} {group} 0 MKSTREAM`, once; `BUSYGROUP` means it exists.
//! 2. `XAUTOCLAIM` entries another consumer took but never acknowledged (it crashed) once
//!    they have been pending for `min_idle`, and handle them first.
//! 3. `XREADGROUP GROUP {group} {consumer} COUNT n BLOCK ms STREAMS {stream} >` for new ones.
//! 4. Handle each entry, then `XACK` it. An entry handled but not acknowledged (a crash in
//!    between) is delivered again: delivery is at-least-once, so real consumers dedupe on
//!    `mailtrack.eventId`.
//!
//! See `docs/consumers.md` for the same in prose.

use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::sink::redis::{Connector, RedisConnection, EVENT_FIELD};
use super::sink::SinkError;
use crate::config::EventsConfig;

/// The consumer group when none is given: one name that every `tail` shares, so that two
/// operators tailing at once split the entries rather than each reading all of them.
pub const DEFAULT_GROUP: &str = "mailtrack-tail";

/// The consumer name when none is given.
pub const DEFAULT_CONSUMER: &str = "tail-1";

/// How long `XREADGROUP` blocks waiting for entries: 2 s answers Ctrl-C and `--max` promptly
/// and costs one idle round trip per 2 s.
pub const DEFAULT_BLOCK: Duration = Duration::from_secs(2);

/// How long an entry must have been pending before `XAUTOCLAIM` takes it over: 60 s, far
/// longer than handling an event takes, so a live consumer's entries are never stolen.
pub const DEFAULT_MIN_IDLE: Duration = Duration::from_secs(60);

/// How many entries one read asks for: 100 keeps each reply small and round trips few.
pub const DEFAULT_COUNT: usize = 100;

/// What `tail` reads and how.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// The consumer group.
    pub group: String,
    /// This consumer's name within the group.
    pub consumer: String,
    /// Stop after this many events (for scripts and tests); `None` runs until stopped.
    pub max_events: Option<u64>,
    /// How long one read blocks.
    pub block: Duration,
    /// How long an entry is pending before it is claimed from another consumer.
    pub min_idle: Duration,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            group: DEFAULT_GROUP.to_owned(),
            consumer: DEFAULT_CONSUMER.to_owned(),
            max_events: None,
            block: DEFAULT_BLOCK,
            min_idle: DEFAULT_MIN_IDLE,
        }
    }
}

/// Why `tail` stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TailError {
    /// `[events]` has no `redis_url`: there is no stream to read.
    #[error("events.redis_url is not set: there is no stream to tail")]
    NoRedis,
    /// Redis refused a command or could not be reached.
    #[error(transparent)]
    Redis(#[from] SinkError),
    /// The output could not be written.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<redis::RedisError> for TailError {
    fn from(e: redis::RedisError) -> Self {
        TailError::Redis(SinkError::Redis(e))
    }
}

/// Reads `config`'s stream as `options` say and writes each event to `out` as a JSON line.
/// Returns how many were written (when `max_events` was reached).
pub async fn tail<W>(
    config: &EventsConfig,
    options: &TailOptions,
    mut out: W,
) -> Result<u64, TailError>
where
    W: AsyncWrite + Unpin,
{
    if config.redis_url.is_none() {
        return Err(TailError::NoRedis);
    }
    // A blocking read must not count as a slow server.
    let response_timeout = options.block + config.sink_timeout;
    let mut connection = Connector::new(config, response_timeout)?.connect().await?;
    create_group(&mut connection, &config.stream, &options.group).await?;
    let mut written = 0;
    loop {
        let mut entries = claim_stale(&mut connection, &config.stream, options).await?;
        if entries.is_empty() {
            entries = read_new(&mut connection, &config.stream, options).await?;
        }
        for entry in &entries {
            if options.max_events.is_some_and(|max| written >= max) {
                break;
            }
            if let Some(json) = entry.get::<Vec<u8>>(EVENT_FIELD) {
                out.write_all(&json).await?;
                out.write_all(b"\n").await?;
            }
            out.flush().await?;
            acknowledge(&mut connection, &config.stream, &options.group, &entry.id).await?;
            written += 1;
        }
        if options.max_events.is_some_and(|max| written >= max) {
            return Ok(written);
        }
    }
}

/// `XGROUP CREATE … 0 MKSTREAM`: a new group starts at the beginning of the stream, so the
/// first consumer also handles what was written before it existed.
async fn create_group(
    connection: &mut RedisConnection,
    stream: &str,
    group: &str,
) -> Result<(), TailError> {
    let created: Result<Value, _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(connection)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other.map(drop).map_err(TailError::from),
    }
}

/// Takes over entries pending longer than `min_idle` (from a consumer that died).
async fn claim_stale(
    connection: &mut RedisConnection,
    stream: &str,
    options: &TailOptions,
) -> Result<Vec<StreamId>, TailError> {
    let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(stream)
        .arg(&options.group)
        .arg(&options.consumer)
        .arg(options.min_idle.as_millis() as u64)
        .arg("0-0")
        .arg("COUNT")
        .arg(DEFAULT_COUNT)
        .query_async(connection)
        .await?;
    Ok(reply.claimed)
}

/// `XREADGROUP` of up to `count` entries of `stream` never delivered to `group`, as
/// `consumer`, blocking up to `block_ms` for one: how `events tail` and `notify` read.
pub fn read_group(
    group: &str,
    consumer: &str,
    count: usize,
    block_ms: u64,
    stream: &str,
) -> redis::Cmd {
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(block_ms)
        .arg("STREAMS")
        .arg(stream)
        .arg(">");
    read
}

/// Reads entries never delivered to this group, blocking a while for them.
async fn read_new(
    connection: &mut RedisConnection,
    stream: &str,
    options: &TailOptions,
) -> Result<Vec<StreamId>, TailError> {
    let block_ms = options.block.as_millis() as u64;
    let read = read_group(
        &options.group,
        &options.consumer,
        DEFAULT_COUNT,
        block_ms,
        stream,
    );
    let reply: Option<StreamReadReply> = read.query_async(connection).await?;
    Ok(reply
        .into_iter()
        .flat_map(|reply| reply.keys)
        .flat_map(|key| key.ids)
        .collect())
}

async fn acknowledge(
    connection: &mut RedisConnection,
    stream: &str,
    group: &str,
    id: &str,
) -> Result<(), TailError> {
    redis::cmd("XACK")
        .arg(stream)
        .arg(group)
        .arg(id)
        .exec_async(connection)
        .await?;
    Ok(())
}
