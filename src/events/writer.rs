//! The writer: the one task between the [batcher](super::batcher) and the sink.
//!
//! It commits each batch as one unit:
//!
//! 1. to the sink, when the spool is empty, the sink is not in back-off after a failure, and
//!    the queue was below the watermark when the batch closed;
//! 2. otherwise, or when the sink write fails or times out, to the spool (fsynced);
//! 3. when the spool is full too, nowhere: the batch is dropped, counted and logged.
//!
//! Then it answers the batch's durable senders, and replays a few spooled batches if the
//! sink is due.
//!
//! A sink that can (Redis) has up to [`Sink::max_in_flight`] batches sent and not yet
//! acknowledged, answered in the order they were sent. Once one of them fails, the ones sent
//! after it are spooled behind it whatever their answer, so the spool still holds events in
//! queue order; those that did reach Redis are then delivered twice, which consumers already
//! handle by deduping on `eventId`.
//!
//! While anything is spooled, new batches are spooled behind it, so the sink receives events
//! in the order they were queued. After a failure the sink is retried with exponential
//! back-off; meanwhile batches go straight to the spool, so a dead sink costs one timeout,
//! not one per batch.
//!
//! When the batcher is done (shutdown), the spool is replayed while the sink takes it, within
//! [`DEFAULT_SHUTDOWN_REPLAY`]; what is left stays in the spool for the next start.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use super::batch::Batch;
use super::batcher::{BatchPool, Prepared};
use super::commit::{answer_all, Ack, CommitError};
use super::sink::{off_thread, Delivery, Sink, SinkError};
use super::spool::{Spool, SpoolError};
use super::stats::PipelineStats;
use crate::config::EventsConfig;

/// The first wait before retrying a failed sink: 100 ms rides over a connection reset
/// without hammering a server that is restarting.
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_millis(100);

/// The longest wait between sink retries: 2 s. A Redis restart or failover takes seconds;
/// retrying more often only loads a recovering server, and less often delays the replay.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(2);

/// How many spooled batches are replayed before the writer looks at the queue again: 16
/// batches are a few milliseconds of sink time, so new events are never kept waiting long.
pub const DEFAULT_REPLAY_BATCHES_PER_TURN: usize = 16;

/// How long shutdown keeps replaying the spool into a sink that takes it: 10 s, well within
/// a container's usual 30 s stop grace after the requests' own drain. The rest stays
/// spooled on disk and is replayed at the next start.
pub const DEFAULT_SHUTDOWN_REPLAY: Duration = Duration::from_secs(10);

/// How many times shutdown tries a sink that fails to replay the spool: twice, so a sink
/// that blipped gets a second chance after its back-off, while a sink that is down does not
/// hold the process for the whole of [`DEFAULT_SHUTDOWN_REPLAY`]. The spool keeps the rest.
pub const DEFAULT_SHUTDOWN_ATTEMPTS: usize = 2;

/// The writer's state.
pub(crate) struct Writer {
    batches: mpsc::Receiver<Prepared>,
    recycle: BatchPool,
    sink: Sink,
    spool: Arc<Mutex<Spool>>,
    stats: Arc<PipelineStats>,
    sink_timeout: Duration,
    /// When the sink may be tried again after a failure; `None` while it is up.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// Whether the spool holds anything: kept here so the hot path needs no lock.
    spool_pending: bool,
    /// Whether the spool refused a batch since it last shrank. Batches vary in size (a
    /// backlog makes bigger ones), so a small one may still fit after a big one was refused;
    /// the spool still counts as full, for `/readyz` and the metrics, until a replay frees
    /// room.
    spool_refused: bool,
    /// Batches sent to the sink and not yet answered, oldest first.
    in_flight: FuturesOrdered<Answered>,
}

/// A batch sent to the sink, waiting for its answer.
struct Sent {
    batch: Arc<Batch>,
    acks: Vec<Ack>,
}

/// The sink's answer to a batch in flight, within the sink timeout.
type Answered = Pin<Box<dyn Future<Output = (Sent, Result<(), SinkError>)> + Send>>;

