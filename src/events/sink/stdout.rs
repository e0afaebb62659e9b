//! `sink = "stdout"`: JSON lines on standard output, for containers whose log collector is
//! the pipeline.

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, Stdout};

use super::{Delivery, SinkError};
use crate::events::batch::Batch;

/// Standard output.
#[derive(Debug)]
pub struct StdoutSink {
    out: Stdout,
}

impl StdoutSink {
    /// The process's standard output.
    pub fn new() -> StdoutSink {
        StdoutSink {
            out: tokio::io::stdout(),
        }
    }

    /// Writes the batch's lines and flushes them.
    pub async fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.out
            .write_all(batch.jsonl())
            .await
            .map_err(SinkError::Stdout)?;
        self.out.flush().await.map_err(SinkError::Stdout)
    }

    /// [`StdoutSink::deliver`], as a wait that borrows nothing. The writer keeps one such
    /// write in flight at a time, so lines never interleave.
    pub fn send(&self, batch: &Arc<Batch>) -> Delivery {
        let batch = Arc::clone(batch);
        Box::pin(async move { StdoutSink::new().deliver(&batch).await })
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        StdoutSink::new()
    }
}
