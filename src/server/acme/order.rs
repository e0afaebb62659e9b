//! One ACME order, from `[tls.acme]` to a stored key and chain: the account (loaded from the
//! storage folder, or created and stored), the order, each authorization's challenge answered
//! through the [`ChallengeStore`], the CSR, and the certificate (the flow of instant-acme's
//! `examples/provision.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, CertificateIdentifier,
    ChallengeType, ExternalAccountKey, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

use crate::config::{AcmeConfig, Challenge};

use super::challenges::{ChallengeError, ChallengeStore};
use super::storage::{AcmeStorage, StorageError};

/// The problem type a CA answers with when it no longer knows the stored account (a CA
/// reset, or a test CA restarted): a new account is made and the order tried again.
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// How long to wait for the CA to validate and then to issue: a minute each, polled from a
/// quarter of a second up, doubling. Validation takes the CA seconds; past a minute, something
/// is wrong and the order is retried on the failure backoff instead.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(2.0)
    .timeout(Duration::from_secs(60));

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// The CA could not be reached or answered with an error.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// The CA offered no challenge of the configured type.
    #[error("the CA offers no {challenge} challenge for {domain}")]
    NoChallenge {
        /// The domain.
        domain: String,
        /// The configured type.
        challenge: &'static str,
    },
    /// An authorization or the order ended in a state other than valid.
    #[error("{what} is {status}")]
    NotValid {
        /// The authorization's domain or "the order".
        what: String,
        /// Its final state.
        status: String,
    },
    /// The challenge answer could not be made.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// The storage folder could not be used.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored account could not be read or written as JSON.
    #[error("tls.acme.storage: account file: {0}")]
    Account(serde_json::Error),
}

/// Orders certificates for one `[tls.acme]`.
pub struct Orderer {
    config: AcmeConfig,
    storage: AcmeStorage,
    challenges: Arc<ChallengeStore>,
    account: Option<Account>,
}

impl Orderer {
    /// An orderer that answers challenges through `challenges`.
    pub fn new(
        config: AcmeConfig,
        storage: AcmeStorage,
        challenges: Arc<ChallengeStore>,
    ) -> Orderer {
        Orderer {
            config,
            storage,
            challenges,
            account: None,
        }
    }

    /// Orders a certificate for every configured domain, replacing `replaces` (RFC 9773) if
    /// given, and returns its private key and chain as one PEM. The caller holds the
    /// storage folder's lock.
    pub async fn order(
        &mut self,
        replaces: Option<&CertificateIdentifier<'static>>,
    ) -> Result<String, OrderError> {
        let result = self.try_order(replaces).await;
        // Whatever happened, no challenge stays answerable once its order is over.
        self.challenges.clear();
        result
    }

    async fn try_order(
        &mut self,
        replaces: Option<&CertificateIdentifier<'static>>,
    ) -> Result<String, OrderError> {
        let identifiers: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|domain| Identifier::Dns(domain.clone()))
            .collect();
        let mut new_order = NewOrder::new(&identifiers);
        if let Some(replaces) = replaces {
            new_order = new_order.replaces(replaces.clone());
        }
        let account = self.account(false).await?;
        let mut order = match account.new_order(&new_order).await {
            Err(instant_acme::Error::Api(problem))
                if problem.r#type.as_deref() == Some(ACCOUNT_DOES_NOT_EXIST) =>
            {
                tracing::warn!("the CA no longer knows the stored ACME account; making a new one");
                self.account(true).await?.new_order(&new_order).await?
            }
            // A CA that refuses `replaces` (the old certificate is unknown to it, after a CA
            // change) still issues a plain order.
            Err(instant_acme::Error::Api(problem)) if replaces.is_some() => {
                tracing::info!(problem = %problem, "order with `replaces` refused; ordering afresh");
                account.new_order(&NewOrder::new(&identifiers)).await?
            }
            other => other?,
        };
        let (challenge_type, challenge_name) = match self.config.challenge {
            Challenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
            Challenge::Http01 => (ChallengeType::Http01, "http-01"),
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            let domain = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(OrderError::NotValid {
                        what: domain,
                        status: format!("{other:?}"),
                    })
                }
            }
            let mut challenge =
                authorization
                    .challenge(challenge_type.clone())
                    .ok_or_else(|| OrderError::NoChallenge {
                        domain: domain.clone(),
                        challenge: challenge_name,
                    })?;
            let key_authorization = challenge.key_authorization();
            match self.config.challenge {
                Challenge::Http01 => self
                    .challenges
                    .put_http01(&challenge.token, key_authorization.as_str()),
                Challenge::TlsAlpn01 => self
                    .challenges
                    .put_tls_alpn01(&domain, key_authorization.digest().as_ref())?,
            }
            tracing::info!(%domain, challenge = challenge_name, "answering the ACME challenge");
            challenge.set_ready().await?;
        }
        let status = order.poll_ready(&POLL).await?;
        if status != OrderStatus::Ready {
            return Err(OrderError::NotValid {
                what: "the order".to_owned(),
                status: format!("{status:?}"),
            });
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&POLL).await?;
        Ok(format!("{key_pem}{chain_pem}"))
    }

    /// The CA's suggested renewal window for `id` (RFC 9773), if it offers ARI; `None` when
    /// it does not, so the caller falls back to two-thirds of the lifetime.
    pub async fn renewal_window(
        &mut self,
        id: &CertificateIdentifier<'static>,
    ) -> Result<Option<(SystemTime, SystemTime)>, OrderError> {
        let account = self.account(false).await?;
        match account.renewal_info(id).await {
            Ok((info, _retry_after)) => {
                let time = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
                let window = info.suggested_window;
                Ok(Some((
                    time(window.start.unix_timestamp()),
                    time(window.end.unix_timestamp()),
                )))
            }
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The account: the one already in use, else the stored one, else a new one (stored).
    /// `fresh` makes a new one whatever is stored.
    async fn account(&mut self, fresh: bool) -> Result<Account, OrderError> {
        if let (Some(account), false) = (&self.account, fresh) {
            return Ok(account.clone());
        }
        let stored = match fresh {
            true => None,
            false => self.storage.read_account()?,
        };
        let account = match stored {
            Some(json) => {
                let credentials: AccountCredentials =
                    serde_json::from_str(&json).map_err(OrderError::Account)?;
                self.builder()?.from_credentials(credentials).await?
            }
            None => {
                let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
                let eab = self
                    .config
                    .eab
                    .as_ref()
                    .map(|eab| ExternalAccountKey::new(eab.key_id.clone(), &eab.hmac_key));
                let (account, credentials) = self
                    .builder()?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.config.directory.as_str().to_owned(),
                        eab.as_ref(),
                    )
                    .await?;
                let json = serde_json::to_string(&credentials).map_err(OrderError::Account)?;
                self.storage.write_account(&json)?;
                tracing::info!(id = account.id(), "ACME account created");
                account
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    fn builder(&self) -> Result<AccountBuilder, OrderError> {
        Ok(match &self.config.directory_root {
            Some(root) => Account::builder_with_root(root)?,
            None => Account::builder()?,
        })
    }
}
