//! The pipeline's counters: what `/metrics` exports and what `/readyz` decides on.
//!
//! The writer updates them with relaxed atomics (each is an independent count, read for
//! display); readers take a [`StatsSnapshot`] at scrape time, as the queue depth is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The counters, shared by the writer and every handle.
#[derive(Debug, Default)]
pub(crate) struct PipelineStats {
    delivered: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
    sink_errors: AtomicU64,
    spool_bytes: AtomicU64,
    spool_corrupt_bytes: AtomicU64,
    sink_down: AtomicBool,
    spool_full: AtomicBool,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events waiting in the in-memory queue.
    pub queue_depth: usize,
    /// Events the sink acknowledged straight from the queue.
    pub delivered: u64,
    /// Events written to the spool because the sink was down, slow or behind.
    pub spooled: u64,
    /// Events the sink acknowledged from the spool.
    pub replayed: u64,
    /// Events lost: the sink was unavailable and the spool was full. Each is also logged.
    pub dropped: u64,
    /// Sink writes that failed or timed out (each batch counts once per attempt).
    pub sink_errors: u64,
    /// Bytes the spool holds that are not yet replayed.
    pub spool_bytes: u64,
    /// Spool bytes skipped at replay because a frame was torn or its checksum was wrong.
    pub spool_corrupt_bytes: u64,
    /// Whether the last sink write succeeded (or none failed yet).
    pub sink_up: bool,
    /// Whether the last spool write was refused for lack of room.
    pub spool_full: bool,
}

/// A cheap, cloneable view of the counters, for the server's `/metrics` and `/readyz`
/// handlers while `main` keeps the [`PipelineHandle`](super::PipelineHandle) for shutdown.
#[derive(Debug, Clone)]
pub struct StatsReader {
    stats: Arc<PipelineStats>,
    queue: super::EventQueue,
}

impl StatsReader {
    pub(crate) fn new(stats: Arc<PipelineStats>, queue: super::EventQueue) -> StatsReader {
        StatsReader { stats, queue }
    }

    /// The counters now, with the queue's depth.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot(self.queue.depth())
    }

    /// Whether `/readyz` should say ready: the queue takes events and
    /// [`StatsSnapshot::is_ready`].
    pub fn is_ready(&self) -> bool {
        self.queue.is_accepting() && self.snapshot().is_ready()
    }
}

impl StatsSnapshot {
    /// Whether the pipeline can take events without losing them: the sink is up, or the
    /// spool still has room. This is what `/readyz` should report.
    pub fn is_ready(&self) -> bool {
        self.sink_up || !self.spool_full
    }
}

impl PipelineStats {
    /// New counters, shared.
    pub(crate) fn shared() -> Arc<PipelineStats> {
        Arc::default()
    }

    pub(crate) fn add_delivered(&self, events: usize) {
        self.delivered.fetch_add(events as u64, Relaxed);
    }

    pub(crate) fn add_spooled(&self, events: usize) {
        self.spooled.fetch_add(events as u64, Relaxed);
    }

    pub(crate) fn add_replayed(&self, events: usize) {
        self.replayed.fetch_add(events as u64, Relaxed);
    }

    pub(crate) fn add_dropped(&self, events: usize) {
        self.dropped.fetch_add(events as u64, Relaxed);
    }

    pub(crate) fn add_corrupt(&self, bytes: u64) {
        self.spool_corrupt_bytes.fetch_add(bytes, Relaxed);
    }

    /// Records a sink failure; the sink counts as down until [`PipelineStats::sink_ok`].
    pub(crate) fn sink_failed(&self) {
        self.sink_errors.fetch_add(1, Relaxed);
        self.sink_down.store(true, Relaxed);
    }

    pub(crate) fn sink_ok(&self) {
        self.sink_down.store(false, Relaxed);
    }

    pub(crate) fn set_spool(&self, bytes: u64, full: bool) {
        self.spool_bytes.store(bytes, Relaxed);
        self.spool_full.store(full, Relaxed);
    }

    /// The counters now, with the queue depth the caller read.
    pub(crate) fn snapshot(&self, queue_depth: usize) -> StatsSnapshot {
        StatsSnapshot {
            queue_depth,
            delivered: self.delivered.load(Relaxed),
            spooled: self.spooled.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            sink_errors: self.sink_errors.load(Relaxed),
            spool_bytes: self.spool_bytes.load(Relaxed),
            spool_corrupt_bytes: self.spool_corrupt_bytes.load(Relaxed),
            sink_up: !self.sink_down.load(Relaxed),
            spool_full: self.spool_full.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_while_the_sink_is_up_or_the_spool_has_room() {
        let stats = PipelineStats::shared();
        assert!(stats.snapshot(0).is_ready());
        stats.sink_failed();
        assert!(stats.snapshot(0).is_ready());
        stats.set_spool(10, true);
        let snapshot = stats.snapshot(3);
        assert!(!snapshot.is_ready());
        assert_eq!((snapshot.queue_depth, snapshot.sink_errors), (3, 1));
        stats.sink_ok();
        assert!(stats.snapshot(0).is_ready());
    }
}
