//! `mailtrack serve`: loads the key ring, certificates and the classifier's lists, starts the
//! events pipeline, binds, serves until SIGTERM or SIGINT, and drains. With `[tls.acme]`, it
//! also runs the renewal task, which obtains the certificate when the storage folder has none.

use std::sync::Arc;

use mailtrack::classify::{self, Classifier, ListError};
use mailtrack::events::EventPipeline;
use mailtrack::link::KeyRing;
use mailtrack::server::acme::Renewal;
use mailtrack::server::{self, signals, CertificateStore, State};
use mailtrack::{Config, ConfigError};

use super::Failure;

/// Runs the proxy for `config` until a shutdown signal, then drains.
pub(super) fn run(config: Config) -> Result<(), Failure> {
    let ring = config.key_ring()?;
    let classifier = Classifier::load(&config.classify).map_err(|e| {
        let key = match &e {
            ListError::Read { name, .. }
            | ListError::Line { name, .. }
            | ListError::Empty { name, .. }
                if name == "apple_egress" =>
            {
                "classify.apple_egress"
            }
            _ => "classify.list",
        };
        Failure::Config(ConfigError::Invalid {
            path: config.path.clone(),
            key,
            message: e.to_string(),
        })
    })?;
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::Io)?;
    runtime.block_on(serve(config, ring, Arc::new(classifier)))?;
    Ok(())
}

/// The certificates for HTTPS: the files, and the ACME certificate's slot beside them.
fn certificates(config: &Config, state: &State) -> Result<Option<Arc<CertificateStore>>, Failure> {
    if config.server.https.is_none() {
        return Ok(None);
    }
    let store = match &config.tls.acme {
        None => CertificateStore::load(&config.tls.certificates),
        Some(_) => CertificateStore::with_acme(&config.tls.certificates, state.acme_challenges()),
    };
    store.map(|store| Some(Arc::new(store))).map_err(|e| {
        Failure::Config(ConfigError::Invalid {
            path: config.path.clone(),
            key: "tls.certificate",
            message: e.to_string(),
        })
    })
}

/// Binds, serves until SIGTERM or SIGINT, drains, and waits for the event writer to write
/// the last event.
async fn serve(config: Config, ring: KeyRing, classifier: Arc<Classifier>) -> Result<(), Failure> {
    let shutdown = signals::shutdown_signal();
    tokio::spawn(classify::watch_lists(
        Arc::clone(&classifier),
        config.classify.watch_interval,
    ));
    // The pipeline opens its sink and spool (and replays what a previous run left) before any
    // port is bound, so an unusable events file or spool folder stops us first.
    let (queue, pipeline) = EventPipeline::start(&config.events).map_err(|e| {
        Failure::Config(ConfigError::Invalid {
            path: config.path.clone(),
            key: "events",
            message: e.to_string(),
        })
    })?;
    let state = State::with_pipeline(
        &config,
        ring,
        queue,
        pipeline.stats_reader(),
        classifier.clone(),
    );
    let certificates = match certificates(&config, &state) {
        Ok(certificates) => certificates,
        Err(e) => {
            drop(state);
            pipeline.shutdown().await;
            return Err(e);
        }
    };
    tokio::spawn(signals::reload_on_hangup(
        certificates.clone(),
        Some(Arc::clone(&classifier)),
    ));
    if let Some(acme) = &config.tls.acme {
        // HTTP-01 needs only the plain listener, so without HTTPS the renewal task still
        // runs, into a store of its own: the certificate is then for the storage folder's
        // other readers (another instance, or a CDN's upload job).
        let store = match &certificates {
            Some(store) => Arc::clone(store),
            None => Arc::new(
                CertificateStore::with_acme(&[], state.acme_challenges())
                    .map_err(|e| Failure::Serve(e.into()))?,
            ),
        };
        let mut renewal = Renewal::new(acme, store, state.acme_challenges(), state.acme_metrics());
        // A certificate already in the folder serves from the first handshake.
        renewal.install_stored();
        tokio::spawn(renewal.run());
    }
    let listeners = match server::bind(&config, certificates).await {
        Ok(listeners) => listeners,
        Err(e) => {
            drop(state);
            pipeline.shutdown().await;
            return Err(Failure::Serve(e));
        }
    };
    server::run(listeners, state, shutdown).await;
    let last = pipeline.shutdown().await;
    tracing::info!(
        delivered = last.delivered,
        spooled = last.spooled,
        replayed = last.replayed,
        dropped = last.dropped,
        left_in_spool_bytes = last.spool_bytes,
        "events pipeline drained"
    );
    Ok(())
}
