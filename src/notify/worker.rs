//! One HTTP endpoint's delivery loop over its events log: the Redis stream or the JSONL file,
//! through [`Store`].
//!
//! Each turn the loop, while the circuit and the rate limit let it and fewer than
//! `concurrency` attempts are in flight:
//!
//! 1. takes due retries from the retry set and attempts them (looking at most every
//!    [`DUE_EVERY`] while there are none);
//! 2. every so often claims entries a dead process left pending;
//! 3. reads new entries (blocking up to the batch's linger; while a backlog lasts, the next
//!    reads are already under way, see [`ReadAhead`]), acknowledges those the rule does not
//!    want, and gathers the rest into a batch;
//! 4. starts an attempt for the batch once it holds `batch_size` events or its first event
//!    has waited `linger`.
//!
//! Each attempt records its own outcome in the store before it ends (see [`redis_log`] and
//! [`file_log`]): a
//! delivered batch's entries are acknowledged; a failed one goes to the retry set, due after
//! the schedule's next wait (or `Retry-After`), and its entries are acknowledged with it; one
//! whose schedule ran out becomes a dead letter. A 410 stops the endpoint and leaves its
//! events where they are, for `notify recover`.
//!
//! An SNS endpoint (`format = "sns"`) delivers nothing, not even its retries, until its
//! subscription is confirmed ([`SnsGate`]); each attempt's body and headers come from one
//! place, [`payload`].
//!
//! [`redis_log`]: super::redis_log
//! [`file_log`]: super::file_log

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use url::Url;

use super::circuit::{Admit, Circuit};
use super::http::{Attempt, Verdict, WebhookClient};
use super::metrics::EndpointMetrics;
use super::redis_log::{entry_ms, now_ms, Delivery, LogEntry};
use super::rule::{EventFacts, Rule};
use super::schedule::RetrySchedule;
use super::signature::webhook_id;
use super::sns::{self, SnsGate, SnsTopic};
use super::store::{Store, StoreError};
use crate::config::notify::{HttpReceiver, WebhookSecret};

/// How often entries left pending by other consumers are looked for, at most: as often as
/// they may become claimable, when `claim_idle` is shorter.
pub const CLAIM_EVERY: Duration = Duration::from_secs(15);

/// How often the endpoint's lag behind the log is measured, for the metrics.
pub const LAG_EVERY: Duration = Duration::from_secs(5);

/// How often the retry set is looked at for due deliveries, while it has none: a look is a
/// round trip the loop waits on, and a turn of a backlog lasts far less than this; a retry
/// is due seconds after its failure at the soonest, so this delays none much.
pub const DUE_EVERY: Duration = Duration::from_millis(100);

/// How many reads run ahead while a backlog lasts: one keeps Redis busy while this process
/// parses the last reply, a second while the first's reply comes back.
const READS_AHEAD: usize = 2;

/// How long the loop rests when nothing may start (circuit open, all slots busy).
const IDLE_TURN: Duration = Duration::from_millis(50);

/// One HTTP endpoint, ready to run.
#[derive(Debug)]
pub struct HttpWorker {
    name: String,
    rule: Rule,
    receiver: HttpReceiver,
    client: WebhookClient,
    schedule: RetrySchedule,
    store: Store,
    metrics: EndpointMetrics,
    /// For an SNS endpoint: its subscription, which must be confirmed before anything goes.
    gate: Option<SnsGate>,
    /// The reads issued before the last one's entries were gathered, oldest first.
    ahead: VecDeque<ReadAhead>,
}

/// A read started before the entries of the last one were parsed and matched: while a
/// backlog lasts, the log finds the next entries while this process works on the last ones,
/// rather than each waiting on the other in turn (the loop left a third of its core idle
/// so, in `benches/notify.sh`). [`READS_AHEAD`] at most, each asking for a whole turn's
/// batches, and only after a full read, so that a quiet log is read as before.
#[derive(Debug)]
struct ReadAhead {
    /// How many entries it asked for.
    count: usize,
    read: tokio::task::JoinHandle<Result<Vec<LogEntry>, StoreError>>,
}

