//! The counters `/metrics` serves, in Prometheus' text format (via `prometheus-client`).
//!
//! - `mailtrack_requests_total{route, status}`: every answer.
//! - `mailtrack_repairs_total{repair}`: verified links by the repair that recovered them.
//! - `mailtrack_unverified_total{reason}`: links that were read but did not verify.
//! - `mailtrack_event_queue_depth`: events waiting for the writer, read at scrape time.
//! - `mailtrack_events_dropped_total{reason}`: events lost because the queue was full or
//!   closed.
//! - `mailtrack_events_over_budget_total`: verified opens and clicks answered but not
//!   recorded, because their (message id, client address) pair was past
//!   `[events] budget_per_minute`.
//! - `mailtrack_event_budget_untracked_total`: events recorded without a budget because the
//!   budget's table was full (see `event_budget`).
//! - `mailtrack_connections_shed_total{reason}`: connections closed at once, by the cap they
//!   were over: `max_connections`, `max_connections_per_ip`, or `admin` (the admin
//!   listener's own).
//! - `mailtrack_connections_closed_total{reason}`: connections the server closed for what
//!   they did: `flood`, for reading far more than their requests need (HTTP/2 control
//!   frames, frames of unknown types: see `server::activity::FLOOD_BASE_BYTES`), and
//!   `stalled`, for an answer the client did not take within `server.answer_timeout`
//!   (an HTTP/2 window kept shut, a socket not read). Both series are there from the start,
//!   at 0.
//! - `mailtrack_admin_requests_total{route, status}`: every answer of the admin listener,
//!   401s included.
//! - `mailtrack_events_classified_total{event, class, certainty}`: recorded opens and clicks
//!   and unsubscribes by the classifier's verdict (`crate::classify`): `event` is `open`,
//!   `click` or `subscription`, `class`
//!   `person`, `proxy_open`, `machine_open` or `machine_click`. Each series an event type can
//!   have is there from the start, at 0.
//! - With `[tls.acme]`: `mailtrack_tls_certificate_expiry_seconds{domain}`,
//!   `mailtrack_acme_renewal_attempts_total` and `mailtrack_acme_renewal_failures_total`
//!   (see `server::acme::metrics`).
//!
//! - From the events pipeline, read at scrape time: `mailtrack_events_delivered_total`,
//!   `mailtrack_events_spooled_total`, `mailtrack_events_replayed_total`,
//!   `mailtrack_sink_errors_total`, `mailtrack_spool_bytes`, `mailtrack_spool_corrupt_bytes_total`
//!   and `mailtrack_sink_up`; events the full spool refused count in
//!   `mailtrack_events_dropped_total{reason="spool_full"}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::acme::AcmeMetrics;
use crate::classify::{Certainty, Class};
use crate::events::StatsSnapshot;
use crate::link::{LinkKind, Repair};

/// The labels of `mailtrack_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

/// A single `reason` or `repair` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepairLabel {
    repair: &'static str,
}

/// The labels of `mailtrack_events_classified_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    event: &'static str,
    class: &'static str,
    certainty: &'static str,
}

/// Every series of `mailtrack_events_classified_total`, held directly (one per recorded
/// event: as hot as `requests_total`): by event (open, click, subscription), class, certainty.
#[derive(Debug)]
struct VerdictCounters([[[Counter; 2]; 4]; 3]);

impl VerdictCounters {
    fn new(family: &Family<VerdictLabels, Counter>) -> VerdictCounters {
        VerdictCounters(std::array::from_fn(|kind| {
            std::array::from_fn(|class| {
                std::array::from_fn(|certainty| {
                    let (event, class) = (EVENTS[kind], Class::ALL[class]);
                    let labels = VerdictLabels {
                        event,
                        class: class.as_str(),
                        certainty: CERTAINTIES[certainty].as_str(),
                    };
                    // Shown from the start only where the event type can have the class.
                    let possible = match class {
                        Class::Person => true,
                        Class::ProxyOpen | Class::MachineOpen => event == "open",
                        // An unsubscribe is judged as a click is (it is no open).
                        Class::MachineClick => event != "open",
                    };
                    if possible {
                        family.get_or_create(&labels).clone()
                    } else {
                        Counter::default()
                    }
                })
            })
        }))
    }
}

