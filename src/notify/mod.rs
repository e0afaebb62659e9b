//! `mailtrack notify`: every event of the events log delivered to each endpoint whose rule
//! wants it, at least once, each endpoint on its own.
//!
//! Two logs feed it (the Redis stream, the JSONL file) and three receivers take from it (Standard
//! Webhooks batches, SNS envelopes, Redis streams). The pieces:
//!
//! # Layout
//!
//! - [`rule`]: which events an endpoint wants, as a list of conditions that later conditions
//!   (the machine verdict) join without a redesign.
//! - [`signature`]: Standard Webhooks signing over the exact bytes sent, and the stable
//!   `webhook-id` of a batch.
//! - [`schedule`]: the retry schedule with its jitter.
//! - [`http`]: one signed POST an attempt, what its answer means, and the receiver address
//!   check (no private address unless allowed, at start-up and at every connect).
//! - [`redis_log`]: the events stream as an endpoint's consumer group, and its retry set and
//!   dead letters, in Redis.
//! - [`resp`]: the stream's reads, `XREADGROUP`, over connections of their own, decoded by
//!   `redis-protocol` in place: most of notify's bytes, which redis-rs's parser spent a
//!   quarter of its CPU on.
//! - [`file_log`]: the JSONL events file followed through rotation from a checkpoint per
//!   endpoint, with local retry and dead-letter files; one process per state folder.
//! - [`store`]: the one interface the worker delivers through, over either log.
//! - [`metrics`]: every endpoint's counters, for notify's admin listener.
//! - [`circuit`]: the breaker that probes a failing receiver rather than flooding it.
//! - [`sns`]: `format = "sns"`: SNS envelopes, after a `SubscriptionConfirmation` the
//!   receiver confirms on notify's listener.
//! - [`worker`]: one HTTP endpoint's delivery loop, over either log.
//! - [`stream_worker`]: a stream endpoint: a filtered copy of the events in another stream.

pub mod circuit;
pub mod file_log;
pub mod http;
pub mod metrics;
pub mod redis_log;
pub mod resp;
pub mod rule;
pub mod schedule;
pub mod signature;
pub mod sns;
pub mod store;
pub mod stream_worker;
pub mod worker;

pub use rule::{EventFacts, Rule};
pub use schedule::RetrySchedule;
pub use signature::{sign, webhook_id};
