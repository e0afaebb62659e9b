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
//! With the file sink (the default) notify follows the JSONL events file instead, each endpoint
//! from its own checkpoint in the state folder (`[notify] state_dir`), which one process at a
//! time may hold: a second is refused (exit 64, naming `notify.state_dir`). Over the file only
//! HTTP endpoints are served: a stream endpoint is refused at start-up (exit 64, naming
//! `notify.endpoint.stream`).
//!
//! SNS endpoints keep their subscription in Redis, so they need the Redis sink: over the file
//! one is refused at start-up (exit 64, naming `notify.endpoint.format`).

use std::sync::Arc;

use clap::Subcommand;
use tokio::sync::watch;
use tokio::task::JoinSet;

use mailtrack::config::notify::{EndpointConfig, ReceiverConfig};
use mailtrack::config::SinkKind;
use mailtrack::notify::file_log::{FileStore, LockError, StateLock};
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
    let log = match config.events.sink {
        SinkKind::Redis => match config.events.redis_url.clone() {
            Some(url) => Log::Redis(url),
            None => {
                let message = "notify reads the Redis events stream; set redis_url".to_owned();
                return Err(invalid("events.redis_url", message));
            }
        },
        SinkKind::File => Log::File,
        SinkKind::Stdout => {
            let message = "notify reads the events from the Redis stream or the JSONL file; \
                           standard output cannot be read back"
                .to_owned();
            return Err(invalid("events.sink", message));
        }
    };
    if config.notify.endpoints.is_empty() {
        let message = "no [[notify.endpoint]]: there is nobody to notify".to_owned();
        return Err(invalid("notify.endpoint", message));
    }
    if matches!(log, Log::File) {
        if let Some(endpoint) = config
            .notify
            .endpoints
            .iter()
            .find(|e| matches!(e.receiver, ReceiverConfig::Stream(_)))
        {
            let message = format!(
                "endpoint {:?}: a stream endpoint needs the Redis events stream \
                 ([events] sink = \"redis\"); over the events file only HTTP endpoints are served",
                endpoint.name
            );
            return Err(invalid("notify.endpoint.stream", message));
        }
        let is_sns = |e: &&EndpointConfig| matches!(&e.receiver, ReceiverConfig::Http(http) if http.sns.is_some());
        if let Some(endpoint) = config.notify.endpoints.iter().find(is_sns) {
            let message = format!(
                "endpoint {:?}: an SNS endpoint keeps its subscription in Redis, so it needs \
                 the Redis events stream ([events] sink = \"redis\")",
                endpoint.name
            );
            return Err(invalid("notify.endpoint.format", message));
        }
    }
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::Io)?;
    runtime.block_on(async {
        for endpoint in &config.notify.endpoints {
            check_endpoint(endpoint)
                .await
                .map_err(|message| invalid("notify.endpoint.url", message))?;
        }
        match log {
            Log::Redis(redis_url) => {
                // Bound before any delivery starts: a port in use stops us as it stops serve.
                let listener = admin::bind(&config).await.map_err(Failure::Serve)?;
                deliver(&config, &redis_url, listener).await
            }
            Log::File => {
                let state_dir = config.notify.state_dir_for(&config.events.file);
                // Held until the process ends: the kernel lets it go even on kill -9.
                let _lock = StateLock::acquire(&state_dir).map_err(|e| match e {
                    LockError::Held(_) => invalid("notify.state_dir", e.to_string()),
                    LockError::Io { .. } => Failure::Io(std::io::Error::other(e.to_string())),
                })?;
                let listener = admin::bind(&config).await.map_err(Failure::Serve)?;
                deliver_file(&config, &state_dir, listener).await
            }
        }
    })
}

/// Which events log notify reads.
enum Log {
    /// The Redis stream at this URL.
    Redis(String),
    /// The JSONL file, `[events] file`.
    File,
}

/// Starts an HTTP worker per endpoint over the events file and the admin listener on
/// `listener`, and stops them all on SIGTERM or SIGINT; each worker writes its checkpoint as
/// it stops.
async fn deliver_file(
    config: &Config,
    state_dir: &std::path::Path,
    listener: mailtrack::server::AdminListener,
) -> Result<(), Failure> {
    let shutdown = signals::shutdown_signal();
    let metrics = Arc::new(NotifyMetrics::default());
    let (stop, stopped) = watch::channel(false);
    let mut workers = JoinSet::new();
    for endpoint in &config.notify.endpoints {
        metrics.endpoint(&endpoint.name);
    }
    let admin = tokio::spawn({
        let config = config.clone();
        let metrics = Arc::clone(&metrics);
        let stopped = stopped.clone();
        async move { admin::serve(listener, &config, metrics, None, stopped).await }
    });
    for endpoint in &config.notify.endpoints {
        // Stream endpoints were refused before.
        let ReceiverConfig::Http(http) = &endpoint.receiver else {
            continue;
        };
        let name = endpoint.name.clone();
        let store = FileStore::open(&config.events.file, state_dir, &name).map_err(|e| {
            Failure::Io(std::io::Error::new(
                e.kind(),
                format!("endpoint {name:?}: {e}"),
            ))
        })?;
        let client =
            WebhookClient::new(http.timeout, policy(http.allow_private)).map_err(Failure::Io)?;
        let series = metrics.endpoint(&name);
        let rule = Rule::new(&endpoint.rule);
        let worker = HttpWorker::new(name, rule, http.clone(), client, store, series);
        workers.spawn(worker.run(stopped.clone()));
        tracing::info!(endpoint = %endpoint.name, state_dir = %state_dir.display(), "notifying from the events file");
    }
    shutdown.await;
    tracing::info!("stopping: letting deliveries in flight finish");
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    let _ = admin.await;
    tracing::info!("every endpoint stopped");
    Ok(())
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
                    config.notify.claim_idle,
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
