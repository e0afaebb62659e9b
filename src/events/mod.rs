//! Events: what an open or a click records, and the hand-off from the request path to
//! whatever delivers it.
//!
//! The request path never waits on a sink. A handler writes an [`EncodedEvent`] and offers it
//! to a bounded in-memory queue with [`EventQueue::offer`], which never awaits: when the queue
//! is full, the event is counted and logged as dropped. One writer drains the other end.
//!
//! # Layout
//!
//! - [`event`]: the SES-shaped event types.
//! - [`commit`]: the group-commit acknowledgement a `sync` response waits for.
//! - [`batch`]: a batch of events as JSON lines, the unit every sink and the spool take.
//! - [`pipeline`]: starts the writer for `[events]`; its handle gives stats and shutdown.
//! - [`batcher`]: the task that takes events off the queue and serialises them into batches.
//! - [`writer`]: the one task that commits batches to the sink, or to the spool.
//! - [`sink`]: the JSONL file, the Redis stream (or Cluster) and standard output.
//! - [`spool`]: the append-only, checksummed disk spool and its in-order replay.
//! - `stamp`: an event's id (UUIDv7) and timestamp.
//! - [`stats`]: the counters `/metrics` and `/readyz` read.
//! - [`tail`]: a Redis stream consumer (`mailtrack events tail`), as a model for others.
//! - `sample`: made-up events for tests and benchmarks.
//!
//! [`write_json_lines`] is the minimal writer, for tests and tools that want only stdout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use commit::Queued;

pub mod batch;
pub mod batcher;
pub mod commit;
pub mod event;
pub mod pipeline;
#[doc(hidden)]
pub mod sample;
pub mod sink;
pub mod spool;
mod stamp;
pub mod stats;
pub mod tail;
pub mod writer;

pub use commit::{Commit, CommitError};
pub use event::{
    EncodedEvent, Event, EventType, EventVerdict, RequestFacts, Subscription, SubscriptionSource,
    VerdictFacts,
};
pub use pipeline::{EventPipeline, PipelineError, PipelineHandle};
pub use stats::{StatsReader, StatsSnapshot};

/// How many events the queue holds before new ones are dropped: see
/// [`crate::config::events::DEFAULT_QUEUE_CAPACITY`], where the reason is.
pub const DEFAULT_EVENT_QUEUE_CAPACITY: usize = crate::config::events::DEFAULT_QUEUE_CAPACITY;

/// The receiving end of the queue, read by the writer (or by tests).
#[derive(Debug)]
pub struct EventReceiver {
    receiver: mpsc::Receiver<Queued>,
    wanted: Arc<Wanted>,
}

/// The sending end of the bounded event queue: cheap to clone, one per connection.
#[derive(Debug, Clone)]
pub struct EventQueue {
    sender: mpsc::Sender<Queued>,
    wanted: Arc<Wanted>,
}

/// How the batcher asks to be woken once enough events wait to fill its batch, rather than
/// by every event.
///
/// Under load the batcher would otherwise run after every request (tokio runs a task woken
/// by the running one next), to take one event and wait again: a tenth of a click's cost.
/// While a batch lingers the batcher says how many more it wants; an offer that brings the
/// queue to that many wakes it, and otherwise the linger deadline does.
#[derive(Debug)]
pub(crate) struct Wanted {
    /// How many queued events would fill the batch; `usize::MAX` when the batcher is not
    /// lingering (it then waits on the queue itself, or is busy).
    events: AtomicUsize,
    notify: Notify,
}

impl Wanted {
    fn new() -> Wanted {
        Wanted {
            events: AtomicUsize::new(usize::MAX),
            notify: Notify::new(),
        }
    }

    /// Asks to be woken once `events` are queued. Wait on [`Wanted::notified`].
    pub(crate) fn set(&self, events: usize) {
        self.events.store(events, Ordering::SeqCst);
    }

    /// No more wake-ups until the next [`Wanted::set`].
    pub(crate) fn clear(&self) {
        self.events.store(usize::MAX, Ordering::SeqCst);
    }

    /// Resolves once an offer found the queue as deep as asked.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    fn offered(&self, depth: usize) {
        if depth >= self.events.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue is full: the writer is behind. The event is dropped and counted.
    #[error("the event queue is full; the event was dropped")]
    Full,
    /// The writer has stopped: only during shutdown, after the receiver was dropped.
    #[error("the event writer has stopped; the event was dropped")]
    Closed,
}

