//! What every connection shares: the key ring, the policies from the config, the metrics and
//! the event queue. Cloning a [`State`] is one reference count.

use std::sync::Arc;
use std::time::Duration;

use crate::classify::Classifier;
use crate::config::{Config, Durability, UnverifiedPolicy};
use crate::events::{EventQueue, StatsReader};
use crate::link::{KeyRing, LinkSigner};

use super::acme::{AcmeMetrics, ChallengeStore};
use super::client_ip::ClientIpPolicy;
use super::event_budget::EventBudget;
use super::metrics::Metrics;

/// The server's shared state.
#[derive(Debug, Clone)]
pub struct State {
    shared: Arc<Shared>,
}

/// The limits each connection is held to (see `config::server` for the defaults' reasons).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most connections open at once.
    pub max_connections: usize,
    /// The most one client (an IPv4 address or IPv6 /64, not a trusted proxy) may hold open
    /// at once; 0: no such cap.
    pub max_connections_per_ip: usize,
    /// From connect until the request headers are complete.
    pub header_read_timeout: Duration,
    /// How long a connection may be idle.
    pub idle_timeout: Duration,
    /// How long an answer may wait for the client to take it.
    pub answer_timeout: Duration,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) ring: Arc<KeyRing>,
    /// Signs the rewrite API's links with the same ring, for `tracking.base_url`.
    pub(crate) signer: LinkSigner,
    /// `tracking.max_links`, for the rewrite API.
    pub(crate) max_links: usize,
    pub(crate) unverified: UnverifiedPolicy,
    pub(crate) client_ip: ClientIpPolicy,
    pub(crate) limits: Limits,
    pub(crate) full_client_ip: bool,
    pub(crate) metrics: Metrics,
    /// How many events each (message id, client address) pair may record a minute.
    pub(crate) budget: EventBudget,
    pub(crate) events: EventQueue,
    /// The events pipeline behind the queue, for `/metrics` and `/readyz`; `None` when the
    /// queue's other end is read directly (tests).
    pub(crate) pipeline: Option<StatsReader>,
    /// Whether a request waits for its event's group commit before it is answered.
    pub(crate) durability: Durability,
    /// Labels every recorded open and click: person, proxy or machine; `None` with
    /// `[classify] enabled = false`.
    pub(crate) classifier: Option<Arc<Classifier>>,
    /// The open HTTP-01 (and TLS-ALPN-01) answers; empty without `[tls.acme]`.
    pub(crate) acme_challenges: Arc<ChallengeStore>,
}

impl State {
    /// The state for `config`, verifying links with `ring` and handing events to `events`,
    /// whose other end the caller reads. Requests never wait for their events.
    ///
    /// The classifier's lists are read now; one that cannot be read is logged, and only the
    /// built-in lists are used (`mailtrack serve` refuses to start instead).
    pub fn new(config: &Config, ring: KeyRing, events: EventQueue) -> State {
        let classifier = Classifier::load(&config.classify).unwrap_or_else(|error| {
            tracing::error!(%error, "classifier lists not loaded; using the built-in ones");
            Classifier::built_in(&config.classify)
        });
        State::build(config, ring, events, None, Arc::new(classifier))
    }

    /// The state for `config` in front of an events pipeline: its counters go to `/metrics`,
    /// its readiness to `/readyz`, and with `durability = "sync"` each request waits for its
    /// event to be committed.
    /// `classifier` labels every open and click; the caller keeps a handle to reload its
    /// lists.
    pub fn with_pipeline(
        config: &Config,
        ring: KeyRing,
        events: EventQueue,
        pipeline: StatsReader,
        classifier: Arc<Classifier>,
    ) -> State {
        State::build(config, ring, events, Some(pipeline), classifier)
    }

    fn build(
        config: &Config,
        ring: KeyRing,
        events: EventQueue,
        pipeline: Option<StatsReader>,
        classifier: Arc<Classifier>,
    ) -> State {
        let durability = match pipeline {
            Some(_) => config.events.durability,
            None => Durability::Batch,
        };
        let server = &config.server;
        let ring = Arc::new(ring);
        let signer = LinkSigner::new(&config.tracking.base_url, Arc::clone(&ring))
            // Config validation signed with this base URL already (config::Config::load).
            .expect("tracking.base_url was checked when the config was validated");
        let shared = Shared {
            ring,
            signer,
            max_links: config.tracking.max_links,
            unverified: config.tracking.unverified,
            client_ip: ClientIpPolicy {
                trusted_proxies: server.trusted_proxies.clone(),
                header: server.client_ip_header,
            },
            limits: Limits {
                max_connections: server.max_connections,
                max_connections_per_ip: server.max_connections_per_ip,
                header_read_timeout: server.header_read_timeout,
                idle_timeout: server.idle_timeout,
                answer_timeout: server.answer_timeout,
                shutdown_grace: server.shutdown_grace,
            },
            full_client_ip: config.log.full_client_ip,
            metrics: Metrics::default(),
            budget: EventBudget::new(config.events.budget_per_minute),
            events,
            pipeline,
            durability,
            classifier: config.classify.enabled.then_some(classifier),
            acme_challenges: Arc::new(match &config.tls.acme {
                Some(acme) => ChallengeStore::shared_through(acme.storage.join("challenges")),
                None => ChallengeStore::default(),
            }),
        };
        State {
            shared: Arc::new(shared),
        }
    }

    /// The connection limits.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// The ACME challenge answers, shared with the certificate resolver and the order task.
    pub fn acme_challenges(&self) -> Arc<ChallengeStore> {
        Arc::clone(&self.shared.acme_challenges)
    }

    /// The ACME series on `/metrics`, for the renewal task.
    pub fn acme_metrics(&self) -> AcmeMetrics {
        self.shared.metrics.acme().clone()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}