impl Writer {
    /// A writer taking batches from `batches`.
    pub(crate) fn new(
        batches: mpsc::Receiver<Prepared>,
        recycle: BatchPool,
        sink: Sink,
        spool: Spool,
        stats: Arc<PipelineStats>,
        config: &EventsConfig,
    ) -> Writer {
        let spool_pending = !spool.is_empty();
        stats.set_spool(spool.pending_bytes(), false);
        Writer {
            batches,
            recycle,
            sink,
            spool: Arc::new(Mutex::new(spool)),
            stats,
            sink_timeout: config.sink_timeout,
            retry_at: None,
            retry_delay: DEFAULT_RETRY_MIN,
            spool_pending,
            spool_refused: false,
            in_flight: FuturesOrdered::new(),
        }
    }

    /// Runs until the batcher is done and the spool is replayed (or the time is up).
    pub(crate) async fn run(mut self) {
        loop {
            let idle = self.in_flight.is_empty();
            let replay_due =
                (self.spool_pending && idle).then(|| self.retry_at.unwrap_or_else(Instant::now));
            let room = self.in_flight.len() < self.sink.max_in_flight();
            tokio::select! {
                prepared = self.batches.recv(), if room => match prepared {
                    Some(prepared) => self.commit(prepared).await,
                    None => break,
                },
                Some((sent, result)) = self.in_flight.next(), if !idle => {
                    self.answered(sent, result).await;
                }
                () = sleep_until(replay_due), if replay_due.is_some() => {}
            }
            if self.in_flight.is_empty() {
                self.replay(DEFAULT_REPLAY_BATCHES_PER_TURN).await;
            }
        }
        self.finish_in_flight().await;
        self.replay_before_exit().await;
    }

    /// Sends one batch to the sink, or commits it to the spool; a batch that goes to the
    /// spool is answered at once.
    async fn commit(&mut self, prepared: Prepared) {
        let Prepared {
            batch,
            acks,
            behind,
        } = prepared;
        if !self.spool_pending && self.sink_is_due() && !behind {
            match self.sink.send(&batch).await {
                Ok(delivery) => return self.push_in_flight(Sent { batch, acks }, delivery),
                Err(e) => self.sink_failed(&e),
            }
        }
        // Into the spool behind whatever is still in flight, so the spool keeps queue order.
        self.finish_in_flight().await;
        let result = self.spool(&batch).await;
        answer_all(acks, result);
        self.recycle.put_back(batch);
    }

    fn push_in_flight(&mut self, sent: Sent, delivery: Delivery) {
        let limit = self.sink_timeout;
        self.in_flight.push_back(Box::pin(async move {
            let result = within(limit, delivery).await;
            (sent, result)
        }));
    }

    /// Takes the sink's answer to a batch in flight: it is delivered, or it goes to the
    /// spool (also when a batch sent before it failed), and its durable senders are answered.
    async fn answered(&mut self, sent: Sent, result: Result<(), SinkError>) {
        let Sent { batch, acks } = sent;
        let delivered = match result {
            Ok(()) if self.spool_pending => false,
            Ok(()) => {
                self.sink_answered();
                true
            }
            Err(e) => {
                self.sink.failed();
                self.sink_failed(&e);
                false
            }
        };
        let result = if delivered {
            self.stats.add_delivered(batch.len());
            Ok(())
        } else {
            self.spool(&batch).await
        };
        answer_all(acks, result);
        self.recycle.put_back(batch);
    }

    /// Waits for every batch in flight and takes its answer.
    async fn finish_in_flight(&mut self) {
        while let Some((sent, result)) = self.in_flight.next().await {
            self.answered(sent, result).await;
        }
    }

    /// Appends `batch` to the spool; on failure the batch is dropped, counted and logged.
    async fn spool(&mut self, batch: &Arc<Batch>) -> Result<(), CommitError> {
        let jsonl = Arc::clone(batch);
        let appended = off_thread(&self.spool, move |spool| {
            let appended = spool.append(jsonl.jsonl());
            (appended, spool.pending_bytes())
        })
        .await;
        let (appended, pending_bytes) = appended;
        self.spool_refused |= matches!(appended, Err(SpoolError::Full { .. }));
        self.stats.set_spool(pending_bytes, self.spool_refused);
        match appended {
            Ok(()) => {
                self.spool_pending = true;
                self.stats.add_spooled(batch.len());
                Ok(())
            }
            Err(e) => {
                self.stats.add_dropped(batch.len());
                tracing::error!(events = batch.len(), error = %e, "events dropped: the sink is unavailable and the spool refused them");
                Err(CommitError::Dropped)
            }
        }
    }

