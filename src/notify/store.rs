//! The one interface an HTTP endpoint's worker delivers through, over either events log: the
//! Redis stream ([`EndpointStore`]) or the JSONL file ([`FileStore`]).
//!
//! An enum rather than a trait object: the worker clones the store into each attempt's task,
//! and the two stores' futures stay `Send` without boxing. Each operation means the same on
//! both; see [`redis_log`](super::redis_log) and [`file_log`](super::file_log) for how each
//! keeps it.

use std::time::Duration;

use super::file_log::FileStore;
use super::redis_log::{Delivery, EndpointStore, LogEntry};

/// Why a store operation failed. The worker logs it and tries again: nothing is lost, since
/// an entry not recorded as settled stays unsettled.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A file of the file log or of its state folder failed.
    #[error("{0}")]
    File(#[from] std::io::Error),
    /// A read run ahead in a task of its own did not finish (it panicked).
    #[error("a read of the log did not finish: {0}")]
    Read(#[from] tokio::task::JoinError),
}

/// One endpoint's log, retries and dead letters.
#[derive(Debug, Clone)]
pub enum Store {
    /// The Redis events stream, its consumer group, retry set and dead-letter stream.
    Redis(EndpointStore),
    /// The JSONL events file, followed from a checkpoint, with local retry and dead-letter
    /// files.
    File(FileStore),
}

impl From<EndpointStore> for Store {
    fn from(store: EndpointStore) -> Store {
        Store::Redis(store)
    }
}

impl From<FileStore> for Store {
    fn from(store: FileStore) -> Store {
        Store::File(store)
    }
}

impl Store {
    /// How long another process's entries stay pending before they are claimed: the file,
    /// which one process reads, has none to claim, so it never needs looking for.
    pub fn claim_idle(&self) -> Duration {
        match self {
            Store::Redis(store) => store.claim_idle(),
            Store::File(_) => Duration::MAX,
        }
    }

    /// Whether an entry's id names its event for good, so that a delivery's `webhook-id` can
    /// be made of its entries' ids: a stream never gives an id twice, while the file's
    /// positions come again once its state folder is reset, so its deliveries are named by
    /// their events' `eventId`s, which needs each event parsed.
    pub fn entry_ids_name_events(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// Takes over up to `count` entries another (dead) process read and never settled: none
    /// for the file, which one process reads.
    pub async fn claim_stale(&mut self, count: usize) -> Result<Vec<LogEntry>, StoreError> {
        match self {
            Store::Redis(store) => Ok(store.claim_stale(count).await?),
            Store::File(_) => Ok(Vec::new()),
        }
    }

    /// Reads up to `count` entries never read before, waiting up to `block` for one.
    pub async fn read_new(
        &mut self,
        count: usize,
        block: Duration,
    ) -> Result<Vec<LogEntry>, StoreError> {
        match self {
            Store::Redis(store) => Ok(store.read_new(count, block).await?),
            Store::File(store) => Ok(store.read_new(count, block).await?),
        }
    }

    /// Settles entries: delivered, or not wanted by the endpoint.
    pub async fn acknowledge(&mut self, ids: &[String]) -> Result<(), StoreError> {
        match self {
            Store::Redis(store) => Ok(store.acknowledge(ids).await?),
            Store::File(store) => Ok(store.acknowledge(ids)?),
        }
    }

    /// Puts a delivery of entries `ids` among the retries, due at `due_ms`, and settles the
    /// entries: the events are in one place or the other.
    pub async fn schedule_first_retry(
        &mut self,
        delivery: &Delivery,
        due_ms: u64,
        ids: &[String],
    ) -> Result<(), StoreError> {
        match self {
            Store::Redis(store) => Ok(store.schedule_first_retry(delivery, due_ms, ids).await?),
            Store::File(store) => Ok(store.schedule_first_retry(delivery, due_ms, ids)?),
        }
    }

    /// Takes up to `count` retries due now, under a lease.
    pub async fn take_due(&mut self, count: usize) -> Result<Vec<Delivery>, StoreError> {
        match self {
            Store::Redis(store) => Ok(store.take_due(count).await?),
            Store::File(store) => Ok(store.take_due(count)?),
        }
    }

    /// A retry was delivered: it leaves the retries.
    pub async fn retry_done(&mut self, delivery: &Delivery) -> Result<(), StoreError> {
        match self {
            Store::Redis(store) => Ok(store.retry_done(delivery).await?),
            Store::File(store) => Ok(store.retry_done(delivery)?),
        }
    }

    /// A retry failed again: it comes back as `after`, due at `due_ms`.
    pub async fn retry_again(
        &mut self,
        before: &Delivery,
        after: &Delivery,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Redis(store) => Ok(store.retry_again(before, after, due_ms).await?),
            Store::File(store) => Ok(store.retry_again(before, after, due_ms)?),
        }
    }

    /// A delivery whose schedule ran out becomes a dead letter with its last answer; it
    /// leaves the retries (when it came from there) and its entries `ids` are settled.
    pub async fn dead_letter(
        &mut self,
        delivery: &Delivery,
        from_retries: bool,
        ids: &[String],
        last_answer: &str,
    ) -> Result<(), StoreError> {
        match self {
            Store::Redis(store) => Ok(store
                .dead_letter(delivery, from_retries, ids, last_answer)
                .await?),
            Store::File(store) => {
                Ok(store.dead_letter(delivery, from_retries, ids, last_answer)?)
            }
        }
    }

    /// How far the endpoint is behind the log: entries not yet read, and the age of the
    /// oldest of them.
    pub async fn lag(&mut self) -> Result<(u64, Duration), StoreError> {
        match self {
            Store::Redis(store) => Ok(store.lag().await?),
            Store::File(store) => Ok(store.lag()?),
        }
    }

    /// Records what is settled before the worker returns: the file's checkpoint; nothing for
    /// Redis, which records every operation as it happens.
    pub async fn close(&mut self) -> Result<(), StoreError> {
        match self {
            Store::Redis(_) => Ok(()),
            Store::File(store) => Ok(store.checkpoint_now()?),
        }
    }
}
