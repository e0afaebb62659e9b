//! The batcher: takes events off the queue and puts them into batches, one step ahead of the
//! [writer](super::writer).
//!
//! A batch closes when it holds `batch_max_events` or when `batch_linger` has passed since
//! its first event. When more events than that are already waiting, the writer is behind,
//! and the batch takes up to [`BACKLOG_BATCH_FACTOR`] times as many: one commit (an `fsync`,
//! a round trip) then carries more events, so the writer catches up however slow each
//! commit is, instead of the queue filling behind a fixed batch size.
//!
//! While a batch lingers, the batcher sleeps until the queue holds enough to fill it (see
//! [`Wanted`]) rather than waking for every event. It runs in its own task: while the writer
//! waits for the sink to acknowledge one batch, the next is being made. The hand-off channel
//! holds one batch, so the batcher is never more than a batch or two ahead and the writer
//! still commits in queue order.
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

/// How many times `batch_max_events` a batch may hold when a backlog waits behind it.
///
/// With a fixed 512 events per `fsync`, a file sink whose `fsync` took 5 ms could take no
/// more than 100,000 events a second: past that the queue filled and clicks' events were
/// dropped (`benches/compare.sh` at 110,000 clicks a second). Eight times is 4,096 events,
/// about 2 MB: still one quick write or one pipelined round trip.
pub const BACKLOG_BATCH_FACTOR: usize = 8;

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
        let mut cap = self.max_events;
        let backlog_cap = self.max_events * BACKLOG_BATCH_FACTOR;
        loop {
            while len < cap {
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
            if len == cap && cap < backlog_cap && self.receiver.len() >= self.max_events {
                // Behind: this batch takes a bigger share of the backlog.
                cap = backlog_cap;
                continue;
            }
            if len >= self.max_events || !open || lingered {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::sample::sample_event;
    use crate::events::EventQueue;

    #[tokio::test]
    async fn a_backlog_goes_in_bigger_batches_and_a_lone_event_after_its_linger() {
        let (queue, receiver) = EventQueue::bounded(1000);
        let (receiver, wanted) = receiver.into_inner();
        let (_stop, shutdown) = oneshot::channel();
        let (batches, mut prepared) = mpsc::channel(1);
        let batcher = Batcher {
            receiver,
            wanted,
            shutdown,
            batches,
            pool: BatchPool::default(),
            max_events: 8,
            linger: Duration::from_millis(5),
            watermark: 1000,
        };
        for i in 0..100 {
            queue.offer(sample_event(&format!("m-{i}"))).unwrap();
        }
        tokio::spawn(batcher.run());
        let sizes = [
            prepared.recv().await.unwrap().batch.len(),
            prepared.recv().await.unwrap().batch.len(),
        ];
        assert_eq!(
            sizes,
            [8 * BACKLOG_BATCH_FACTOR, 100 - 8 * BACKLOG_BATCH_FACTOR]
        );

        queue.offer(sample_event("alone")).unwrap();
        let lone = prepared.recv().await.unwrap();
        assert_eq!(lone.batch.len(), 1);
        assert_eq!(lone.batch.entries().next().unwrap().message_id, "alone");
    }
}
