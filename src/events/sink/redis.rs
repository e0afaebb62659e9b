//! `sink = "redis"`: each event becomes one entry of a Redis stream, a batch a few pipelined
//! rounds of `XADD`s.
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
//! A batch goes out as pipelines of at most [`PIPELINE_MAX_XADDS`] entries, spread over
//! [`REDIS_CONNECTIONS`] connections, and is committed once every one of them is answered.
//! Redis, which runs commands on one thread, takes more of them per second from several
//! connections than from one: `redis-benchmark` on this project's 2-core machine made 530k
//! `XADD`s a second over one connection and about 700k over four. The price is order: the
//! entries of a batch or two in flight may interleave in the stream. Consumers cannot rely on
//! stream order anyway once two mailtrack instances write one stream; `eventId` sorts by time.
//!
//! A pipeline is not a transaction: when a reply is lost the whole batch is retried, and some
//! of its entries may be in the stream twice. Consumers dedupe on `mailtrack.eventId`.

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{Delivery, SinkError};
use crate::config::EventsConfig;
use crate::events::batch::{Batch, Entry};

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
    /// [`REDIS_CONNECTIONS`] of them, made at the first send; empty until then.
    connections: Vec<RedisConnection>,
    /// Pipelines sent so far: which connection the next one takes.
    sent: usize,
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
            connections: Vec::new(),
            sent: 0,
            stream: config.stream.clone(),
            maxlen: config.stream_maxlen,
        })
    }

    /// Sends `batch` as pipelines of at most [`PIPELINE_MAX_XADDS`] entries, spread over the
    /// connections in turn, and returns the wait for Redis's answers, which borrows nothing:
    /// the writer sends the next batch while Redis works on this one.
    pub async fn send(&mut self, batch: &Batch) -> Result<Delivery, SinkError> {
        if self.connections.is_empty() {
            for _ in 0..REDIS_CONNECTIONS {
                self.connections.push(self.connector.connect().await?);
            }
        }
        let sends: Vec<_> = self
            .pipelines(batch)
            .into_iter()
            .map(|pipe| {
                let mut connection = self.connections[self.sent % self.connections.len()].clone();
                self.sent = self.sent.wrapping_add(1);
                async move { pipe.exec_async(&mut connection).await }
            })
            .collect();
        Ok(Box::pin(async move {
            try_join_all(sends).await?;
            Ok(())
        }))
    }

    /// To be called after a batch failed: the next batch starts from fresh connections.
    ///
    /// A batch needs every connection, and a connection manager finds out that its link is
    /// broken only from a request that fails, so after Redis restarts each stale connection
    /// would cost a retry of its own. The cluster client, too, recovers by itself from most
    /// errors but not from a seed that was down when it first connected.
    pub fn failed(&mut self) {
        self.connections.clear();
    }

    /// `XADD stream [MAXLEN ~ n] * event {json} type {type} message_id {id}` per event, in
    /// pipelines of at most [`PIPELINE_MAX_XADDS`].
    ///
    /// Each command is sized up front: growing its buffers argument by argument showed up as
    /// a fifth of the writer's time in the benchmark.
    fn pipelines(&self, batch: &Batch) -> Vec<Pipeline> {
        let maxlen = self.maxlen.to_string();
        let mut pipes = Vec::with_capacity(batch.len().div_ceil(PIPELINE_MAX_XADDS));
        let mut pipe = Pipeline::with_capacity(batch.len().min(PIPELINE_MAX_XADDS));
        for (i, entry) in batch.entries().enumerate() {
            if pipe.len() == PIPELINE_MAX_XADDS {
                let next = Pipeline::with_capacity((batch.len() - i).min(PIPELINE_MAX_XADDS));
                pipes.push(std::mem::replace(&mut pipe, next));
            }
            pipe.add_command(self.xadd(entry, &maxlen));
        }
        if !pipe.is_empty() {
            pipes.push(pipe);
        }
        pipes
    }

    fn xadd(&self, entry: Entry<'_>, maxlen: &str) -> Cmd {
        let bytes = self.stream.len()
            + maxlen.len()
            + entry.json.len()
            + entry.message_id.len()
            + XADD_FIXED_BYTES;
        let mut xadd = Cmd::with_capacity(XADD_MAX_ARGS, bytes);
        xadd.arg("XADD").arg(&self.stream);
        if self.maxlen > 0 {
            xadd.arg("MAXLEN").arg("~").arg(maxlen);
        }
        xadd.arg("*")
            .arg(EVENT_FIELD)
            .arg(entry.json)
            .arg("type")
            .arg(entry.event_type)
            .arg("message_id")
            .arg(entry.message_id);
        xadd
    }
}

/// How many connections a single server's batches are spread over. In `cargo bench --bench
/// events`, interleaved runs of the two builds gave 0.77–0.85 of `redis-benchmark -c 50 -P
/// 64` with four and 0.70–0.72 with one; separate runs through a busy day, 0.61–0.84 with
/// four.
pub const REDIS_CONNECTIONS: usize = 4;

/// The most `XADD`s in one pipeline: a batch of the default 512 events is one pipeline on
/// each connection. A backlog batch (eight times that) queues eight on each.
pub const PIPELINE_MAX_XADDS: usize = 128;

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