const EVENTS: [&str; 3] = ["open", "click", "subscription"];
const CERTAINTIES: [Certainty; 2] = [Certainty::Probable, Certainty::Certain];

/// The server's counters, shared by every connection.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    repairs: Family<RepairLabel, Counter>,
    unverified: Family<ReasonLabel, Counter>,
    events_dropped: Family<ReasonLabel, Counter>,
    over_budget: Counter,
    budget_untracked: Counter,
    connections_shed: Family<ReasonLabel, Counter>,
    connections_closed: Family<ReasonLabel, Counter>,
    admin_requests: Family<RequestLabels, Counter>,
    classified: VerdictCounters,
    queue_depth: Gauge,
    acme: AcmeMetrics,
    pipeline: PipelineMetrics,
    hot: HotCounters,
}

/// The counters nearly every request adds to, held directly: finding a counter in its family
/// hashes its labels under a lock, which cost a click as much as building its `Location`.
/// A family hands out shared counters, so these are the very series `/metrics` shows.
#[derive(Debug)]
struct HotCounters {
    /// `requests_total{route="click",status="302"}`.
    click_found: Counter,
    /// `requests_total{route="open",status="200"}`.
    open_ok: Counter,
    /// `repairs_total{repair="as_received"}`.
    as_received: Counter,
}

impl HotCounters {
    fn new(
        requests: &Family<RequestLabels, Counter>,
        repairs: &Family<RepairLabel, Counter>,
    ) -> Self {
        let request = |route, status| {
            requests
                .get_or_create(&RequestLabels { route, status })
                .clone()
        };
        HotCounters {
            click_found: request("click", 302),
            open_ok: request("open", 200),
            as_received: repairs
                .get_or_create(&RepairLabel {
                    repair: Repair::AsReceived.as_str(),
                })
                .clone(),
        }
    }
}

/// The events pipeline's counters, brought up to its [`StatsSnapshot`] at each scrape.
#[derive(Debug, Default)]
struct PipelineMetrics {
    delivered: Counter,
    spooled: Counter,
    replayed: Counter,
    sink_errors: Counter,
    spool_corrupt_bytes: Counter,
    spool_bytes: Gauge,
    sink_up: Gauge,
    /// Held while counters are brought up to a snapshot, so two scrapes at once cannot both
    /// add the same difference.
    syncing: std::sync::Mutex<()>,
}

