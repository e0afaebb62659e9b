//! `mailtrack notify`: delivers the Redis events stream to every `[[notify.endpoint]]`, each
//! on its own consumer group, until SIGTERM or SIGINT.
//!
//! Before anything is delivered, every HTTP endpoint's receiver is resolved and refused (exit
//! 64, naming `notify.endpoint.url`) when it is a loopback, private or link-local address the
//! endpoint does not allow. Any number of `notify` processes may run on one Redis: each is a
//! consumer of every endpoint's group, named after its host and process id.
//!
//! SNS endpoints (`format = "sns"`) need notify's own listener, on `[notify] admin_listen`:
//! their receivers confirm there, on [`sns::CONFIRM_PATH`]. Until the notify admin listener
//! has its route table, a minimal one answers that route alone, and only when some endpoint
//! is SNS.
//!
//! Still to come (issue 15): the file log, `notify test`, `notify recover`, and the metrics on
//! notify's own admin listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinSet;
use url::Url;

use mailtrack::config::notify::{EndpointConfig, HttpReceiver, PayloadFormat, ReceiverConfig};
use mailtrack::notify::http::{check_receiver, AddressPolicy, WebhookClient};
use mailtrack::notify::metrics::NotifyMetrics;
use mailtrack::notify::redis_log::EndpointStore;
use mailtrack::notify::sns::{self, SnsGate, SnsTopic};
use mailtrack::notify::stream_worker::StreamWorker;
use mailtrack::notify::worker::HttpWorker;
use mailtrack::notify::{RetrySchedule, Rule};
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
    let sns = SnsSetup::start(config, redis_url, stopped.clone()).await?;
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

/// The SNS endpoints' subscriptions, and the listener their receivers confirm on.
struct SnsSetup {
    topics: Arc<Vec<SnsTopic>>,
    redis: redis::aio::ConnectionManager,
}

impl SnsSetup {
    /// Binds `[notify] admin_listen` and answers confirmations on it until `stopped`, when
    /// some endpoint is SNS; `None` when none is.
    async fn start(
        config: &Config,
        redis_url: &str,
        stopped: watch::Receiver<bool>,
    ) -> Result<Option<SnsSetup>, Failure> {
        let is_sns = |endpoint: &&EndpointConfig| matches!(&endpoint.receiver, ReceiverConfig::Http(http) if http.format == PayloadFormat::Sns);
        if !config.notify.endpoints.iter().any(|e| is_sns(&e)) {
            return Ok(None);
        }
        let failed = |e: &dyn std::fmt::Display| Failure::Io(std::io::Error::other(e.to_string()));
        let listener = tokio::net::TcpListener::bind(config.notify.admin_listen)
            .await
            .map_err(|e| {
                Failure::Io(std::io::Error::other(format!(
                    "notify.admin_listen {}: {e}",
                    config.notify.admin_listen
                )))
            })?;
        let addr = listener.local_addr().map_err(Failure::Io)?;
        tracing::info!(%addr, "notify admin listening");
        let bound = Url::parse(&format!("http://{addr}/")).map_err(|e| failed(&e))?;
        let mut topics = Vec::new();
        for endpoint in &config.notify.endpoints {
            let ReceiverConfig::Http(http) = &endpoint.receiver else {
                continue;
            };
            let Some(options) = &http.sns else {
                continue;
            };
            let public = options
                .public_url
                .clone()
                .or_else(|| config.notify.public_url.clone())
                .unwrap_or_else(|| bound.clone());
            topics.push(SnsTopic::new(
                &endpoint.name,
                &options.topic_arn,
                &http.url,
                public,
                &config.events.stream,
            ));
        }
        let redis = redis::Client::open(redis_url)
            .map_err(|e| failed(&e))?
            .get_connection_manager()
            .await
            .map_err(|e| failed(&e))?;
        let setup = SnsSetup {
            topics: Arc::new(topics),
            redis,
        };
        tokio::spawn(confirmations(
            listener,
            setup.topics.clone(),
            setup.redis.clone(),
            stopped,
        ));
        Ok(Some(setup))
    }

    /// The gate of `endpoint`, when it is SNS.
    fn gate(&self, endpoint: &EndpointConfig, http: &HttpReceiver) -> Option<SnsGate> {
        let topic = self.topics.iter().find(|t| t.endpoint == endpoint.name)?;
        let schedule = RetrySchedule::new(http.retry_schedule.clone());
        Some(SnsGate::new(topic.clone(), self.redis.clone(), schedule))
    }
}

/// Answers GETs of `SubscribeURL` until `stopped`; every other request is a JSON 404.
async fn confirmations(
    listener: tokio::net::TcpListener,
    topics: Arc<Vec<SnsTopic>>,
    redis: redis::aio::ConnectionManager,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, most likely: rest rather than spin, then accept again.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let topics = topics.clone();
        let redis = redis.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: Request<hyper::body::Incoming>| {
                    let topics = topics.clone();
                    let mut redis = redis.clone();
                    async move {
                        let answer = if matches!(*request.method(), Method::GET | Method::HEAD)
                            && request.uri().path() == sns::CONFIRM_PATH
                        {
                            sns::confirm(&mut redis, &topics, request.uri().query()).await
                        } else {
                            sns::ConfirmAnswer {
                            status: 404,
                            content_type: "application/json",
                            body: serde_json::json!({ "error": format!("no route {}", request.uri().path()) }).to_string(),
                        }
                        };
                        let response = Response::builder()
                            .status(answer.status)
                            .header(hyper::header::CONTENT_TYPE, answer.content_type)
                            .body(Full::new(Bytes::from(answer.body)));
                        // A status from the list above and a static content type always build.
                        Ok::<_, Infallible>(response.expect("a confirmation answer builds"))
                    }
                },
            );
            // A client that goes away mid-request only ends its own connection.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
