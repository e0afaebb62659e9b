//! `mailtrack serve`: loads the key ring, certificates and the classifier's lists, starts the
//! events pipeline, binds, serves until SIGTERM or SIGINT, and drains.

use std::sync::Arc;

use mailtrack::classify::{self, Classifier, ListError};
use mailtrack::events::EventPipeline;
use mailtrack::link::KeyRing;
use mailtrack::server::{self, signals, CertificateStore, State};
use mailtrack::{Config, ConfigError};

use super::Failure;

/// Runs the proxy for `config` until a shutdown signal, then drains.
pub(super) fn run(config: Config) -> Result<(), Failure> {
    let ring = config.key_ring()?;
    let certificates = match config.server.https {
        None => None,
        Some(_) => Some(Arc::new(
            CertificateStore::load(&config.tls.certificates).map_err(|e| {
                Failure::Config(ConfigError::Invalid {
                    path: config.path.clone(),
                    key: "tls.certificate",
                    message: e.to_string(),
                })
            })?,
        )),
    };
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
    runtime.block_on(serve(config, ring, certificates, Arc::new(classifier)))?;
    Ok(())
}

/// Binds, serves until SIGTERM or SIGINT, drains, and waits for the event writer to write
/// the last event.
async fn serve(
    config: Config,
    ring: KeyRing,
    certificates: Option<Arc<CertificateStore>>,
    classifier: Arc<Classifier>,
) -> Result<(), Failure> {
    let shutdown = signals::shutdown_signal();
    tokio::spawn(signals::reload_on_hangup(
        certificates.clone(),
        Some(Arc::clone(&classifier)),
    ));
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
    let listeners = match server::bind(&config, certificates).await {
        Ok(listeners) => listeners,
        Err(e) => {
            pipeline.shutdown().await;
            return Err(Failure::Serve(e));
        }
    };
    let state = State::with_pipeline(&config, ring, queue, pipeline.stats_reader(), classifier);
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
