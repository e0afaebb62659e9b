//! `sink = "redis"`: each event becomes one entry of a Redis stream, a batch one pipelined
//! round of `XADD`s.
//!
//! An entry carries the event's JSON in the field `event`, plus `type` (`Open`/`Click`) and
//! `message_id` so that a consumer can filter without parsing. `MAXLEN ~` trims the stream
//! approximately, which Redis does cheaply, whole macro-nodes at a time.
//!
//! The connection is made lazily: an unreachable Redis at start-up is a failed first write,
//! which the writer spools around, not an error that stops `serve`. A single server is reached
//! through a [`ConnectionManager`], which reconnects after a failure; a cluster (`redis_cluster
//! = true`, with `redis_url` naming any node) through redis-rs's cluster client, which
//! discovers the other nodes and follows `MOVED`. A stream is one key, so it lives on one
//! shard: deployments that outgrow one shard's write rate shard by stream name.
//!
//! A pipeline is not a transaction: when a reply is lost the whole batch is retried, and some
//! of its entries may be in the stream twice. Consumers dedupe on `mailtrack.eventId`.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{Delivery, SinkError};
use crate::config::EventsConfig;
use crate::events::batch::Batch;

/// How many times the connection manager retries a reconnect before failing the request
/// that waits on it: once. Retrying longer belongs to the writer, which spools meanwhile.
pub const DEFAULT_RECONNECT_RETRIES: usize = 1;

/// How long one connection attempt may take: 1 s is far beyond a connect in one data centre,
/// and short enough to leave room for a retry within the sink timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The field of a stream entry that holds the event's JSON.
pub const EVENT_FIELD: &str = "event";

/// The Redis stream sink.
pub struct RedisSink {
    connector: Connector,
    connection: Option<RedisConnection>,
    stream: String,
    maxlen: u64,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show the stream only.
        f.debug_struct("RedisSink")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// How to reach Redis: a single server or a cluster.
#[derive(Clone)]
pub(crate) enum Connector {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(ClusterClient),
}

/// A live connection to a single server or a cluster.
#[derive(Clone)]
pub(crate) enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisSink {
    /// The sink for `config`'s `redis_url` and `stream`, not yet connected.
    pub fn new(config: &EventsConfig) -> Result<RedisSink, SinkError> {
        Ok(RedisSink {
            connector: Connector::new(config, config.sink_timeout)?,
            connection: None,
            stream: config.stream.clone(),
            maxlen: config.stream_maxlen,
        })
    }

    /// Sends `batch` as one pipeline and returns the wait for Redis's answer, which borrows
    /// nothing: the writer sends the next batch while Redis works on this one. Batches go
    /// out over one connection in the order their waits are first polled.
    pub async fn send(&mut self, batch: &Batch) -> Result<Delivery, SinkError> {
        let pipe = self.pipeline(batch);
        let mut connection = match &mut self.connection {
            Some(connection) => connection.clone(),
            None => self
                .connection
                .insert(self.connector.connect().await?)
                .clone(),
        };
        Ok(Box::pin(async move {
            pipe.exec_async(&mut connection).await?;
            Ok(())
        }))
    }

    /// To be called after a batch failed.
    pub fn failed(&mut self) {
        if matches!(self.connection, Some(RedisConnection::Cluster(_))) {
            // The cluster client recovers by itself from most errors, but not from a seed
            // that was down when it first connected: start over from the seed next time.
            self.connection = None;
        }
    }

    /// `XADD stream [MAXLEN ~ n] * event {json} type {type} message_id {id}` per event.
    ///
    /// Each command is sized up front: growing its buffers argument by argument showed up as
    /// a fifth of the writer's time in the benchmark.
    fn pipeline(&self, batch: &Batch) -> Pipeline {
        let mut pipe = Pipeline::with_capacity(batch.len());
        let maxlen = self.maxlen.to_string();
        for entry in batch.entries() {
            let bytes = self.stream.len()
                + maxlen.len()
                + entry.json.len()
                + entry.message_id.len()
                + XADD_FIXED_BYTES;
            let mut xadd = Cmd::with_capacity(XADD_MAX_ARGS, bytes);
            xadd.arg("XADD").arg(&self.stream);
            if self.maxlen > 0 {
                xadd.arg("MAXLEN").arg("~").arg(&maxlen);
            }
            xadd.arg("*")
                .arg(EVENT_FIELD)
                .arg(entry.json)
                .arg("type")
                .arg(entry.event_type)
                .arg("message_id")
                .arg(entry.message_id);
            pipe.add_command(xadd);
        }
        pipe
    }
}

/// The most arguments of one `XADD`: the command, the key, `MAXLEN ~ n`, the id and three
/// field–value pairs.
const XADD_MAX_ARGS: usize = 12;

/// The bytes of an `XADD`'s fixed arguments (names, `MAXLEN ~`, `*`, the event type).
const XADD_FIXED_BYTES: usize = 64;

impl Connector {
    /// The connector for `config`'s Redis URL, whose requests time out after
    /// `response_timeout`; connects nothing.
    pub(crate) fn new(
        config: &EventsConfig,
        response_timeout: Duration,
    ) -> Result<Connector, SinkError> {
        // Validation made sure a Redis URL is there whenever the sink or a tool needs it.
        let url = config.redis_url.as_deref().unwrap_or("redis://127.0.0.1/");
        if config.redis_cluster {
            let client = ClusterClient::builder([url])
                .connection_timeout(DEFAULT_CONNECT_TIMEOUT)
                .response_timeout(response_timeout)
                .build()?;
            return Ok(Connector::Cluster(client));
        }
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(DEFAULT_RECONNECT_RETRIES)
            .set_connection_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        Ok(Connector::Single(redis::Client::open(url)?, manager))
    }

    /// A connection: lazy for a single server (it connects on first use and reconnects by
    /// itself), made now for a cluster (which must read the slot map first).
    pub(crate) async fn connect(&self) -> Result<RedisConnection, SinkError> {
        Ok(match self {
            Connector::Single(client, config) => RedisConnection::Single(
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
            ),
            Connector::Cluster(client) => {
                RedisConnection::Cluster(client.get_async_connection().await?)
            }
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}
