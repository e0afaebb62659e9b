//! Events: what an open or a click records, and the hand-off from the request path to
//! whatever delivers it.
//!
//! The request path never waits on a sink. A handler builds an [`Event`] and offers it to a
//! bounded in-memory queue with [`EventQueue::offer`], which never awaits: when the queue is
//! full, the event is counted and logged as dropped. One writer drains the other end.
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
//! - [`stats`]: the counters `/metrics` and `/readyz` read.
//! - [`tail`]: a Redis stream consumer (`mailtrack events tail`), as a model for others.
//! - `sample`: made-up events for tests and benchmarks.
//!
//! [`write_json_lines`] is the minimal writer, for tests and tools that want only stdout.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

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
pub mod stats;
pub mod tail;
pub mod writer;

pub use commit::{Commit, CommitError};
pub use event::{Event, EventType, RequestFacts};
pub use pipeline::{EventPipeline, PipelineError, PipelineHandle};
pub use stats::{StatsReader, StatsSnapshot};

/// How many events the queue holds before new ones are dropped. At 1 KiB an event this is
/// 64 MiB at most, and tens of seconds of a large blast's peak: room for the writer to ride
/// out a slow sink until the spool takes over.
pub const DEFAULT_EVENT_QUEUE_CAPACITY: usize = 65_536;

/// The receiving end of the queue, read by the writer (or by tests).
#[derive(Debug)]
pub struct EventReceiver {
    receiver: mpsc::Receiver<Queued>,
}

/// The sending end of the bounded event queue: cheap to clone, one per connection.
#[derive(Debug, Clone)]
pub struct EventQueue {
    sender: mpsc::Sender<Queued>,
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
        (EventQueue { sender }, EventReceiver { receiver })
    }

    /// Offers `event` to the queue without waiting.
    pub fn offer(&self, event: Event) -> Result<(), QueueError> {
        self.try_send(Queued { event, ack: None })
    }

    /// Offers `event` without waiting, and returns a [`Commit`] that resolves once its batch
    /// is committed: acknowledged by the sink, or fsynced to the spool. Awaiting it is what a
    /// `durability = "sync"` response does; dropping it is harmless.
    pub fn offer_durable(&self, event: Event) -> Result<Commit, QueueError> {
        let (ack, commit) = Commit::channel();
        self.try_send(Queued {
            event,
            ack: Some(ack),
        })?;
        Ok(commit)
    }

    fn try_send(&self, queued: Queued) -> Result<(), QueueError> {
        self.sender.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
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

    /// The writer's side: events with their acknowledgements, left to the writer to send.
    pub(crate) fn into_inner(self) -> mpsc::Receiver<Queued> {
        self.receiver
    }
}

/// Writes every event from `receiver` to `out` as one JSON line, until every sender is gone
/// (the server has drained), then flushes. This is `serve`'s writer until the sinks land.
pub async fn write_json_lines<W>(mut receiver: EventReceiver, mut out: W) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin,
{
    let mut written = 0;
    while let Some(event) = receiver.recv().await {
        // Serialising plain strings and maps into a Vec cannot fail.
        let mut line = serde_json::to_vec(&event).expect("an event serialises");
        line.push(b'\n');
        out.write_all(&line).await?;
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
    use crate::link::{decode, Decoded, MessageId};
    use crate::testing::{fixed_ring, fixed_signer, request_target};

    fn event() -> Event {
        let url = fixed_signer().open_url(&MessageId::new("m").unwrap());
        let Decoded::Verified(link) = decode(request_target(&url), &fixed_ring()) else {
            panic!("the fixed signer's link verifies");
        };
        let facts = RequestFacts {
            client_ip: "192.0.2.1".parse().unwrap(),
            user_agent: "",
            tracking_domain: "t",
            method: "GET",
            received: std::time::SystemTime::now(),
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
