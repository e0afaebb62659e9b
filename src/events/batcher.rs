//! The batcher: takes events off the queue and puts them into batches, one step ahead of the
//! [writer](super::writer).
//!
//! A batch closes when it holds `batch_max_events` or when `batch_linger` has passed since
//! its first event. While it lingers, the batcher sleeps until the queue holds enough to fill
//! it (see [`Wanted`]) rather than waking for every event. It runs in its own task: while
//! the writer waits for the sink to acknowledge one batch, the next is being made. The
//! hand-off channel holds one batch, so the batcher is never more than a batch or two ahead
//! and the writer still commits in queue order.
//!
//! On shutdown the queue is closed (offers then fail with `Closed`), what it holds is
//! batched, and dropping the hand-off tells the writer that nothing more is coming.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use super::batch::Batch;
use super::commit::{Ack, Queued};
use super::Wanted;

/// How many made batches wait for the writer: one, so serialising overlaps the sink's round
/// trip without building up a second queue in front of the writer.
pub const DEFAULT_BATCHES_AHEAD: usize = 1;

/// How many committed batches are kept for reuse: two, one being filled while one waits,
/// so that a batch's buffers (a few hundred KiB) are allocated once, not per batch.
const POOLED_BATCHES: usize = 2;

/// Batches the writer has committed, handed back to the batcher to fill again.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchPool {
    batches: Arc<Mutex<Vec<Batch>>>,
}

impl BatchPool {
    /// A cleared batch from the pool, or a new one for `capacity` events.
    fn take(&self, capacity: usize) -> Batch {
        let mut pool = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        pool.pop().unwrap_or_else(|| Batch::with_capacity(capacity))
    }

    /// Keeps `batch` for reuse if nothing else holds it and the pool has room.
    pub(crate) fn put_back(&self, batch: Arc<Batch>) {
        if let Ok(mut batch) = Arc::try_unwrap(batch) {
            batch.clear();
            let mut pool = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < POOLED_BATCHES {
                pool.push(batch);
            }
        }
    }
}

/// A batch ready to commit.
pub(crate) struct Prepared {
    /// The events, serialised.
    pub(crate) batch: Arc<Batch>,
    /// The durable senders waiting on it.
    pub(crate) acks: Vec<Ack>,
    /// Whether the queue was past the watermark when the batch closed: the writer then
    /// spools it rather than wait on a slow sink.
    pub(crate) behind: bool,
}

/// The task from the queue to the writer.
pub(crate) struct Batcher {
    pub(crate) receiver: mpsc::Receiver<Queued>,
    pub(crate) wanted: Arc<Wanted>,
    pub(crate) shutdown: oneshot::Receiver<()>,
    pub(crate) batches: mpsc::Sender<Prepared>,
    pub(crate) pool: BatchPool,
    pub(crate) max_events: usize,
    pub(crate) linger: Duration,
    pub(crate) watermark: usize,
}

impl Batcher {
    /// Runs until the queue is closed and drained, then drops the hand-off.
    pub(crate) async fn run(mut self) {
        let mut closing = false;
        loop {
            let first = tokio::select! {
                queued = self.receiver.recv() => queued,
                // A dropped handle counts as a request to shut down.
                _ = &mut self.shutdown, if !closing => {
                    closing = true;
                    self.receiver.close();
                    continue;
                }
            };
            let Some(first) = first else { return };
            let (prepared, open) = self.fill(first).await;
            if self.batches.send(prepared).await.is_err() || !open {
                // The writer is gone (it panicked), or the queue is closed and empty.
                return;
            }
        }
    }

    /// A batch starting with `first`: takes more until it is full or has lingered. Also
    /// says whether the queue is still open.
    async fn fill(&mut self, first: Queued) -> (Prepared, bool) {
        let mut batch = self.pool.take(self.max_events);
        let mut acks = Vec::new();
        let mut add = |queued: Queued| {
            batch.push(&queued.event);
            acks.extend(queued.ack);
        };
        add(first);
        let mut len = 1;
        let deadline = Instant::now() + self.linger;
        let mut open = true;
        let mut lingered = false;
        loop {
            while len < self.max_events {
                match self.receiver.try_recv() {
                    Ok(queued) => add(queued),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
                len += 1;
            }
            if len == self.max_events || !open || lingered {
                break;
            }
            let wanted = self.max_events - len;
            self.wanted.set(wanted);
            // An event offered just before `set` did not see it: look once more.
            if self.receiver.len() < wanted {
                tokio::select! {
                    () = sleep_until(deadline) => lingered = true,
                    () = self.wanted.notified() => {}
                }
            }
            self.wanted.clear();
        }
        let prepared = Prepared {
            batch: Arc::new(batch),
            acks,
            behind: self.receiver.len() > self.watermark,
        };
        (prepared, open)
    }
}