impl EventQueue {
    /// A queue holding at most `capacity` events, and its receiving end.
    pub fn bounded(capacity: usize) -> (EventQueue, EventReceiver) {
        let (sender, receiver) = mpsc::channel(capacity);
        let wanted = Arc::new(Wanted::new());
        let queue = EventQueue {
            sender,
            wanted: Arc::clone(&wanted),
        };
        (queue, EventReceiver { receiver, wanted })
    }

    /// Offers `event` to the queue without waiting.
    pub fn offer(&self, event: impl Into<EncodedEvent>) -> Result<(), QueueError> {
        self.try_send(Queued {
            event: event.into(),
            ack: None,
        })
    }

    /// Offers `event` without waiting, and returns a [`Commit`] that resolves once its batch
    /// is committed: acknowledged by the sink, or fsynced to the spool. Awaiting it is what a
    /// `durability = "sync"` response does; dropping it is harmless.
    pub fn offer_durable(&self, event: impl Into<EncodedEvent>) -> Result<Commit, QueueError> {
        let (ack, commit) = Commit::channel();
        self.try_send(Queued {
            event: event.into(),
            ack: Some(ack),
        })?;
        Ok(commit)
    }

    fn try_send(&self, queued: Queued) -> Result<(), QueueError> {
        self.sender.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })?;
        self.wanted.offered(self.depth());
        Ok(())
    }

    /// How many events wait for the writer.
    pub fn depth(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Whether the writer still takes events: what `/readyz` reports until the sinks land.
    pub fn is_accepting(&self) -> bool {
        !self.sender.is_closed() && self.sender.capacity() > 0
    }
}

impl EventReceiver {
    /// The next event, or `None` once every [`EventQueue`] is gone (or the receiver was
    /// closed) and the queue is empty. Its commit, if any, is acknowledged as it is taken:
    /// callers of this method are tests and tools, not the durable writer.
    pub async fn recv(&mut self) -> Option<Event> {
        Some(self.recv_encoded().await?.to_event())
    }

    /// [`EventReceiver::recv`], as the JSON the event was offered as.
    pub async fn recv_encoded(&mut self) -> Option<EncodedEvent> {
        let queued = self.receiver.recv().await?;
        Some(queued.acknowledge())
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// The batcher's side: events with their acknowledgements, left to the writer to send,
    /// and the batcher's wake-up.
    pub(crate) fn into_inner(self) -> (mpsc::Receiver<Queued>, Arc<Wanted>) {
        (self.receiver, self.wanted)
    }
}

/// Writes every event from `receiver` to `out` as one JSON line, until every sender is gone
/// (the server has drained), then flushes. This is `serve`'s writer until the sinks land.
pub async fn write_json_lines<W>(mut receiver: EventReceiver, mut out: W) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin,
{
    let mut written = 0;
    while let Some(event) = receiver.recv_encoded().await {
        out.write_all(event.json()).await?;
        out.write_all(b"\n").await?;
        written += 1;
        if receiver.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{decode, Decoded};
    use crate::testing::{fixed_ring, fixed_signer, request_target};

    fn event() -> Event {
        let url = fixed_signer().open_url(&crate::testing::stamp_v2("m", ""));
        let Decoded::Verified(link) = decode(request_target(&url), &fixed_ring()) else {
            panic!("the fixed signer's link verifies");
        };
        let facts = RequestFacts {
            client_ip: "192.0.2.1".parse().unwrap(),
            user_agent: "",
            tracking_domain: "t",
            method: "GET",
            received: std::time::SystemTime::now(),
            verdict: None,
            seconds_since_send: None,
        };
        Event::new(&link, &facts)
    }

    #[tokio::test]
    async fn a_full_queue_refuses_without_waiting_and_lines_are_written() {
        let (queue, receiver) = EventQueue::bounded(1);
        assert!(queue.is_accepting());
        queue.offer(event()).unwrap();
        assert_eq!(queue.depth(), 1);
        assert_eq!(queue.offer(event()), Err(QueueError::Full));
        drop(queue);
        let mut out = Vec::new();
        assert_eq!(write_json_lines(receiver, &mut out).await.unwrap(), 1);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("{\"eventType\":\"Open\""), "{line}");
        assert!(line.ends_with("}\n"));
    }
}
