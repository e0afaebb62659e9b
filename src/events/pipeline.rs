//! Starting the events pipeline for `[events]`, and the handle `serve` keeps to watch it and
//! to stop it.
//!
//! ```no_run
//! # async fn serve(config: mailtrack::Config) -> Result<(), mailtrack::events::PipelineError> {
//! use mailtrack::events::EventPipeline;
//!
//! let (queue, pipeline) = EventPipeline::start(&config.events)?;
//! // Request handlers get clones of `queue` and call `queue.offer(event)` (or, with
//! // `durability = "sync"`, await `queue.offer_durable(event)?`).
//! // `/metrics` and `/readyz` read `pipeline.stats_reader()` (cloneable) or `pipeline.stats()`.
//! // After the server has drained its connections:
//! let last = pipeline.shutdown().await;
//! assert_eq!(last.queue_depth, 0);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::batcher::{BatchPool, Batcher, DEFAULT_BATCHES_AHEAD};
use super::sink::{Sink, SinkError};
use super::spool::{Spool, SpoolError, DEFAULT_SEGMENT_BYTES};
use super::stats::{PipelineStats, StatsReader, StatsSnapshot};
use super::writer::Writer;
use super::EventQueue;
use crate::config::{Durability, EventsConfig};

/// Starts the pipeline: see [`EventPipeline::start`].
#[derive(Debug)]
pub struct EventPipeline;

/// Why the pipeline could not start. An unreachable Redis is not one of them: that is
/// spooled around and shows in the stats.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The spool folder could not be created or read (`events.spool_dir`).
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The sink could not be opened: the events file or its folder (`events.file`).
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What `serve` keeps of a running pipeline: stats for `/metrics` and `/readyz`, and
/// shutdown. Dropping it without [`PipelineHandle::shutdown`] also closes the queue, but
/// nothing then waits for the writer to finish.
#[derive(Debug)]
pub struct PipelineHandle {
    queue: EventQueue,
    stats: Arc<PipelineStats>,
    shutdown: oneshot::Sender<()>,
    writer: JoinHandle<()>,
    durability: Durability,
}

impl EventPipeline {
    /// Opens the spool and the sink for `config`, spawns the writer on the current tokio
    /// runtime, and returns the queue that request handlers offer events to.
    ///
    /// Whatever an earlier run left in the spool is replayed first, once the sink answers.
    pub fn start(config: &EventsConfig) -> Result<(EventQueue, PipelineHandle), PipelineError> {
        let spool = Spool::open(
            &config.spool_dir,
            config.spool_max_bytes,
            DEFAULT_SEGMENT_BYTES,
        )?;
        let sink = Sink::open(config)?;
        let (queue, receiver) = EventQueue::bounded(config.queue_capacity);
        let (shutdown, shutdown_signal) = oneshot::channel();
        let (batches, prepared) = mpsc::channel(DEFAULT_BATCHES_AHEAD);
        let stats = PipelineStats::shared();
        let pool = BatchPool::default();
        let (receiver, wanted) = receiver.into_inner();
        let batcher = Batcher {
            receiver,
            wanted,
            shutdown: shutdown_signal,
            batches,
            pool: pool.clone(),
            max_events: config.batch_max_events,
            linger: config.batch_linger,
            watermark: config.spool_watermark,
        };
        tokio::spawn(batcher.run());
        let writer = Writer::new(prepared, pool, sink, spool, Arc::clone(&stats), config);
        let writer = tokio::spawn(writer.run());
        let handle = PipelineHandle {
            queue: queue.clone(),
            stats,
            shutdown,
            writer,
            durability: config.durability,
        };
        Ok((queue, handle))
    }
}

impl EventPipeline {
    /// Replays what the spool holds into the sink and stops, for `mailtrack events replay`
    /// (after a crash, with `serve` stopped: a process holds the spool folder locked).
    /// Returns the final counters: `spool_bytes` is 0 when everything was delivered.
    pub async fn replay_spool(config: &EventsConfig) -> Result<StatsSnapshot, PipelineError> {
        let (queue, pipeline) = EventPipeline::start(config)?;
        drop(queue);
        Ok(pipeline.shutdown().await)
    }
}

impl PipelineHandle {
    /// The counters now, with the queue's depth.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot(self.queue.depth())
    }

    /// A cloneable view of the counters, for request handlers (`/metrics`, `/readyz`).
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader::new(Arc::clone(&self.stats), self.queue.clone())
    }

    /// Whether `/readyz` should say ready: see [`StatsReader::is_ready`].
    pub fn is_ready(&self) -> bool {
        self.stats_reader().is_ready()
    }

    /// Whether responses should await [`EventQueue::offer_durable`] (`durability = "sync"`).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Closes the queue (offers then fail with `Closed`), writes everything queued to the
    /// sink or the spool, replays the spool while the sink takes it (for at most
    /// [`DEFAULT_SHUTDOWN_REPLAY`](super::writer::DEFAULT_SHUTDOWN_REPLAY)), and returns the
    /// final counters. Call it after the server has drained its requests.
    pub async fn shutdown(self) -> StatsSnapshot {
        // The writer may have stopped already (every queue handle dropped): nothing to tell.
        let _ = self.shutdown.send(());
        if let Err(e) = self.writer.await {
            if e.is_panic() {
                tracing::error!(
                    "the event writer panicked; spooled events are replayed at the next start"
                );
            }
        }
        self.stats.snapshot(self.queue.depth())
    }
}
