//! Group commit: how a `durability = "sync"` response learns that its event is safe.
//!
//! Each durable event travels through the queue with the sending half of a oneshot channel.
//! The writer commits a whole batch at once (one pipelined `XADD`, or one `fsync` of the
//! spool) and then answers every event in it: many responses share one commit, which is what
//! keeps `sync` affordable.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::EncodedEvent;

/// Why a durable event was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The sink was unavailable and the spool was full, so the event was dropped. It is
    /// counted in the pipeline's `dropped` stat and logged. Free disk or raise
    /// `events.spool_max_bytes`, and bring the sink back.
    #[error("the event was dropped: the sink is unavailable and the spool is full")]
    Dropped,
    /// The writer stopped before committing the event: it panicked or the runtime is
    /// shutting down without [`PipelineHandle::shutdown`](super::PipelineHandle::shutdown).
    #[error("the event writer stopped before committing the event")]
    WriterGone,
}

/// What the writer answers a durable event with.
pub(crate) type Ack = oneshot::Sender<Result<(), CommitError>>;

/// An event in the queue, with the acknowledgement its sender waits for, if any.
#[derive(Debug)]
pub(crate) struct Queued {
    /// The event, serialised.
    pub(crate) event: EncodedEvent,
    /// Present when the event was offered with `offer_durable`.
    pub(crate) ack: Option<Ack>,
}

impl Queued {
    /// Takes the event and tells its sender it is committed: for readers that are themselves
    /// the end of the line (tests, `write_json_lines`).
    pub(crate) fn acknowledge(self) -> EncodedEvent {
        if let Some(ack) = self.ack {
            // The sender may have stopped waiting (its response was cancelled): nothing to do.
            let _ = ack.send(Ok(()));
        }
        self.event
    }
}

/// Answers every acknowledgement in `acks` with `result`.
pub(crate) fn answer_all(acks: Vec<Ack>, result: Result<(), CommitError>) {
    for ack in acks {
        // A sender that stopped waiting (its connection closed) needs no answer.
        let _ = ack.send(result);
    }
}

/// Resolves once the event's batch is committed: acknowledged by the sink or fsynced to the
/// spool. Returned by [`EventQueue::offer_durable`](super::EventQueue::offer_durable).
#[derive(Debug)]
#[must_use = "a commit does nothing unless awaited; use `offer` when not waiting"]
pub struct Commit {
    receiver: oneshot::Receiver<Result<(), CommitError>>,
}

impl Commit {
    /// A commit and the acknowledgement that resolves it.
    pub(crate) fn channel() -> (Ack, Commit) {
        let (ack, receiver) = oneshot::channel();
        (ack, Commit { receiver })
    }
}

impl Future for Commit {
    type Output = Result<(), CommitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|answer| match answer {
                Ok(result) => result,
                // The writer dropped the acknowledgement unanswered: it is gone.
                Err(_) => Err(CommitError::WriterGone),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_resolves_with_the_answer_or_reports_the_writer_gone() {
        let (ack, commit) = Commit::channel();
        answer_all(vec![ack], Err(CommitError::Dropped));
        assert_eq!(commit.await, Err(CommitError::Dropped));

        let (ack, commit) = Commit::channel();
        drop(ack);
        assert_eq!(commit.await, Err(CommitError::WriterGone));
    }
}
