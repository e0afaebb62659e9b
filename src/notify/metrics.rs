//! What `mailtrack notify` counts, per endpoint, in Prometheus' text format (via
//! `prometheus-client`), for notify's admin listener:
//!
//! - `mailtrack_notify_delivered_total{endpoint}`: events delivered (a 2xx in time);
//! - `mailtrack_notify_failed_attempts_total{endpoint}`: attempts that failed;
//! - `mailtrack_notify_retried_total{endpoint}`: deliveries put back for another attempt;
//! - `mailtrack_notify_dead_lettered_total{endpoint}`: events whose schedule ran out;
//! - `mailtrack_notify_in_flight{endpoint}`: attempts under way;
//! - `mailtrack_notify_circuit_open{endpoint}`: 1 while the breaker holds deliveries back;
//! - `mailtrack_notify_disabled{endpoint}`: 1 once a 410 disabled the endpoint;
//! - `mailtrack_notify_lag_events{endpoint}`, `mailtrack_notify_lag_seconds{endpoint}`: how
//!   far the endpoint is behind the log, in entries and in the age of the oldest one it has
//!   not read;
//! - `mailtrack_notify_attempt_seconds{endpoint}`: a histogram of attempts' latency;
//! - `mailtrack_notify_delivery_seconds{endpoint}`: a histogram, one sample per event
//!   delivered, of the time from the event's entry in the log (its `XADD`, the entry id's
//!   milliseconds) to the receiver's 2xx (or, for a stream endpoint, to its copy): what a
//!   subscriber waits, retries included.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `endpoint` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// The buckets of `attempt_seconds`: from a loopback receiver's millisecond to a slow
/// receiver's timeout.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The buckets of `delivery_seconds`: from a batch's linger on a fast receiver, through the
/// first retries (5 s, 5 min), to events delivered after hours of an outage.
const DELIVERY_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
    36000.0,
];

/// Every endpoint's series.
#[derive(Debug)]
pub struct NotifyMetrics {
    registry: Registry,
    delivered: Family<EndpointLabel, Counter>,
    failed_attempts: Family<EndpointLabel, Counter>,
    retried: Family<EndpointLabel, Counter>,
    dead_lettered: Family<EndpointLabel, Counter>,
    in_flight: Family<EndpointLabel, Gauge>,
    circuit_open: Family<EndpointLabel, Gauge>,
    disabled: Family<EndpointLabel, Gauge>,
    lag_events: Family<EndpointLabel, Gauge>,
    lag_seconds: Family<EndpointLabel, Gauge>,
    attempt_seconds: Family<EndpointLabel, Histogram, fn() -> Histogram>,
    delivery_seconds: Family<EndpointLabel, Histogram, fn() -> Histogram>,
}

/// One endpoint's series, shared with the families: what a worker adds to shows at once.
#[derive(Debug, Clone, Default)]
pub struct EndpointMetrics {
    /// Events delivered.
    pub delivered: Counter,
    /// Attempts that failed.
    pub failed_attempts: Counter,
    /// Deliveries put back for another attempt.
    pub retried: Counter,
    /// Events whose schedule ran out.
    pub dead_lettered: Counter,
    /// Attempts under way.
    pub in_flight: Gauge,
    /// 1 while the breaker is open.
    pub circuit_open: Gauge,
    /// 1 once a 410 disabled the endpoint.
    pub disabled: Gauge,
    /// Entries of the log not yet read by the endpoint.
    pub lag_events: Gauge,
    /// Age in seconds of the oldest entry not yet read.
    pub lag_seconds: Gauge,
    /// Attempts' latency.
    pub attempt_seconds: Option<Histogram>,
    /// Each delivered event's time from its log entry to the receiver's 2xx.
    pub delivery_seconds: Option<Histogram>,
}

