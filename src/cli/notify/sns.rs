//! The SNS endpoints' subscriptions (`format = "sns"`): each one's [`SnsTopic`], the gate
//! that holds its worker back until the receiver confirms, and what the admin listener's
//! `/sns/confirm` route answers from.
//!
//! Every `SubscribeURL` points at notify's admin listener: at `public_url` (the endpoint's,
//! else `[notify]`'s), or at the address the listener was bound to.

use std::net::SocketAddr;
use std::sync::Arc;

use url::Url;

use mailtrack::config::notify::{EndpointConfig, HttpReceiver, ReceiverConfig};
use mailtrack::notify::sns::{self, ConfirmAnswer, SnsGate, SnsTopic};
use mailtrack::notify::worker::Format;
use mailtrack::notify::RetrySchedule;
use mailtrack::Config;

use super::Failure;

/// The SNS endpoints of a config, and the Redis their subscriptions live in.
pub(super) struct SnsSubscriptions {
    topics: Vec<SnsTopic>,
    redis: redis::aio::ConnectionManager,
}

impl SnsSubscriptions {
    /// Every SNS endpoint's subscription, confirmed through the admin listener bound at
    /// `bound`; `None` when no endpoint is SNS.
    pub(super) async fn open(
        config: &Config,
        redis_url: &str,
        bound: SocketAddr,
    ) -> Result<Option<Arc<SnsSubscriptions>>, Failure> {
        let failed = |e: &dyn std::fmt::Display| Failure::Io(std::io::Error::other(e.to_string()));
        let listener_url = Url::parse(&format!("http://{bound}/")).map_err(|e| failed(&e))?;
        let mut topics = Vec::new();
        for endpoint in &config.notify.endpoints {
            let ReceiverConfig::Http(http) = &endpoint.receiver else {
                continue;
            };
            if let Some(topic) = topic(config, &endpoint.name, http, &listener_url) {
                topics.push(topic);
            }
        }
        if topics.is_empty() {
            return Ok(None);
        }
        let redis = redis::Client::open(redis_url)
            .map_err(|e| failed(&e))?
            .get_connection_manager()
            .await
            .map_err(|e| failed(&e))?;
        Ok(Some(Arc::new(SnsSubscriptions { topics, redis })))
    }

    /// The gate of `endpoint`, when it is SNS: its confirmation re-sent on its retry schedule.
    pub(super) fn gate(&self, endpoint: &EndpointConfig, http: &HttpReceiver) -> Option<SnsGate> {
        let topic = self.topics.iter().find(|t| t.endpoint == endpoint.name)?;
        let schedule = RetrySchedule::new(http.retry_schedule.clone());
        Some(SnsGate::new(topic.clone(), self.redis.clone(), schedule))
    }

    /// Answers a GET of a `SubscribeURL`, whose query is `query`.
    pub(super) async fn confirm(&self, query: Option<&str>) -> ConfirmAnswer {
        let mut redis = self.redis.clone();
        sns::confirm(&mut redis, &self.topics, query).await
    }
}

/// The subscription of SNS endpoint `name` (`None` for another format), its URLs based at
/// `public_url` (the endpoint's, else `[notify]`'s), else at `listener`.
fn topic(config: &Config, name: &str, http: &HttpReceiver, listener: &Url) -> Option<SnsTopic> {
    let options = http.sns.as_ref()?;
    let public_url = options
        .public_url
        .clone()
        .or_else(|| config.notify.public_url.clone())
        .unwrap_or_else(|| listener.clone());
    Some(SnsTopic::new(
        name,
        &options.topic_arn,
        &http.url,
        public_url,
        &config.events.stream,
    ))
}

/// What `notify test` and `notify recover` make endpoint `name`'s bodies as: for an SNS
/// endpoint, its envelopes, their URLs based at `[notify] admin_listen` when no `public_url`
/// is set (these commands run no listener of their own).
pub(super) fn format_of(config: &Config, name: &str, http: &HttpReceiver) -> Format {
    let listener = Url::parse(&format!("http://{}/", config.notify.admin_listen));
    match listener
        .ok()
        .and_then(|url| topic(config, name, http, &url))
    {
        Some(topic) => Format::Sns(Arc::new(topic)),
        None => Format::Standard,
    }
}
