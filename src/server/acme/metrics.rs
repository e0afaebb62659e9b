//! The ACME series on `/metrics`:
//!
//! - `mailtrack_tls_certificate_expiry_seconds{domain}`: when the served ACME certificate
//!   expires, as a Unix time; alert on `… - time() < 14 * 86400`.
//! - `mailtrack_acme_renewal_attempts_total`: orders this instance started.
//! - `mailtrack_acme_renewal_failures_total`: orders that failed.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `domain` label of the expiry gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabel {
    domain: String,
}

/// The ACME counters; cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct AcmeMetrics {
    expiry: Family<DomainLabel, Gauge>,
    attempts: Counter,
    failures: Counter,
}

impl AcmeMetrics {
    /// Adds the series to `registry` (prefixed `mailtrack_` by it).
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_certificate_expiry_seconds",
            "When the served ACME certificate expires, Unix time, by domain",
            self.expiry.clone(),
        );
        registry.register(
            "acme_renewal_attempts",
            "ACME orders started by this instance",
            self.attempts.clone(),
        );
        registry.register(
            "acme_renewal_failures",
            "ACME orders that failed",
            self.failures.clone(),
        );
    }

    /// Notes the certificate now served for `domains`.
    pub fn served(&self, domains: &[String], expiry_unix: i64) {
        for domain in domains {
            self.expiry
                .get_or_create(&DomainLabel {
                    domain: domain.clone(),
                })
                .set(expiry_unix);
        }
    }

    /// Counts an order started.
    pub fn attempt(&self) {
        self.attempts.inc();
    }

    /// Counts an order failed.
    pub fn failure(&self) {
        self.failures.inc();
    }
}
