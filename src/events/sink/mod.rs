//! Where batches are delivered: `[events] sink = "file" | "redis" | "stdout"`.
//!
//! A sink takes a whole [`Batch`] and answers once it is safe there: fsynced for the file,
//! acknowledged by Redis for the stream, flushed for stdout. It never retries on its own: on
//! an error the writer spools the batch and replays it later, so a failed write costs one
//! attempt, not a stall.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use super::batch::Batch;
use crate::config::{EventsConfig, SinkKind};

pub mod file;
pub mod redis;
pub mod stdout;

pub use file::FileSink;
pub use redis::RedisSink;
pub use stdout::StdoutSink;

/// Why a batch did not reach the sink. The writer spools it and retries later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The events file could not be written, synced or rotated (disk full, permissions).
    #[error("events file {}: {source}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Redis refused the batch or could not be reached. Check `events.redis_url` and that the
    /// server (or cluster) is up.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Standard output could not be written (the reader went away).
    #[error("stdout: {0}")]
    Stdout(std::io::Error),
    /// The write took longer than `events.sink_timeout_ms`: the sink is slow or unreachable.
    #[error("the sink did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// A batch on its way to the sink: resolves once the sink has it, or failed.
pub type Delivery = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send>>;

/// How many batches the writer keeps in flight to Redis: two, so that Redis appends one
/// batch while the next is sent, instead of waiting idle for each round trip. With one,
/// the pipeline reached 0.69 of `redis-benchmark` doing the same `XADD`s (`cargo bench
/// --bench events`).
pub const REDIS_BATCHES_IN_FLIGHT: usize = 2;

/// The configured sink.
#[derive(Debug)]
pub enum Sink {
    /// A JSONL file, written off the async threads.
    File(Arc<Mutex<FileSink>>),
    /// A Redis stream (boxed: its clients are large, and there is one sink per process).
    Redis(Box<RedisSink>),
    /// Standard output.
    Stdout(StdoutSink),
}

impl Sink {
    /// The sink `config` names. Nothing is connected yet: an unreachable Redis is found at the
    /// first write and spooled around, never fatal.
    pub fn open(config: &EventsConfig) -> Result<Sink, SinkError> {
        Ok(match config.sink {
            SinkKind::File => Sink::File(Arc::new(Mutex::new(FileSink::open(
                &config.file,
                config.file_max_bytes,
                config.file_retention,
            )?))),
            SinkKind::Redis => Sink::Redis(Box::new(RedisSink::new(config)?)),
            SinkKind::Stdout => Sink::Stdout(StdoutSink::new()),
        })
    }

    /// How many batches may be in flight at once. A file is written by one blocking thread
    /// at a time and standard output must not interleave, so those take one.
    pub fn max_in_flight(&self) -> usize {
        match self {
            Sink::Redis(_) => REDIS_BATCHES_IN_FLIGHT,
            Sink::File(_) | Sink::Stdout(_) => 1,
        }
    }

    /// Starts delivering `batch`; the returned wait resolves once it is safe in the sink.
    /// Waits started one after the other are delivered in that order.
    pub async fn send(&mut self, batch: &Arc<Batch>) -> Result<Delivery, SinkError> {
        Ok(match self {
            Sink::File(file) => {
                let (file, batch) = (Arc::clone(file), Arc::clone(batch));
                Box::pin(
                    async move { off_thread(&file, move |file| file.write(batch.jsonl())).await },
                )
            }
            Sink::Redis(redis) => redis.send(batch).await?,
            Sink::Stdout(stdout) => stdout.send(batch),
        })
    }

    /// To be called after a delivery failed, so the sink can start afresh.
    pub fn failed(&mut self) {
        if let Sink::Redis(redis) = self {
            redis.failed();
        }
    }

    /// Delivers `batch`, returning once it is safe in the sink: [`Sink::send`], waited for.
    pub async fn deliver(&mut self, batch: &Arc<Batch>) -> Result<(), SinkError> {
        let result = self.send(batch).await?.await;
        if result.is_err() {
            self.failed();
        }
        result
    }
}

/// Runs `work` on the value behind `shared` on tokio's blocking threads, so that a slow disk
/// (an `fsync` takes milliseconds) never holds up the async threads serving requests.
///
/// The mutex is only ever taken here, by one task at a time: it is never contended.
pub(crate) async fn off_thread<T, R>(
    shared: &Arc<Mutex<T>>,
    work: impl FnOnce(&mut T) -> R + Send + 'static,
) -> R
where
    T: Send + 'static,
    R: Send + 'static,
{
    let shared = Arc::clone(shared);
    let task = tokio::task::spawn_blocking(move || {
        // A panic in an earlier call left the value as it was; carry on with it.
        let mut value = shared.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut value)
    });
    match task.await {
        Ok(result) => result,
        // Blocking tasks are never cancelled, so the only error is a panic: pass it on.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
