//! A stream endpoint: a filtered copy of the events, added to another Redis stream (possibly on
//! another Redis) that the subscriber reads at its own pace, as Aliyun's MNS queues are read.
//!
//! Each entry the rule wants is added to the target stream with the events stream's own
//! fields (`event`, `type`, `message_id`), and only then are the entries acknowledged: a crash
//! in between adds some again, which consumers absorb by deduping on `mailtrack.eventId`.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::RedisError;
use tokio::sync::watch;

use super::redis_log::{EndpointStore, LogEntry, EVENT_FIELD};
use super::rule::{EventFacts, Rule};

/// Entries read and copied at a time.
pub const COPY_BATCH: usize = 256;

/// How long one read waits for new entries.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// How often entries a dead process left pending are claimed.
const CLAIM_EVERY: Duration = Duration::from_secs(15);

/// One stream endpoint, ready to run.
pub struct StreamWorker {
    name: String,
    rule: Rule,
    store: EndpointStore,
    target: ConnectionManager,
    stream: String,
}

impl std::fmt::Debug for StreamWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWorker")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl StreamWorker {
    /// A worker copying what `rule` wants from `store`'s log to `stream` on `target`.
    pub fn new(
        name: String,
        rule: Rule,
        store: EndpointStore,
        target: ConnectionManager,
        stream: String,
    ) -> StreamWorker {
        StreamWorker {
            name,
            rule,
            store,
            target,
            stream,
        }
    }

    /// Copies until `shutdown` turns true.
    pub async fn run(mut self, shutdown: watch::Receiver<bool>) {
        let mut last_claim: Option<Instant> = None;
        while !*shutdown.borrow() {
            let claim_every = CLAIM_EVERY.min(self.store.claim_idle());
            let claim = last_claim.is_none_or(|at| at.elapsed() >= claim_every);
            if claim {
                last_claim = Some(Instant::now());
            }
            if let Err(error) = self.turn(claim).await {
                tracing::warn!(endpoint = %self.name, %error, "Redis failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn turn(&mut self, claim: bool) -> Result<(), RedisError> {
        let mut entries = if claim {
            self.store.claim_stale(COPY_BATCH).await?
        } else {
            Vec::new()
        };
        if entries.is_empty() {
            entries = self.store.read_new(COPY_BATCH, READ_BLOCK).await?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.copy(&entries).await?;
        let ids: Vec<String> = entries.into_iter().map(|entry| entry.id).collect();
        self.store.acknowledge(&ids).await
    }

    /// Adds the wanted entries to the target stream, in one pipeline.
    async fn copy(&mut self, entries: &[LogEntry]) -> Result<(), RedisError> {
        let mut pipeline = redis::pipe();
        let mut copied = 0;
        for entry in entries {
            let Some(json) = &entry.event else { continue };
            let Ok(facts) = EventFacts::parse(json) else {
                continue;
            };
            if !self.rule.matches(&facts) {
                continue;
            }
            pipeline
                .cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg(EVENT_FIELD)
                .arg(json)
                .arg("type")
                .arg(&facts.event_type)
                .arg("message_id")
                .arg(&facts.mail.message_id)
                .ignore();
            copied += 1;
        }
        if copied > 0 {
            pipeline.exec_async(&mut self.target).await?;
        }
        Ok(())
    }
}
