//! `mailtrack notify`: delivers the Redis events stream to every `[[notify.endpoint]]`, each
//! on its own consumer group, until SIGTERM or SIGINT.
//!
//! Before anything is delivered, every HTTP endpoint's receiver is resolved and refused (exit
//! 64, naming `notify.endpoint.url`) when it is a loopback, private or link-local address the
//! endpoint does not allow. Any number of `notify` processes may run on one Redis: each is a
//! consumer of every endpoint's group, named after its host and process id.
//!
//! Still to come (issue 15): the file log, SNS envelopes, `notify test`, `notify recover`, and
//! the metrics on notify's own admin listener.

use tokio::sync::watch;
use tokio::task::JoinSet;

use mailtrack::config::notify::{EndpointConfig, ReceiverConfig};
use mailtrack::notify::http::{check_receiver, AddressPolicy, WebhookClient};
use mailtrack::notify::metrics::NotifyMetrics;
use mailtrack::notify::redis_log::EndpointStore;
use mailtrack::notify::stream_worker::StreamWorker;
use mailtrack::notify::worker::HttpWorker;
use mailtrack::notify::Rule;
use mailtrack::server::signals;
use mailtrack::{Config, ConfigError};

use super::Failure;

/// Runs every endpoint until a shutdown signal.
pub(super) fn run(config: Config) -> Result<(), Failure> {
    let invalid = |key, message: String| {
        Failure::Config(ConfigError::Invalid {
            path: config.path.clone(),
            key,
            message,
        })
    };
    let Some(redis_url) = config.events.redis_url.clone() else {
        let message = "notify reads the Redis events stream; set redis_url (the JSONL file is \
                       not read by notify yet)"
            .to_owned();
        return Err(invalid("events.redis_url", message));
    };
    if config.notify.endpoints.is_empty() {
        let message = "no [[notify.endpoint]]: there is nobody to notify".to_owned();
        return Err(invalid("notify.endpoint", message));
    }
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::Io)?;
    runtime.block_on(async {
        for endpoint in &config.notify.endpoints {
            check_endpoint(endpoint)
                .await
                .map_err(|message| invalid("notify.endpoint.url", message))?;
        }
        deliver(&config, &redis_url).await
    })
}

/// Refuses an HTTP endpoint whose receiver resolves to an address it may not reach.
async fn check_endpoint(endpoint: &EndpointConfig) -> Result<(), String> {
    let ReceiverConfig::Http(http) = &endpoint.receiver else {
        return Ok(());
    };
    check_receiver(&http.url, policy(http.allow_private))
        .await
        .map_err(|message| format!("endpoint {:?}: {message}", endpoint.name))
}

fn policy(allow_private: bool) -> AddressPolicy {
    if allow_private {
        AddressPolicy::AllowPrivate
    } else {
        AddressPolicy::PublicOnly
    }
}

/// Starts a worker per endpoint, and stops them all on SIGTERM or SIGINT.
async fn deliver(config: &Config, redis_url: &str) -> Result<(), Failure> {
    let shutdown = signals::shutdown_signal();
    let consumer = consumer_name();
    let metrics = NotifyMetrics::default();
    let (stop, stopped) = watch::channel(false);
    let mut workers = JoinSet::new();
    let failed = |e: &dyn std::fmt::Display| Failure::Io(std::io::Error::other(e.to_string()));
    for endpoint in &config.notify.endpoints {
        let rule = Rule::new(&endpoint.rule);
        let name = endpoint.name.clone();
        match &endpoint.receiver {
            ReceiverConfig::Http(http) => {
                let store = EndpointStore::open(
                    redis_url,
                    &config.events.stream,
                    &name,
                    &consumer,
                    http.linger,
                    config.notify.claim_idle,
                )
                .await
                .map_err(|e| failed(&e))?;
                let client = WebhookClient::new(http.timeout, policy(http.allow_private))
                    .map_err(Failure::Io)?;
                let series = metrics.endpoint(&name);
                let worker = HttpWorker::new(name, rule, http.clone(), client, store, series);
                workers.spawn(worker.run(stopped.clone()));
            }
            ReceiverConfig::Stream(target) => {
                let block = std::time::Duration::from_millis(500);
                let store = EndpointStore::open(
                    redis_url,
                    &config.events.stream,
                    &name,
                    &consumer,
                    block,
                    config.notify.claim_idle,
                )
                .await
                .map_err(|e| failed(&e))?;
                let target_url = target.redis_url.as_deref().unwrap_or(redis_url);
                let target_redis = redis::Client::open(target_url)
                    .map_err(|e| failed(&e))?
                    .get_connection_manager()
                    .await
                    .map_err(|e| failed(&e))?;
                let worker =
                    StreamWorker::new(name, rule, store, target_redis, target.stream.clone());
                workers.spawn(worker.run(stopped.clone()));
            }
        }
        tracing::info!(endpoint = %endpoint.name, consumer = %consumer, "notifying");
    }
    shutdown.await;
    tracing::info!("stopping: letting deliveries in flight finish");
    // The workers hold receivers until they return, so the send reaches them.
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    tracing::info!("every endpoint stopped");
    Ok(())
}

/// This process's name in every endpoint's consumer group: host and process id, so that
/// processes on one host, or on many, never share a name.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!("{host}-{}", std::process::id())
}
