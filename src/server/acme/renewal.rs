//! The renewal task: obtains the certificate at start-up when the folder has none, renews it
//! when it is due, picks up what another instance stored, and retries with backoff.
//!
//! Each turn of the loop first reads the storage folder: a certificate there that is not the
//! one served (another instance renewed it, or this one restarted) is installed. Then, if the
//! served certificate is due (or there is none), the task takes the folder's `order.lock`;
//! if another instance holds it, it looks at the folder again in [`FOLDER_POLL`]. Holding the
//! lock, it reads the folder once more (the holder before it may just have finished) and only
//! then orders. A failure is logged and counted, the old certificate keeps serving, and the
//! next attempt waits on the backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::CertificateIdentifier;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::AcmeConfig;

use super::challenges::ChallengeStore;
use super::issued::IssuedCertificate;
use super::metrics::AcmeMetrics;
use super::order::Orderer;
use super::schedule::{in_window, two_thirds, Backoff, FOLDER_POLL, MAX_SLEEP};
use super::storage::AcmeStorage;
use crate::server::certificates::CertificateStore;

/// The task for one `[tls.acme]`.
pub struct Renewal {
    domains: Vec<String>,
    storage: AcmeStorage,
    orderer: Orderer,
    store: Arc<CertificateStore>,
    metrics: AcmeMetrics,
    backoff: Backoff,
    /// When the served certificate is due, once worked out (`None`: not yet, or none served).
    due: Option<SystemTime>,
    /// The served certificate's ARI identifier, when the CA gave a window for it: the next
    /// order names it as the one it `replaces` (RFC 9773, section 5).
    replaces: Option<CertificateIdentifier<'static>>,
}

impl Renewal {
    /// The task that keeps `store`'s ACME certificate for `config`, answering challenges
    /// through `challenges`.
    pub fn new(
        config: &AcmeConfig,
        store: Arc<CertificateStore>,
        challenges: Arc<ChallengeStore>,
        metrics: AcmeMetrics,
    ) -> Renewal {
        let storage = AcmeStorage::new(
            &config.storage,
            config.directory.as_str(),
            &config.domains[0],
        );
        Renewal {
            domains: config.domains.clone(),
            orderer: Orderer::new(config.clone(), storage.clone(), challenges),
            storage,
            store,
            metrics,
            backoff: Backoff::new(config.retry_delay),
            due: None,
            replaces: None,
        }
    }

    /// Installs the stored certificate, if there is one, before the listeners are bound, so
    /// a restart serves HTTPS from its first handshake.
    pub fn install_stored(&mut self) {
        self.pick_up_stored();
    }

    /// Runs until the process ends.
    pub async fn run(mut self) {
        loop {
            let wait = self.turn().await;
            tokio::time::sleep(wait).await;
        }
    }

    /// One turn of the loop; returns how long to sleep before the next.
    async fn turn(&mut self) -> Duration {
        self.pick_up_stored();
        // Read after `due`, which is "now" when nothing is served, so that it is never early.
        let due = self.due().await;
        let now = SystemTime::now();
        if let Ok(early) = due.duration_since(now) {
            if !early.is_zero() {
                return early.min(MAX_SLEEP);
            }
        }
        let lock = match self.storage.try_lock() {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::debug!("another instance is ordering; looking at the folder again soon");
                return FOLDER_POLL;
            }
            Err(e) => return self.failed(&e.to_string()),
        };
        // The instance that held the lock before may have stored a new certificate.
        if self.pick_up_stored() {
            return Duration::ZERO;
        }
        self.metrics.attempt();
        let replaces = self.replaces.clone();
        tracing::info!(domains = ?self.domains, renewal = replaces.is_some(), "ordering an ACME certificate");
        let result = match self.orderer.order(replaces.as_ref()).await {
            Ok(pem) => IssuedCertificate::from_pem(&pem)
                .map_err(|e| e.to_string())
                .and_then(|issued| {
                    self.storage
                        .write_certificate(&pem)
                        .map(|()| issued)
                        .map_err(|e| e.to_string())
                }),
            Err(e) => Err(e.to_string()),
        };
        drop(lock);
        match result {
            Ok(issued) => {
                self.install(issued);
                self.backoff.succeeded();
                Duration::ZERO
            }
            Err(message) => self.failed(&message),
        }
    }

    /// Counts and logs a failed attempt, loudest when the served certificate is near its
    /// end; returns the backoff's wait.
    fn failed(&mut self, message: &str) -> Duration {
        self.metrics.failure();
        let wait = self.backoff.failed();
        match self.store.acme_certificate() {
            None => tracing::error!(
                error = message, retry_in = ?wait, domains = ?self.domains,
                "ACME order failed; HTTPS refuses handshakes for these domains until one succeeds"
            ),
            Some(current) => {
                let left = current
                    .not_after
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tracing::error!(
                    error = message, retry_in = ?wait, domains = ?self.domains,
                    serial = %current.serial, expires_in = ?left,
                    "ACME renewal failed; the old certificate keeps serving until it expires"
                );
            }
        }
        wait
    }

    /// Installs the stored certificate if it is not the one served; whether it did.
    fn pick_up_stored(&mut self) -> bool {
        let pem = match self.storage.read_certificate() {
            Ok(Some(pem)) => pem,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored ACME certificate");
                return false;
            }
        };
        let issued = match IssuedCertificate::from_pem(&pem) {
            Ok(issued) => issued,
            Err(e) => {
                tracing::warn!(error = %e, "the stored ACME certificate is unusable; ordering a new one");
                return false;
            }
        };
        let served = self.store.acme_certificate();
        if served.is_some_and(|served| served.serial == issued.serial) {
            return false;
        }
        self.install(issued);
        true
    }

    fn install(&mut self, issued: IssuedCertificate) {
        tracing::info!(
            domains = ?self.domains, serial = %issued.serial,
            expires = %humantime::format_rfc3339_seconds(issued.not_after),
            "ACME certificate installed"
        );
        self.metrics.served(&self.domains, issued.expiry_unix());
        self.store.set_acme_certificate(issued);
        self.due = None;
        self.replaces = None;
    }

    /// When the served certificate is due: in the CA's ARI window if it offers one, else at
    /// two-thirds of its lifetime; now if none is served.
    async fn due(&mut self) -> SystemTime {
        let Some(current) = self.store.acme_certificate() else {
            return SystemTime::now();
        };
        if let Some(due) = self.due {
            return due;
        }
        let window = match &current.ari_id {
            None => None,
            Some(id) => match self.orderer.renewal_window(id).await {
                Ok(window) => window,
                Err(e) => {
                    tracing::warn!(error = %e, "ACME renewal information unavailable; renewing at two-thirds of the lifetime");
                    None
                }
            },
        };
        let due = match window {
            Some((start, end)) => {
                self.replaces = current.ari_id.clone();
                in_window(start, end, random_u64())
            }
            None => two_thirds(current.not_before, current.not_after),
        };
        tracing::info!(due = %humantime::format_rfc3339_seconds(due), ari = window.is_some(), "ACME renewal scheduled");
        self.due = Some(due);
        due
    }
}

/// A random `u64` for placing a renewal in its window.
fn random_u64() -> u64 {
    let mut bytes = [0; 8];
    // The system's generator does not fail on Linux; should it, renewing at the window's
    // start is still correct.
    let _ = SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}