/// What an attempt's body is made as.
#[derive(Debug, Clone)]
pub enum Format {
    /// A JSON array of the events (Standard Webhooks).
    Standard,
    /// Each event in an SNS `Notification` envelope of this subscription.
    Sns(std::sync::Arc<SnsTopic>),
}

/// The body and the further headers of an attempt of `delivery` in `format`: the one place
/// that decides what goes on the wire.
pub fn payload(
    format: &Format,
    delivery: &Delivery,
) -> (bytes::Bytes, Vec<(&'static str, String)>) {
    match format {
        Format::Standard => (delivery.body(), Vec::new()),
        Format::Sns(topic) => {
            let envelope = sns::notification(topic, delivery);
            (envelope.body, envelope.headers)
        }
    }
}

/// Where an attempt's delivery came from, which decides how its outcome is recorded.
#[derive(Debug, Clone)]
enum Source {
    /// Fresh from the log: these entries are acknowledged once the delivery is settled.
    Log(Vec<String>),
    /// From the retry set.
    Retry,
}

/// What an attempt came to, as the loop needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Delivered,
    Failed,
    Gone,
}

impl HttpWorker {
    /// A worker for endpoint `name` over `store` (a Redis [`EndpointStore`] or a
    /// [`FileStore`]), counting into `metrics`.
    ///
    /// [`EndpointStore`]: super::redis_log::EndpointStore
    /// [`FileStore`]: super::file_log::FileStore
    pub fn new(
        name: String,
        rule: Rule,
        receiver: HttpReceiver,
        client: WebhookClient,
        store: impl Into<Store>,
        metrics: EndpointMetrics,
    ) -> HttpWorker {
        let store = store.into();
        let schedule = RetrySchedule::new(receiver.retry_schedule.clone());
        HttpWorker {
            name,
            rule,
            receiver,
            client,
            schedule,
            store,
            metrics,
            gate: None,
            ahead: VecDeque::new(),
        }
    }

    /// The worker of an SNS endpoint: nothing is delivered until `gate` opens, and every
    /// event goes in an envelope of the gate's subscription.
    pub fn with_sns(mut self, gate: SnsGate) -> HttpWorker {
        self.gate = Some(gate);
        self
    }

