//! Process signals: SIGTERM and SIGINT stop the server gracefully; SIGHUP reloads the
//! certificates and the classifier's lists.

use std::future::Future;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::classify::Classifier;

use super::certificates::CertificateStore;

/// A future that completes on the first SIGTERM or SIGINT: the shutdown future `main` hands
/// to [`run`](super::run). The handlers are installed by this call, before anything awaits,
/// so a signal that arrives once the server is listening is never missed.
///
/// # Panics
///
/// If the handlers cannot be installed: outside a Tokio runtime, or when the OS refuses.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    // Installing a handler fails only outside a runtime or when the OS refuses; both are
    // start-up faults with nothing to fall back to.
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    }
}

/// A future that reloads `store` and every list of `classifier` on every SIGHUP, for as
/// long as the process runs. A failed reload keeps the certificates or the list in use and
/// logs why. Without certificates that part is only logged: SIGHUP's default action would
/// end the process.
///
/// # Panics
///
/// As [`shutdown_signal`], if the handler cannot be installed.
pub fn reload_on_hangup(
    store: Option<Arc<CertificateStore>>,
    classifier: Option<Arc<Classifier>>,
) -> impl Future<Output = ()> {
    // As above: a start-up fault.
    let mut hangup = signal(SignalKind::hangup()).expect("installing the SIGHUP handler");
    async move {
        while hangup.recv().await.is_some() {
            match &store {
                Some(store) => reload(store),
                None => tracing::info!("SIGHUP: no certificates to reload"),
            }
            if let Some(classifier) = &classifier {
                let classifier = Arc::clone(classifier);
                // Reading a large list is blocking work. The pool is gone only at shutdown,
                // when there is nothing left to reload for.
                let reloaded = tokio::task::spawn_blocking(move || classifier.reload(true)).await;
                if let Ok(done) = reloaded {
                    tracing::info!(
                        loaded = done.loaded,
                        failed = done.failed,
                        "SIGHUP: lists reloaded"
                    );
                }
            }
        }
    }
}

/// Reloads `store` now and logs the outcome: what SIGHUP does.
pub fn reload(store: &CertificateStore) {
    match store.reload() {
        Ok(()) => tracing::info!("certificates reloaded"),
        Err(e) => tracing::error!(error = %e, "certificate reload failed; keeping the old ones"),
    }
}
