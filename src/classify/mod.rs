//! People, proxies and machines: every verified open and click is labelled, when its event is
//! made, with who most likely made it, how sure that is, and the signals that say so.
//!
//! Labels never block and never wait: every request gets the answer it got without them, and
//! no event is held back for a later signal (no waiting periods, no honeypot links).
//!
//! # Layout
//!
//! - [`verdict`]: the verdict's classes, certainty and signals (its JSON shape in events).
//! - [`facts`]: what the classifier reads of a request.
//! - [`user_agents`]: user-agent patterns, shipped as data (`user_agents.toml`) with their
//!   sources.
//! - [`networks`]: network lists as prefix tables: Microsoft EOP built in, Apple's egress
//!   CSV, the user's own files.
//! - [`reload`]: the lists in use; reloading on SIGHUP and when a file changes.
//! - [`burst`]: several links of one message clicked at once from one network.
//! - [`classifier`]: the signals together, and the verdict.
//!
//! `docs/machines.md` lists every signal, its source, and what it gets wrong.

use std::sync::Arc;
use std::time::Duration;

pub mod burst;
pub mod classifier;
pub mod facts;
pub mod networks;
pub mod reload;
pub mod user_agents;
pub mod verdict;

pub use classifier::Classifier;
pub use facts::{is_prefetch, RequestFacts, PREFETCH_HEADERS};
pub use networks::{ListError, NetworkList};
pub use verdict::{Class, Signal, Verdict};

pub use crate::config::Certainty;

/// Checks the list files every `interval` and reloads those that changed, for as long as
/// the process runs; an `interval` of zero returns at once.
pub async fn watch_lists(classifier: Arc<Classifier>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once; the lists were just loaded.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let classifier = Arc::clone(&classifier);
        // Reading a 300,000-line list takes a while: not on a worker thread. Should the
        // blocking pool be gone (shutdown), there is nothing left to reload for.
        if tokio::task::spawn_blocking(move || classifier.reload(false))
            .await
            .is_err()
        {
            return;
        }
    }
}
