//! `mailtrack notify`: delivers the Redis events stream to every `[[notify.endpoint]]`, each
//! on its own consumer group, until SIGTERM or SIGINT.
//!
//! Before anything is delivered, every HTTP endpoint's receiver is resolved and refused (exit
//! 64, naming `notify.endpoint.url`) when it is a loopback, private or link-local address the
//! endpoint does not allow. Any number of `notify` processes may run on one Redis: each is a
//! consumer of every endpoint's group, named after its host and process id.
//!
//! Its admin listener ([`admin`], `[notify] admin_listen`) is bound before anything is
//! delivered, and serves every endpoint's metrics, and the route SNS receivers confirm their
//! subscription on ([`sns`]).
//!
//! - [`admin`]: the admin listener, `/metrics`, `/healthz` and `/sns/confirm`.
//! - [`sns`]: the SNS endpoints' subscriptions, and the confirmations they are answered with.
//! - [`test`]: `notify test`, one test event sent now.
//! - [`recover`]: `notify recover`, a window of the log and the dead letters delivered again.
//! - [`deliver`]: one delivery made and sent now, with its body per the endpoint's format, for
//!   both.
//!
//! Still to come (issue 15): the file log.

use std::sync::Arc;

use clap::Subcommand;
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

mod admin;
mod deliver;
mod recover;
mod sns;
mod test;

/// `notify`'s subcommands; without one, `notify` delivers.
#[derive(Subcommand)]
pub(crate) enum NotifyCommand {
    /// Send one test event to an endpoint now (not through the log), and print the status,
    /// the latency and the receiver's answer. Exits 0 when the receiver took it (a 2xx), 69
    /// when it did not, 64 for an unknown endpoint or a receiver it may not reach.
    Test {
        /// The endpoint's name, as in [[notify.endpoint]].
        #[arg(long, value_name = "NAME")]
        endpoint: String,
    },
    /// Deliver again everything of an endpoint in a window of time, from the events log and
    /// from its dead letters, to its configured receiver. Exits non-zero if any batch failed.
    Recover {
        /// The endpoint's name, as in [[notify.endpoint]].
        #[arg(long, value_name = "NAME")]
        endpoint: String,
        /// The window's start: RFC 3339 (2026-12-02T10:00:00Z) or Unix milliseconds.
        #[arg(long, value_name = "T")]
        since: String,
        /// The window's end (inclusive); now when left out.
        #[arg(long, value_name = "T")]
        until: Option<String>,
    },
}

/// Runs `notify`, or one of its subcommands.
pub(super) fn main(
    command: Option<NotifyCommand>,
    config: Config,
) -> Result<std::process::ExitCode, Failure> {
    match command {
        None => run(config).map(|()| std::process::ExitCode::SUCCESS),
        Some(NotifyCommand::Test { endpoint }) => test::run(&config, &endpoint),
        Some(NotifyCommand::Recover {
            endpoint,
            since,
            until,
        }) => recover::run(&config, &endpoint, &since, until.as_deref()),
    }
}

/// A refusal of the config (exit 64), naming `key`.
fn invalid(config: &Config, key: &'static str, message: String) -> Failure {
    Failure::Config(ConfigError::Invalid {
        path: config.path.clone(),
        key,
        message,
    })
}

/// The endpoint named `name`, or a refusal (exit 64) naming it and listing the names.
fn find_endpoint<'a>(config: &'a Config, name: &str) -> Result<&'a EndpointConfig, Failure> {
    config
        .notify
        .endpoints
        .iter()
        .find(|endpoint| endpoint.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config
                .notify
                .endpoints
                .iter()
                .map(|endpoint| endpoint.name.as_str())
                .collect();
            let listed = match names.is_empty() {
                true => "there is no [[notify.endpoint]]".to_owned(),
                false => format!("the endpoints are: {}", names.join(", ")),
            };
            invalid(
                config,
                "--endpoint",
                format!("no endpoint {name:?}; {listed}"),
            )
        })
}

/// Runs every endpoint until a shutdown signal.
fn run(config: Config) -> Result<(), Failure> {
    let invalid = |key, message: String| invalid(&config, key, message);
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
        // Bound before any delivery starts: a port in use stops us as it stops serve.
        let listener = admin::bind(&config).await.map_err(Failure::Serve)?;
        deliver(&config, &redis_url, listener).await
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

/// The address policy an endpoint's `allow_private` asks for.
fn policy(allow_private: bool) -> AddressPolicy {
    if allow_private {
        AddressPolicy::AllowPrivate
    } else {
        AddressPolicy::PublicOnly
    }
}

/// Starts a worker per endpoint and the admin listener on `listener`, and stops them all on
/// SIGTERM or SIGINT.
async fn deliver(
    config: &Config,
    redis_url: &str,
    listener: mailtrack::server::AdminListener,
) -> Result<(), Failure> {
    let shutdown = signals::shutdown_signal();
    let consumer = consumer_name();
    let metrics = Arc::new(NotifyMetrics::default());
    let (stop, stopped) = watch::channel(false);
    let mut workers = JoinSet::new();
    // Every endpoint's series exist from the start, so a scrape shows them all at zero.
    for endpoint in &config.notify.endpoints {
        metrics.endpoint(&endpoint.name);
    }
    let bound = listener.local_addr().map_err(Failure::Io)?;
    let sns = sns::SnsSubscriptions::open(config, redis_url, bound).await?;
    let admin = tokio::spawn({
        let config = config.clone();
        let metrics = Arc::clone(&metrics);
        let stopped = stopped.clone();
        let sns = sns.clone();
        async move { admin::serve(listener, &config, metrics, sns, stopped).await }
    });
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
                )
                .await
                .map_err(|e| failed(&e))?;
                let client = WebhookClient::new(http.timeout, policy(http.allow_private))
                    .map_err(Failure::Io)?;
                let series = metrics.endpoint(&name);
                let mut worker = HttpWorker::new(name, rule, http.clone(), client, store, series);
                if let Some(gate) = sns.as_ref().and_then(|sns| sns.gate(endpoint, http)) {
                    worker = worker.with_sns(gate);
                }
                workers.spawn(worker.run(stopped.clone()));
            }
            ReceiverConfig::Stream(target) => {
                let block = std::time::Duration::from_millis(500);
                let store =
                    EndpointStore::open(redis_url, &config.events.stream, &name, &consumer, block)
                        .await
                        .map_err(|e| failed(&e))?;
                let target_url = target.redis_url.as_deref().unwrap_or(redis_url);
                let target_redis = redis::Client::open(target_url)
                    .map_err(|e| failed(&e))?
                    .get_connection_manager()
                    .await
                    .map_err(|e| failed(&e))?;
                let worker = StreamWorker::new(
                    name.clone(),
                    rule,
                    store,
                    target_redis,
                    target.stream.clone(),
                )
                .with_metrics(metrics.endpoint(&name));
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
    // The listener drains on the same signal; a panic in it has nothing left to stop.
    let _ = admin.await;
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
