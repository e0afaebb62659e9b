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

use super::metrics::EndpointMetrics;
use super::redis_log::{entry_ms, EndpointStore, LogEntry, EVENT_FIELD};
use super::rule::{EventFacts, Rule};

/// Entries read and copied at a time.
pub const COPY_BATCH: usize = 256;

/// How long one read waits for new entries.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// How often entries a dead process left pending are claimed.
const CLAIM_EVERY: Duration = Duration::from_secs(15);

/// How often the endpoint's lag behind the log is measured, as the HTTP worker does.
const LAG_EVERY: Duration = super::worker::LAG_EVERY;

/// One stream endpoint, ready to run.
pub struct StreamWorker {
    name: String,
    rule: Rule,
    store: EndpointStore,
    target: ConnectionManager,
    stream: String,
    metrics: EndpointMetrics,
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
            metrics: EndpointMetrics::default(),
        }
    }

    /// Counts into `metrics`: a copied event is delivered (with its time from the log), and
    /// the lag behind the log is measured. Without it the worker counts into series no one
    /// reads.
    pub fn with_metrics(mut self, metrics: EndpointMetrics) -> StreamWorker {
        self.metrics = metrics;
        self
    }

    /// Copies until `shutdown` turns true.
    pub async fn run(mut self, shutdown: watch::Receiver<bool>) {
        let mut last_claim: Option<Instant> = None;
        let mut last_lag: Option<Instant> = None;
        while !*shutdown.borrow() {
            if last_lag.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
                last_lag = Some(Instant::now());
                self.measure_lag().await;
            }
            let claim = last_claim.is_none_or(|at| at.elapsed() >= CLAIM_EVERY);
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
        let copied = self.copy(&entries).await?;
        let ids: Vec<String> = entries.into_iter().map(|entry| entry.id).collect();
        self.store.acknowledge(&ids).await?;
        self.metrics.delivered.inc_by(copied.len() as u64);
        self.metrics.delivered_since(copied);
        Ok(())
    }

    /// Brings the lag gauges up to date; a failure only leaves them as they were.
    async fn measure_lag(&mut self) {
        match self.store.lag().await {
            Ok((events, age)) => {
                let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                self.metrics.lag_events.set(gauge(events));
                self.metrics.lag_seconds.set(gauge(age.as_secs()));
            }
            Err(error) => tracing::debug!(endpoint = %self.name, %error, "lag not measured"),
        }
    }

    /// Adds the wanted entries to the target stream, in one pipeline; returns the log times
    /// (ms) of those copied.
    async fn copy(&mut self, entries: &[LogEntry]) -> Result<Vec<u64>, RedisError> {
        let mut pipeline = redis::pipe();
        let mut copied = Vec::new();
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
            copied.push(entry_ms(&entry.id).unwrap_or_else(super::redis_log::now_ms));
        }
        if !copied.is_empty() {
            pipeline.exec_async(&mut self.target).await?;
        }
        Ok(copied)
    }
}