    /// Replays up to `turns` spooled batches while the sink takes them.
    async fn replay(&mut self, turns: usize) {
        for _ in 0..turns {
            if !self.spool_pending || !self.sink_is_due() {
                return;
            }
            let peeked = off_thread(&self.spool, |spool| spool.peek()).await;
            let frame = match peeked {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    self.spool_pending = false;
                    self.spool_refused = false;
                    self.stats.set_spool(0, false);
                    return;
                }
                Err(e) => {
                    // Back off as for a sink failure: the disk may recover (space freed).
                    tracing::error!(error = %e, "the spool could not be read; replay paused");
                    self.back_off();
                    return;
                }
            };
            self.stats.add_corrupt(frame.corrupt_bytes);
            let batch = match Batch::from_jsonl(frame.payload) {
                Ok(batch) => Arc::new(batch),
                Err(e) => {
                    tracing::error!(error = %e, "a spooled batch does not parse; skipped");
                    self.advance_spool();
                    continue;
                }
            };
            match self.deliver(&batch).await {
                Ok(()) => {
                    self.advance_spool();
                    self.stats.add_replayed(batch.len());
                }
                Err(e) => return self.sink_failed(&e),
            }
        }
    }

    /// Marks the spool's oldest batch as replayed. Only bookkeeping in memory: no disk work.
    fn advance_spool(&mut self) {
        // Only this task takes the lock, and never across an await.
        let mut spool = self
            .spool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        spool.advance();
        self.spool_refused = false;
        self.stats.set_spool(spool.pending_bytes(), false);
    }

    /// After the queue is drained: replays the spool while the sink takes it, for a while,
    /// giving a failing sink [`DEFAULT_SHUTDOWN_ATTEMPTS`] tries.
    async fn replay_before_exit(&mut self) {
        let deadline = Instant::now() + DEFAULT_SHUTDOWN_REPLAY;
        let mut attempts = 0;
        while self.spool_pending && attempts < DEFAULT_SHUTDOWN_ATTEMPTS {
            attempts += 1;
            if let Some(retry_at) = self.retry_at {
                tokio::time::sleep_until(retry_at.min(deadline)).await;
                if Instant::now() >= deadline {
                    break;
                }
            }
            self.replay(usize::MAX).await;
        }
        if self.spool_pending {
            let bytes = self.stats.snapshot(0).spool_bytes;
            tracing::warn!(
                bytes,
                "events left in the spool; they are replayed at the next start"
            );
        }
    }

    /// Sends a batch to the sink within the sink timeout.
    async fn deliver(&mut self, batch: &Arc<Batch>) -> Result<(), SinkError> {
        let result = within(self.sink_timeout, self.sink.deliver(batch)).await;
        if result.is_ok() {
            self.sink_answered();
        }
        result
    }

    /// The sink took a batch: if it was failing, it is back.
    fn sink_answered(&mut self) {
        if self.retry_at.take().is_some() {
            tracing::info!("the events sink is back; replaying the spool");
            self.retry_delay = DEFAULT_RETRY_MIN;
            self.stats.sink_ok();
        }
    }

    fn sink_is_due(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn sink_failed(&mut self, error: &SinkError) {
        if self.retry_at.is_none() {
            tracing::warn!(%error, "the events sink failed; spooling to disk until it is back");
        } else {
            tracing::debug!(%error, "the events sink is still failing");
        }
        self.stats.sink_failed();
        self.back_off();
    }

    fn back_off(&mut self) {
        let delay = if self.retry_at.is_some() {
            (self.retry_delay * 2).min(DEFAULT_RETRY_MAX)
        } else {
            DEFAULT_RETRY_MIN
        };
        self.retry_delay = delay;
        self.retry_at = Some(Instant::now() + delay);
    }
}

/// `delivery`'s result, or a timeout error once `limit` has passed.
async fn within(
    limit: Duration,
    delivery: impl Future<Output = Result<(), SinkError>>,
) -> Result<(), SinkError> {
    match timeout(limit, delivery).await {
        Ok(result) => result,
        Err(_elapsed) => Err(SinkError::Timeout(limit)),
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