    /// Delivers until `shutdown` turns true, then lets the attempts in flight finish.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut in_flight: JoinSet<Settled> = JoinSet::new();
        let mut circuit = Circuit::within(&self.receiver.retry_schedule);
        let mut batch = Batch::default();
        let mut last = Last::default();
        let mut next_allowed = Instant::now();
        let mut last_lag: Option<Instant> = None;
        while !*shutdown.borrow() {
            if last_lag.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
                last_lag = Some(Instant::now());
                self.measure_lag().await;
            }
            while let Some(done) = in_flight.try_join_next() {
                self.settle(done, &mut circuit);
            }
            if self.metrics.disabled.get() == 1 {
                tracing::error!(endpoint = %self.name, "endpoint disabled: the receiver answered 410 Gone; its events stay in the log for notify recover");
                break;
            }
            if let Some(gate) = &mut self.gate {
                let secrets = &self.receiver.secrets;
                let open = tokio::select! {
                    open = gate.open(&self.client, &self.receiver.url, secrets) => open,
                    _ = shutdown.changed() => false,
                };
                if !open {
                    continue;
                }
            }
            let now = Instant::now();
            let slots = match circuit.admit(now) {
                Admit::All => self.receiver.concurrency,
                Admit::Probe => 1,
                Admit::None => 0,
            };
            let mut room = slots.saturating_sub(in_flight.len());
            if self.receiver.rate_per_second.is_some() {
                // One attempt a turn, each `1 / rate` after the last: a turn that started
                // every free slot at once would send `concurrency` attempts in a burst.
                room = room.min(1);
            }
            if room == 0 || now < next_allowed {
                // Wake when the next attempt is allowed, not on the idle tick: resting 50 ms
                // a turn held every rate limit to at most 20 attempts a second.
                let rest = match now < next_allowed {
                    true => next_allowed - now,
                    false => IDLE_TURN,
                };
                tokio::select! {
                    Some(done) = in_flight.join_next() => self.settle(done, &mut circuit),
                    () = tokio::time::sleep(rest) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let started = match self.turn(room, &mut batch, &mut last).await {
                Ok(deliveries) => deliveries,
                Err(error) => {
                    tracing::warn!(endpoint = %self.name, %error, "the events log failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for (source, delivery) in started {
                in_flight.spawn(self.attempt(source, delivery));
                if let Some(rate) = self.receiver.rate_per_second {
                    // Every two attempts at least `1 / rate` apart: no burst, even after a
                    // quiet spell.
                    next_allowed = Instant::now() + Duration::from_secs(1) / rate;
                }
            }
        }
        while let Some(done) = in_flight.join_next().await {
            self.settle(done, &mut circuit);
        }
        for ahead in std::mem::take(&mut self.ahead) {
            // Its entries stay unsettled, as the batch's do: taken up again after a restart.
            drop(ahead.read.await);
        }
        if let Err(error) = self.store.close().await {
            tracing::error!(endpoint = %self.name, %error, "could not record the endpoint's progress at shutdown; what followed the last record is delivered again");
        }
    }

    /// One turn of reading: the deliveries to start, at most `room`.
    async fn turn(
        &mut self,
        room: usize,
        batch: &mut Batch,
        last: &mut Last,
    ) -> Result<Vec<(Source, Delivery)>, StoreError> {
        let mut started: Vec<(Source, Delivery)> = Vec::new();
        if last.due.is_none_or(|at| at.elapsed() >= DUE_EVERY) {
            let due = self.store.take_due(room).await?;
            // A full take may have left more: look again next turn.
            last.due = (due.len() < room).then(Instant::now);
            started.extend(due.into_iter().map(|delivery| (Source::Retry, delivery)));
            if started.len() >= room {
                return Ok(started);
            }
        }
        let size = self.receiver.batch_size;
        let claim_every = CLAIM_EVERY.min(self.store.claim_idle());
        if last.claim.is_none_or(|at| at.elapsed() >= claim_every) {
            last.claim = Some(Instant::now());
            let stale = self.store.claim_stale(size).await?;
            self.gather(stale, batch).await?;
        }
        // Enough for every free slot in one read: one XREADGROUP per turn then starts up to
        // `room` deliveries, rather than one each. None when the batch holds that already:
        // a read of the few missing entries would cost a round trip for nothing.
        let per_turn = (room - started.len()) * size;
        let wanted = per_turn.saturating_sub(batch.len());
        if wanted > 0 {
            let wait = batch.wait_left(self.receiver.linger);
            let (count, fresh) = match self.ahead.pop_front() {
                Some(ahead) => (ahead.count, ahead.read.await??),
                None => (wanted, self.store.read_new(wanted, wait).await?),
            };
            if fresh.len() == count {
                // A read issued ahead asks for what a turn starts, whatever this one lacked.
                while self.ahead.len() < READS_AHEAD {
                    let mut store = self.store.clone();
                    let read = tokio::spawn(async move { store.read_new(per_turn, wait).await });
                    self.ahead.push_back(ReadAhead {
                        count: per_turn,
                        read,
                    });
                    // Let the read reach the log now, before the next is issued (so that they
                    // read in turn) and before gathering: on one thread it would otherwise
                    // wait until this turn is over, and overlap nothing.
                    tokio::task::yield_now().await;
                }
            }
            self.gather(fresh, batch).await?;
        }
        while started.len() < room && (batch.len() >= size || batch.waited(self.receiver.linger)) {
            let taken = batch.take(size);
            let names = match self.store.entry_ids_name_events() {
                true => &taken.entry_ids,
                false => &taken.event_ids,
            };
            let id = webhook_id(&self.name, names.iter().map(String::as_str));
            let logged_ms = taken.entry_ids.iter().filter_map(|id| entry_ms(id));
            let delivery = Delivery {
                id,
                attempts: 0,
                logged_ms: logged_ms.collect(),
                events: taken.events,
            };
            started.push((Source::Log(taken.entry_ids), delivery));
        }
        Ok(started)
    }

    /// Adds the entries the rule wants to `batch`, and acknowledges the others.
    async fn gather(
        &mut self,
        entries: Vec<LogEntry>,
        batch: &mut Batch,
    ) -> Result<(), StoreError> {
        let mut unwanted = Vec::new();
        let by_entry = self.store.entry_ids_name_events();
        for LogEntry {
            id,
            event,
            event_type,
        } in entries
        {
            let Some(event) = event else {
                unwanted.push(id);
                continue;
            };
            // Whether it is wanted and, where the webhook-id is made of event ids rather
            // than entry ids (see `Store::entry_ids_name_events`), its event id.
            let wanted: Option<Option<String>> = match (self.rule.by_type_alone(), event_type) {
                // The entry names its type beside the JSON, as the Redis sink writes it
                // (docs/events.md), and the type alone decides: nothing to parse.
                (Some(types), Some(event_type)) if by_entry => {
                    types.contains(&event_type).then_some(None)
                }
                // Parsed once: the facts decide, and give the event id.
                _ => match EventFacts::parse(&event) {
                    Ok(facts) if self.rule.matches(&facts) => {
                        Some((!by_entry).then_some(facts.mailtrack.event_id))
                    }
                    _ => None,
                },
            };
            match wanted {
                Some(event_id) => batch.push(id, event_id, event),
                None => unwanted.push(id),
            }
        }
        self.store.acknowledge(&unwanted).await
    }

    /// The attempt of `delivery`, which records its outcome before it ends.
    fn attempt(
        &self,
        source: Source,
        delivery: Delivery,
    ) -> impl std::future::Future<Output = Settled> + Send + 'static {
        let client = self.client.clone();
        let url: Url = self.receiver.url.clone();
        let secrets: Vec<WebhookSecret> = self.receiver.secrets.clone();
        let schedule = self.schedule.clone();
        let format = match &self.gate {
            Some(gate) => Format::Sns(std::sync::Arc::clone(gate.topic())),
            None => Format::Standard,
        };
        let mut store = self.store.clone();
        let metrics = self.metrics.clone();
        let name = self.name.clone();
        async move {
            metrics.in_flight.inc();
            let (body, headers) = payload(&format, &delivery);
            let answer = client
                .send(Attempt {
                    url: &url,
                    id: &delivery.id,
                    body,
                    secrets: &secrets,
                    headers: &headers,
                })
                .await;
            metrics.in_flight.dec();
            if let Some(latency) = &metrics.attempt_seconds {
                latency.observe(answer.latency.as_secs_f64());
            }
            let ids = match &source {
                Source::Log(ids) => ids.as_slice(),
                Source::Retry => &[],
            };
            let recorded = match answer.verdict {
                Verdict::Delivered => {
                    metrics.delivered.inc_by(delivery.events.len() as u64);
                    metrics.delivered_since(delivery.logged_ms.iter().copied());
                    match source {
                        Source::Log(_) => store.acknowledge(ids).await,
                        Source::Retry => store.retry_done(&delivery).await,
                    }
                }
                // Left where it is: the endpoint stops, and its events wait for recovery.
                Verdict::Gone => {
                    metrics.failed_attempts.inc();
                    return Settled::Gone;
                }
                Verdict::Retry { not_before } => {
                    metrics.failed_attempts.inc();
                    let after = Delivery {
                        attempts: delivery.attempts + 1,
                        ..delivery.clone()
                    };
                    match schedule.wait_after_random(after.attempts as usize) {
                        Some(wait) => {
                            metrics.retried.inc();
                            let wait = wait.max(not_before.unwrap_or_default());
                            let due = now_ms() + wait.as_millis() as u64;
                            match source {
                                Source::Log(_) => {
                                    store.schedule_first_retry(&after, due, ids).await
                                }
                                Source::Retry => store.retry_again(&delivery, &after, due).await,
                            }
                        }
                        None => {
                            metrics.dead_lettered.inc_by(after.events.len() as u64);
                            tracing::warn!(endpoint = %name, id = %after.id, attempts = after.attempts, answer = %answer.detail, "delivery dead-lettered");
                            let from_retry_set = matches!(source, Source::Retry);
                            store
                                .dead_letter(&delivery, from_retry_set, ids, &answer.detail)
                                .await
                        }
                    }
                }
            };
            if let Err(error) = recorded {
                // The entries stay pending (or leased) and are taken up again: at least once.
                tracing::warn!(endpoint = %name, %error, "could not record an attempt's outcome");
            }
            match answer.verdict {
                Verdict::Delivered => Settled::Delivered,
                _ => Settled::Failed,
            }
        }
    }

    /// Brings the lag gauges up to date; a failure only leaves them as they were.
    async fn measure_lag(&mut self) {
        match self.store.lag().await {
            Ok((events, age)) => {
                self.metrics
                    .lag_events
                    .set(i64::try_from(events).unwrap_or(i64::MAX));
                self.metrics
                    .lag_seconds
                    .set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            }
            Err(error) => tracing::debug!(endpoint = %self.name, %error, "lag not measured"),
        }
    }

    fn settle(&self, done: Result<Settled, tokio::task::JoinError>, circuit: &mut Circuit) {
        match done {
            Ok(Settled::Delivered) => circuit.succeeded(),
            Ok(Settled::Failed) => circuit.failed(Instant::now()),
            Ok(Settled::Gone) => {
                self.metrics.disabled.set(1);
            }
            // An attempt that panicked recorded nothing: its events are taken up again.
            Err(error) => tracing::error!(endpoint = %self.name, %error, "an attempt failed"),
        }
        self.metrics.circuit_open.set(i64::from(circuit.is_open()));
    }
}

/// When the loop last did what it does only every so often.
#[derive(Debug, Default)]
struct Last {
    /// Claimed entries other consumers left pending.
    claim: Option<Instant>,
    /// Looked for due retries and found fewer than it could start.
    due: Option<Instant>,
}

/// The events gathering for the next delivery.
#[derive(Debug, Default)]
struct Batch {
    entries: Taken,
    first_at: Option<Instant>,
}

/// Events of a batch: their log entries, their `eventId`s where the webhook-id is made of
/// those (see [`Store::entry_ids_name_events`]; else none are kept), and their JSON, index
/// by index.
#[derive(Debug, Default)]
struct Taken {
    entry_ids: Vec<String>,
    event_ids: Vec<String>,
    events: Vec<String>,
}

impl Batch {
    fn push(&mut self, entry_id: String, event_id: Option<String>, event: String) {
        self.first_at.get_or_insert_with(Instant::now);
        self.entries.entry_ids.push(entry_id);
        self.entries.event_ids.extend(event_id);
        self.entries.events.push(event);
    }

    fn len(&self) -> usize {
        self.entries.events.len()
    }

    /// How long a read may wait: what is left of the linger once a batch has begun.
    fn wait_left(&self, linger: Duration) -> Duration {
        self.first_at
            .map_or(linger, |at| linger.saturating_sub(at.elapsed()))
            .max(Duration::from_millis(1))
    }

    fn waited(&self, linger: Duration) -> bool {
        self.first_at.is_some_and(|at| at.elapsed() >= linger)
    }

    /// The first `most` events, for a delivery; what is left starts the next batch.
    fn take(&mut self, most: usize) -> Taken {
        let split = most.min(self.len());
        let rest = Taken {
            entry_ids: self.entries.entry_ids.split_off(split),
            event_ids: self
                .entries
                .event_ids
                .split_off(split.min(self.entries.event_ids.len())),
            events: self.entries.events.split_off(split),
        };
        let taken = std::mem::replace(&mut self.entries, rest);
        if self.len() == 0 {
            self.first_at = None;
        }
        taken
    }
}