impl EndpointMetrics {
    /// Records the delivery, now, of events whose log entries were written at `logged_ms`
    /// (milliseconds since the epoch).
    pub fn delivered_since(&self, logged_ms: impl IntoIterator<Item = u64>) {
        let Some(histogram) = &self.delivery_seconds else {
            return;
        };
        let now = super::redis_log::now_ms();
        for at in logged_ms {
            histogram.observe(now.saturating_sub(at) as f64 / 1000.0);
        }
    }
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        let histogram: fn() -> Histogram = || Histogram::new(LATENCY_BUCKETS);
        let delivery: fn() -> Histogram = || Histogram::new(DELIVERY_BUCKETS);
        let mut metrics = NotifyMetrics {
            registry: Registry::with_prefix("mailtrack_notify"),
            delivered: Family::default(),
            failed_attempts: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            in_flight: Family::default(),
            circuit_open: Family::default(),
            disabled: Family::default(),
            lag_events: Family::default(),
            lag_seconds: Family::default(),
            attempt_seconds: Family::new_with_constructor(histogram),
            delivery_seconds: Family::new_with_constructor(delivery),
        };
        let registry = &mut metrics.registry;
        registry.register("delivered", "Events delivered", metrics.delivered.clone());
        registry.register(
            "failed_attempts",
            "Attempts that failed",
            metrics.failed_attempts.clone(),
        );
        registry.register(
            "retried",
            "Deliveries put back for another attempt",
            metrics.retried.clone(),
        );
        registry.register(
            "dead_lettered",
            "Events whose retry schedule ran out",
            metrics.dead_lettered.clone(),
        );
        registry.register("in_flight", "Attempts under way", metrics.in_flight.clone());
        registry.register(
            "circuit_open",
            "1 while the circuit breaker holds deliveries back",
            metrics.circuit_open.clone(),
        );
        registry.register(
            "disabled",
            "1 once a 410 Gone disabled the endpoint",
            metrics.disabled.clone(),
        );
        registry.register(
            "lag_events",
            "Log entries the endpoint has not read",
            metrics.lag_events.clone(),
        );
        registry.register(
            "lag_seconds",
            "Age of the oldest log entry the endpoint has not read",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            "attempt_seconds",
            "Latency of delivery attempts",
            metrics.attempt_seconds.clone(),
        );
        registry.register(
            "delivery_seconds",
            "Time from an event's entry in the log to its delivery",
            metrics.delivery_seconds.clone(),
        );
        metrics
    }
}

impl NotifyMetrics {
    /// The series of `endpoint`, made on first use.
    pub fn endpoint(&self, endpoint: &str) -> EndpointMetrics {
        let label = EndpointLabel {
            endpoint: endpoint.to_owned(),
        };
        EndpointMetrics {
            delivered: self.delivered.get_or_create(&label).clone(),
            failed_attempts: self.failed_attempts.get_or_create(&label).clone(),
            retried: self.retried.get_or_create(&label).clone(),
            dead_lettered: self.dead_lettered.get_or_create(&label).clone(),
            in_flight: self.in_flight.get_or_create(&label).clone(),
            circuit_open: self.circuit_open.get_or_create(&label).clone(),
            disabled: self.disabled.get_or_create(&label).clone(),
            lag_events: self.lag_events.get_or_create(&label).clone(),
            lag_seconds: self.lag_seconds.get_or_create(&label).clone(),
            attempt_seconds: Some(self.attempt_seconds.get_or_create(&label).clone()),
            delivery_seconds: Some(self.delivery_seconds.get_or_create(&label).clone()),
        }
    }

    /// Everything, in Prometheus' text format.
    pub fn encode(&self) -> String {
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
    fn an_endpoints_series_show_under_its_label() {
        let metrics = NotifyMetrics::default();
        let billing = metrics.endpoint("billing");
        billing.delivered.inc_by(100);
        billing.circuit_open.set(1);
        if let Some(latency) = &billing.attempt_seconds {
            latency.observe(0.004);
        }
        billing.delivered_since([super::super::redis_log::now_ms() - 30_000]);
        // A second handle is the same series.
        metrics.endpoint("billing").delivered.inc();
        let text = metrics.encode();
        assert!(
            text.contains("mailtrack_notify_delivered_total{endpoint=\"billing\"} 101"),
            "{text}"
        );
        assert!(text.contains("mailtrack_notify_circuit_open{endpoint=\"billing\"} 1"));
        assert!(
            text.contains(
                "mailtrack_notify_attempt_seconds_bucket{le=\"0.005\",endpoint=\"billing\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "mailtrack_notify_delivery_seconds_bucket{le=\"60.0\",endpoint=\"billing\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "mailtrack_notify_delivery_seconds_bucket{le=\"10.0\",endpoint=\"billing\"} 0"
            ),
            "{text}"
        );
    }
}
