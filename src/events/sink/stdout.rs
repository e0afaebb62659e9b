//! `sink = "stdout"`: JSON lines on standard output, for containers whose log collector is
//! the pipeline.

use tokio::io::{AsyncWriteExt, Stdout};

use super::SinkError;
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
}

impl Default for StdoutSink {
    fn default() -> Self {
        StdoutSink::new()
    }
}