impl PipelineMetrics {
    fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "events_delivered",
                "Events the sink took straight from the queue",
                &self.delivered,
            ),
            (
                "events_spooled",
                "Events written to the disk spool",
                &self.spooled,
            ),
            (
                "events_replayed",
                "Events the sink took from the spool",
                &self.replayed,
            ),
            (
                "sink_errors",
                "Sink writes that failed or timed out",
                &self.sink_errors,
            ),
            (
                "spool_corrupt_bytes",
                "Spool bytes skipped as torn or corrupt",
                &self.spool_corrupt_bytes,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "spool_bytes",
            "Bytes in the spool not yet replayed",
            self.spool_bytes.clone(),
        );
        registry.register(
            "sink_up",
            "1 while the sink takes writes",
            self.sink_up.clone(),
        );
    }

    /// Brings every counter up to `snapshot`, and `spool_full_drops` up to its drops.
    fn update(&self, snapshot: &StatsSnapshot, spool_full_drops: &Counter) {
        // A poisoned lock only means another scrape panicked; the counters are still sound.
        let _syncing = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        let pairs = [
            (&self.delivered, snapshot.delivered),
            (&self.spooled, snapshot.spooled),
            (&self.replayed, snapshot.replayed),
            (&self.sink_errors, snapshot.sink_errors),
            (&self.spool_corrupt_bytes, snapshot.spool_corrupt_bytes),
            (spool_full_drops, snapshot.dropped),
        ];
        for (counter, total) in pairs {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.spool_bytes
            .set(i64::try_from(snapshot.spool_bytes).unwrap_or(i64::MAX));
        self.sink_up.set(i64::from(snapshot.sink_up));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mailtrack");
        let requests = Family::<RequestLabels, Counter>::default();
        let repairs = Family::<RepairLabel, Counter>::default();
        let unverified = Family::<ReasonLabel, Counter>::default();
        let events_dropped = Family::<ReasonLabel, Counter>::default();
        let over_budget = Counter::default();
        let budget_untracked = Counter::default();
        let connections_shed = Family::<ReasonLabel, Counter>::default();
        let admin_requests = Family::<RequestLabels, Counter>::default();
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        for reason in Metrics::CLOSE_REASONS {
            // Made now, so that the series shows 0; the guard is only a read lock's.
            drop(connections_closed.get_or_create(&ReasonLabel { reason }));
        }
        let queue_depth = Gauge::default();
        let classified_family = Family::<VerdictLabels, Counter>::default();
        let classified = VerdictCounters::new(&classified_family);
        registry.register(
            "events_classified",
            "Recorded opens and clicks, by the classifier's verdict",
            classified_family,
        );
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "repairs",
            "Verified links, by the repair that recovered them",
            repairs.clone(),
        );
        registry.register(
            "unverified",
            "Links read but not verified, by reason",
            unverified.clone(),
        );
        registry.register(
            "events_dropped",
            "Events not queued, by reason",
            events_dropped.clone(),
        );
        registry.register(
            "connections_shed",
            "Connections closed at once, by the cap they were over",
            connections_shed.clone(),
        );
        // Both public caps show from the start, at 0, so an alert on them has a series.
        for reason in ["max_connections", "max_connections_per_ip"] {
            // Creating the series is the point; the read guard it returns is let go at once.
            drop(connections_shed.get_or_create(&ReasonLabel { reason }));
        }
        registry.register(
            "admin_requests",
            "Admin listener answers, by route and status",
            admin_requests.clone(),
        );
        registry.register(
            "events_over_budget",
            "Verified opens and clicks answered but not recorded: past budget_per_minute",
            over_budget.clone(),
        );
        registry.register(
            "event_budget_untracked",
            "Events recorded without a budget because the budget table was full",
            budget_untracked.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed for what they did: flood or stalled",
            connections_closed.clone(),
        );
        registry.register(
            "event_queue_depth",
            "Events waiting for the writer",
            queue_depth.clone(),
        );
        let pipeline = PipelineMetrics::default();
        pipeline.register(&mut registry);
        let acme = AcmeMetrics::default();
        acme.register(&mut registry);
        let hot = HotCounters::new(&requests, &repairs);
        Metrics {
            registry,
            requests,
            repairs,
            unverified,
            events_dropped,
            connections_shed,
            over_budget,
            budget_untracked,
            admin_requests,
            connections_closed,
            classified,
            queue_depth,
            acme,
            pipeline,
            hot,
        }
    }
}

impl Metrics {
    /// The reasons `connections_closed_total` counts, each shown from the start.
    const CLOSE_REASONS: [&'static str; 2] = ["flood", "stalled"];

    /// The ACME series, for the renewal task.
    pub fn acme(&self) -> &AcmeMetrics {
        &self.acme
    }

    /// Counts an answer.
    pub fn request(&self, route: &'static str, status: u16) {
        match (route, status) {
            ("click", 302) => self.hot.click_found.inc(),
            ("open", 200) => self.hot.open_ok.inc(),
            _ => self
                .requests
                .get_or_create(&RequestLabels { route, status })
                .inc(),
        };
    }

    /// Counts a verified link by its repair label.
    pub fn repair(&self, repair: &'static str) {
        if repair == Repair::AsReceived.as_str() {
            self.hot.as_received.inc();
        } else {
            self.repairs.get_or_create(&RepairLabel { repair }).inc();
        }
    }

    /// Counts a link that did not verify.
    pub fn unverified(&self, reason: &'static str) {
        self.unverified.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts an event that was not queued.
    pub fn event_dropped(&self, reason: &'static str) {
        self.events_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts an event not recorded because its pair was past the budget.
    pub fn event_over_budget(&self) {
        self.over_budget.inc();
    }

    /// Counts an event recorded without a budget because the budget's table was full.
    pub fn event_budget_untracked(&self) {
        self.budget_untracked.inc();
    }

    /// Counts a connection closed at once, over the cap named by `reason`.
    pub fn connection_shed(&self, reason: &'static str) {
        self.connections_shed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts an admin listener answer.
    pub fn admin_request(&self, route: &'static str, status: u16) {
        self.admin_requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// Counts a recorded open or click by its verdict.
    pub fn classified(&self, kind: LinkKind, class: Class, certainty: Certainty) {
        let kind = match kind {
            LinkKind::Open => 0,
            LinkKind::Click => 1,
            LinkKind::Unsubscribe => 2,
        };
        let class = Class::ALL.iter().position(|c| *c == class).unwrap_or(0);
        let certainty = usize::from(certainty == Certainty::Certain);
        self.classified.0[kind][class][certainty].inc();
    }

    /// Counts a connection closed for what it did: `"flood"` or `"stalled"`.
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Everything in Prometheus' text format, with the queue depth and the events pipeline's
    /// counters (when there is a pipeline) read now.
    pub fn encode(&self, queue_depth: usize, pipeline: Option<&StatsSnapshot>) -> String {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        if let Some(snapshot) = pipeline {
            let spool_full = self.events_dropped.get_or_create(&ReasonLabel {
                reason: "spool_full",
            });
            self.pipeline.update(snapshot, &spool_full);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("formatting into a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_has_every_family() {
        let metrics = Metrics::default();
        metrics.request("click", 302);
        metrics.repair("decoded_once");
        metrics.unverified("bad_mac");
        metrics.event_dropped("full");
        metrics.connection_shed("max_connections_per_ip");
        metrics.admin_request("metrics", 401);
        metrics.connection_closed("flood");
        metrics.classified(LinkKind::Click, Class::MachineClick, Certainty::Certain);
        let snapshot = StatsSnapshot {
            spooled: 5,
            dropped: 2,
            spool_bytes: 900,
            sink_up: true,
            ..StatsSnapshot::default()
        };
        metrics.encode(7, Some(&snapshot));
        let text = metrics.encode(7, Some(&snapshot));
        assert!(text.contains("mailtrack_events_spooled_total 5"), "{text}");
        assert!(text.contains("mailtrack_spool_bytes 900"), "{text}");
        assert!(text.contains("mailtrack_sink_up 1"), "{text}");
        assert!(
            text.contains("mailtrack_events_dropped_total{reason=\"spool_full\"} 2"),
            "counters follow the snapshot without double counting: {text}"
        );
        assert!(
            text.contains("mailtrack_requests_total{route=\"click\",status=\"302\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailtrack_repairs_total{repair=\"decoded_once\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailtrack_unverified_total{reason=\"bad_mac\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailtrack_events_dropped_total{reason=\"full\"} 1"),
            "{text}"
        );
        assert!(text.contains("mailtrack_event_queue_depth 7"), "{text}");
        assert!(
            text.contains("mailtrack_connections_shed_total{reason=\"max_connections\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("mailtrack_connections_shed_total{reason=\"max_connections_per_ip\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailtrack_admin_requests_total{route=\"metrics\",status=\"401\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailtrack_connections_closed_total{reason=\"flood\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailtrack_connections_closed_total{reason=\"stalled\"} 0"),
            "a reason is shown before it first counts: {text}"
        );
        assert!(
            text.contains("mailtrack_events_classified_total{event=\"click\",class=\"machine_click\",certainty=\"certain\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailtrack_events_classified_total{event=\"open\",class=\"machine_open\",certainty=\"probable\"} 0"),
            "{text}"
        );
        assert!(
            !text.contains("event=\"click\",class=\"proxy_open\""),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
