//! The events stream as one endpoint reads it, and that endpoint's retries and dead letters,
//! all in Redis, so that any number of `notify` processes share an endpoint's work and none
//! of it lives only in one process's memory.
//!
//! - **The log.** A consumer group per endpoint, `mailtrack-notify:{endpoint}`, on the events
//!   stream. An entry is acknowledged only once it is delivered, or safely in the retry set.
//!   Entries a dead process had read are claimed by the others once they have been pending
//!   for the store's `claim_idle` (`[notify] claim_idle_ms`, [`CLAIM_MIN_IDLE`] by default).
//! - **Retries.** A sorted set, `{stream}:notify:{endpoint}:retry`, of deliveries scored by
//!   when their next attempt is due. A process takes due ones with a lease (their score
//!   moved [`RETRY_LEASE`] ahead, in one script), so that a process that dies mid-attempt
//!   leaves them to be taken again.
//! - **Dead letters.** A stream, `{stream}:notify:{endpoint}:dead`, of the deliveries whose
//!   schedule ran out: each entry holds the delivery and its last answer, for
//!   `notify recover`.
//!
//! Entries of the events stream have the field `event` holding the event's JSON (the events
//! sink's contract, docs/events.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamId;
use redis::{RedisError, Value};
use serde::{Deserialize, Serialize};

use super::resp::StreamReads;
use crate::events::tail::read_group;

/// The events stream's field that holds an event's JSON.
pub const EVENT_FIELD: &str = "event";

/// How long an entry read by another consumer must be pending before it is claimed, by
/// default: far longer than a delivery's timeout and a batch's linger together, so that a
/// live process's entries are never taken from it. `[notify] claim_idle_ms` sets it.
pub const CLAIM_MIN_IDLE: Duration = crate::config::notify::DEFAULT_CLAIM_IDLE;

/// How far ahead a taken retry's score is moved while it is attempted: longer than any
/// attempt's timeout, so only a dead process's retries come due again.
pub const RETRY_LEASE: Duration = Duration::from_secs(120);

/// How long a connection may wait for Redis (beyond a blocking read's own wait).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Moves due members' scores `lease` ms ahead and returns them: KEYS[1] the set, ARGV[1]
/// now (ms), ARGV[2] the lease (ms), ARGV[3] the most to take.
const TAKE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], member)
end
return due
";

/// One delivery: the events it carries (their JSON, exactly as in the log) and how many
/// attempts it has had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its `webhook-id`, the same for every attempt.
    pub id: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The events, as JSON texts.
    pub events: Vec<String>,
    /// When each event was written to the log (its entry id's milliseconds), index by
    /// index: for the delivery latency metric, and so that `notify recover` can tell a dead
    /// letter's events' times. Empty for deliveries recorded before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logged_ms: Vec<u64>,
}

impl Delivery {
    /// The body of an attempt: a JSON array of the events' own bytes.
    pub fn body(&self) -> bytes::Bytes {
        let len = self.events.iter().map(|e| e.len() + 1).sum::<usize>() + 2;
        let mut body = Vec::with_capacity(len);
        body.push(b'[');
        for (n, event) in self.events.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(event.as_bytes());
        }
        body.push(b']');
        body.into()
    }

    fn member(&self) -> String {
        // A delivery holds strings and a number: it always serialises.
        serde_json::to_string(self).expect("a delivery serialises")
    }
}

/// An entry of the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The stream entry's id.
    pub id: String,
    /// The event's JSON, or `None` for an entry without one (not ours).
    pub event: Option<String>,
    /// The event's type, when the entry names it beside the JSON (the Redis sink writes it
    /// as the `type` field; the events file has only the JSON).
    pub event_type: Option<String>,
}

/// The stream entry's field that holds an event's type, beside its JSON (docs/events.md).
pub const TYPE_FIELD: &str = "type";

/// One endpoint's view of Redis.
#[derive(Clone)]
pub struct EndpointStore {
    /// For blocking reads: a blocked connection would hold up every other command on it.
    reads: Reads,
    writes: ConnectionManager,
    stream: String,
    group: String,
    consumer: String,
    retry_key: String,
    dead_key: String,
    claim_idle: Duration,
}

impl std::fmt::Debug for EndpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointStore")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// Where the stream's reads go.
#[derive(Clone)]
enum Reads {
    /// Over plain TCP, in RESP of our own ([`StreamReads`]).
    Resp(StreamReads),
    /// Over TLS or a Unix socket, through redis-rs.
    Redis(ConnectionManager),
}

/// The stream of `endpoint`'s dead letters, beside the events `stream`.
pub fn dead_letters_key(stream: &str, endpoint: &str) -> String {
    format!("{stream}:notify:{endpoint}:dead")
}

/// Entries one `XRANGE` of `notify recover` reads at a time: large enough that a day of a
/// busy stream takes few round trips, small enough that no reply is large.
pub const RANGE_PAGE: usize = 1000;

/// A dead letter as stored: its entry in the dead letters stream, the delivery, and the last
/// answer the receiver gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its entry id in the dead letters stream; the milliseconds are when it died.
    pub id: String,
    /// The delivery, as it was last attempted.
    pub delivery: Delivery,
    /// The last answer (or what went wrong).
    pub answer: String,
}

/// Every entry of `stream` from `start` to `end` (ids or milliseconds, inclusive), a page of
/// [`RANGE_PAGE`] at a time.
async fn range(
    connection: &mut ConnectionManager,
    stream: &str,
    start: &str,
    end: &str,
) -> Result<Vec<StreamId>, RedisError> {
    let mut entries = Vec::new();
    let mut from = start.to_owned();
    loop {
        let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&from)
            .arg(end)
            .arg("COUNT")
            .arg(RANGE_PAGE)
            .query_async(connection)
            .await?;
        let full = page.ids.len() == RANGE_PAGE;
        if let Some(last) = page.ids.last() {
            from = format!("({}", last.id);
        }
        entries.extend(page.ids);
        if !full {
            return Ok(entries);
        }
    }
}

/// The milliseconds of a stream entry id (`1764669600000-0`): when Redis added the entry.
pub fn entry_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl EndpointStore {
    /// Connects to `redis_url` for `endpoint`, reading `stream` as `consumer`, and creates
    /// the endpoint's group if it is missing, at the stream's start: an endpoint added later
    /// is delivered what the stream still holds. Entries other consumers left pending for
    /// `claim_idle` are taken over by [`EndpointStore::claim_stale`].
    pub async fn open(
        redis_url: &str,
        stream: &str,
        endpoint: &str,
        consumer: &str,
        block: Duration,
        claim_idle: Duration,
    ) -> Result<EndpointStore, RedisError> {
        let client = redis::Client::open(redis_url)?;
        let config = |timeout| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(RESPONSE_TIMEOUT))
                .set_response_timeout(Some(timeout))
        };
        let reads = match StreamReads::open(&client, RESPONSE_TIMEOUT) {
            Some(reads) => Reads::Resp(reads),
            None => Reads::Redis(
                ConnectionManager::new_with_config(
                    client.clone(),
                    config(RESPONSE_TIMEOUT + block),
                )
                .await?,
            ),
        };
        let writes = ConnectionManager::new_with_config(client, config(RESPONSE_TIMEOUT)).await?;
        let mut store = EndpointStore {
            reads,
            writes,
            stream: stream.to_owned(),
            group: format!("mailtrack-notify:{endpoint}"),
            consumer: consumer.to_owned(),
            retry_key: format!("{stream}:notify:{endpoint}:retry"),
            dead_key: dead_letters_key(stream, endpoint),
            claim_idle,
        };
        store.create_group().await?;
        Ok(store)
    }

    async fn create_group(&mut self) -> Result<(), RedisError> {
        let created: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.writes)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map(drop),
        }
    }

    /// How long an entry must be pending before [`EndpointStore::claim_stale`] takes it.
    pub fn claim_idle(&self) -> Duration {
        self.claim_idle
    }

    /// Takes over up to `count` entries other consumers read and never acknowledged.
    pub async fn claim_stale(&mut self, count: usize) -> Result<Vec<LogEntry>, RedisError> {
        // `[next start, [entry, …], [deleted id, …]]`.
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.writes)
            .await?;
        let claimed = match reply {
            Value::Array(parts) => parts.into_iter().nth(1),
            _ => None,
        };
        Ok(owned_entries(claimed))
    }

    /// Reads up to `count` entries never delivered to the group, waiting up to `block`.
    pub async fn read_new(
        &mut self,
        count: usize,
        block: Duration,
    ) -> Result<Vec<LogEntry>, RedisError> {
        let block_ms = block.as_millis().max(1) as u64;
        let read = read_group(&self.group, &self.consumer, count, block_ms, &self.stream);
        match &mut self.reads {
            Reads::Resp(reads) => reads.read_group(&read, block).await,
            Reads::Redis(connection) => Ok(read_entries(read.query_async(connection).await?)),
        }
    }

    /// Acknowledges entries: delivered, or not wanted by the endpoint.
    pub async fn acknowledge(&mut self, ids: &[String]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        self.acknowledge_in(&mut pipeline, ids);
        pipeline.exec_async(&mut self.writes).await
    }

    /// Adds the `XACK` of `ids` (if any) to `pipeline`, so that it commits with the rest.
    fn acknowledge_in(&self, pipeline: &mut redis::Pipeline, ids: &[String]) {
        if !ids.is_empty() {
            pipeline
                .cmd("XACK")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(ids)
                .ignore();
        }
    }

    /// Puts a delivery of log entries `ids` into the retry set, due at `due_ms`, and
    /// acknowledges the entries, in one transaction: the events are in one place or the other.
    pub async fn schedule_first_retry(
        &mut self,
        delivery: &Delivery,
        due_ms: u64,
        ids: &[String],
    ) -> Result<(), RedisError> {
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .zadd(&self.retry_key, delivery.member(), due_ms)
            .ignore();
        self.acknowledge_in(&mut transaction, ids);
        transaction.exec_async(&mut self.writes).await
    }

    /// Takes up to `count` deliveries due now, under a lease.
    pub async fn take_due(&mut self, count: usize) -> Result<Vec<Delivery>, RedisError> {
        // EVAL, not EVALSHA: the script is a few hundred bytes, and this needs no script cache.
        let members: Vec<String> = redis::cmd("EVAL")
            .arg(TAKE_DUE)
            .arg(1)
            .arg(&self.retry_key)
            .arg(now_ms())
            .arg(RETRY_LEASE.as_millis() as u64)
            .arg(count)
            .query_async(&mut self.writes)
            .await?;
        Ok(members
            .iter()
            .filter_map(|member| serde_json::from_str(member).ok())
            .collect())
    }

    /// A delivery from the retry set was delivered: it leaves the set.
    pub async fn retry_done(&mut self, delivery: &Delivery) -> Result<(), RedisError> {
        redis::cmd("ZREM")
            .arg(&self.retry_key)
            .arg(delivery.member())
            .exec_async(&mut self.writes)
            .await
    }

    /// A delivery from the retry set failed again: it comes back, one attempt older, at
    /// `due_ms`.
    pub async fn retry_again(
        &mut self,
        before: &Delivery,
        after: &Delivery,
        due_ms: u64,
    ) -> Result<(), RedisError> {
        redis::pipe()
            .atomic()
            .zrem(&self.retry_key, before.member())
            .ignore()
            .zadd(&self.retry_key, after.member(), due_ms)
            .ignore()
            .exec_async(&mut self.writes)
            .await
    }

    /// A delivery whose schedule ran out becomes a dead letter, with its last answer; it
    /// leaves the retry set (when it came from there) and its log entries are acknowledged,
    /// in one transaction.
    pub async fn dead_letter(
        &mut self,
        delivery: &Delivery,
        from_retry_set: bool,
        ids: &[String],
        last_answer: &str,
    ) -> Result<(), RedisError> {
        let mut transaction = redis::pipe();
        transaction.atomic();
        transaction
            .cmd("XADD")
            .arg(&self.dead_key)
            .arg("*")
            .arg("delivery")
            .arg(delivery.member())
            .arg("answer")
            .arg(last_answer)
            .ignore();
        if from_retry_set {
            transaction
                .zrem(&self.retry_key, delivery.member())
                .ignore();
        }
        self.acknowledge_in(&mut transaction, ids);
        transaction.exec_async(&mut self.writes).await
    }

    /// How far the endpoint is behind the log: the entries it has not read, and the age of
    /// the oldest of them (zero when it is caught up).
    pub async fn lag(&mut self) -> Result<(u64, Duration), RedisError> {
        let groups: Vec<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(&mut self.writes)
            .await?;
        let mut lag = 0;
        let mut last_read = String::from("0-0");
        for group in groups {
            let fields: std::collections::HashMap<String, redis::Value> =
                redis::from_redis_value(group)?;
            let is_ours = fields
                .get("name")
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                == Some(self.group.clone());
            if !is_ours {
                continue;
            }
            // `lag` is nil when Redis cannot tell (after some deletions): count it as none.
            lag = fields
                .get("lag")
                .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                .unwrap_or(0);
            if let Some(id) = fields.get("last-delivered-id") {
                last_read = redis::from_redis_value_ref(id)?;
            }
        }
        if lag == 0 {
            return Ok((0, Duration::ZERO));
        }
        // The oldest unread entry is the first after the last one read.
        let next: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg(format!("({last_read}"))
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.writes)
            .await?;
        let written_ms = next
            .first()
            .and_then(|(id, _)| entry_ms(id))
            .unwrap_or_else(now_ms);
        Ok((
            lag,
            Duration::from_millis(now_ms().saturating_sub(written_ms)),
        ))
    }

    /// The log's entries written from `since_ms` to `until_ms`, both inclusive.
    pub async fn log_window(
        &mut self,
        since_ms: u64,
        until_ms: u64,
    ) -> Result<Vec<LogEntry>, RedisError> {
        let entries = range(
            &mut self.writes,
            &self.stream,
            &since_ms.to_string(),
            &until_ms.to_string(),
        )
        .await?;
        Ok(entries.into_iter().map(entry).collect())
    }

    /// Every dead letter of the endpoint, oldest first; an entry that does not hold a
    /// delivery (not ours) is left out.
    pub async fn dead_letter_list(&mut self) -> Result<Vec<DeadLetter>, RedisError> {
        let entries = range(&mut self.writes, &self.dead_key, "-", "+").await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let delivery = serde_json::from_str(&entry.get::<String>("delivery")?).ok()?;
                let answer = entry.get::<String>("answer").unwrap_or_default();
                Some(DeadLetter {
                    id: entry.id,
                    delivery,
                    answer,
                })
            })
            .collect())
    }

    /// Removes dead letters, once delivered.
    pub async fn remove_dead_letters(&mut self, ids: &[String]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        redis::cmd("XDEL")
            .arg(&self.dead_key)
            .arg(ids)
            .exec_async(&mut self.writes)
            .await
    }

    /// How many dead letters the endpoint has.
    pub async fn dead_letters(&mut self) -> Result<u64, RedisError> {
        redis::cmd("XLEN")
            .arg(&self.dead_key)
            .query_async(&mut self.writes)
            .await
    }

    /// How many deliveries wait in the retry set.
    pub async fn retries_waiting(&mut self) -> Result<u64, RedisError> {
        redis::cmd("ZCARD")
            .arg(&self.retry_key)
            .query_async(&mut self.writes)
            .await
    }
}

/// The entries of an `XREADGROUP` reply as redis-rs parsed it (of one stream:
/// `[[stream, [entry, …]]]`, or a map under RESP3; nil when none came), for reads over TLS
/// or a Unix socket (over plain TCP, [`StreamReads`] reads them itself), taken apart by
/// value: each event's bytes move into its [`LogEntry`] as they came, where redis-rs's
/// `StreamReadReply` copies every field into a map of values first, and `StreamId::get`
/// copies it again (12% of notify's CPU, in a profile of `benches/notify.sh`).
fn read_entries(reply: Value) -> Vec<LogEntry> {
    let streams = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(pair) => pair.into_iter().nth(1),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    streams
        .into_iter()
        .flat_map(|entries| owned_entries(Some(entries)))
        .collect()
}

/// The entries of a list of them, `[[id, [field, value, …]], …]`.
fn owned_entries(list: Option<Value>) -> Vec<LogEntry> {
    match list {
        Some(Value::Array(entries)) => entries.into_iter().filter_map(owned_entry).collect(),
        _ => Vec::new(),
    }
}

/// One entry, `[id, [field, value, …]]`; its fields are nil once the entry was deleted.
fn owned_entry(entry: Value) -> Option<LogEntry> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let mut parts = parts.into_iter();
    let id = owned_string(parts.next()?)?;
    let (mut event, mut event_type) = (None, None);
    if let Some(Value::Array(fields)) = parts.next() {
        let mut fields = fields.into_iter();
        while let (Some(Value::BulkString(name)), Some(value)) = (fields.next(), fields.next()) {
            match std::str::from_utf8(&name) {
                Ok(EVENT_FIELD) => event = owned_string(value),
                Ok(TYPE_FIELD) => event_type = owned_string(value),
                _ => {}
            }
        }
    }
    Some(LogEntry {
        id,
        event,
        event_type,
    })
}

/// An entry of a range read (`notify recover`'s, not on the delivery path).
fn entry(id: StreamId) -> LogEntry {
    LogEntry {
        event: id.get(EVENT_FIELD),
        event_type: id.get(TYPE_FIELD),
        id: id.id,
    }
}

fn owned_string(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_the_events_own_bytes_in_an_array() {
        let delivery = Delivery {
            id: "msg_1".into(),
            attempts: 0,
            events: vec![r#"{"a": 1}"#.into(), r#"{"b":"é"}"#.into()],
            logged_ms: Vec::new(),
        };
        assert_eq!(&delivery.body()[..], r#"[{"a": 1},{"b":"é"}]"#.as_bytes());
        let back: Delivery = serde_json::from_str(&delivery.member()).unwrap();
        assert_eq!(back, delivery);
        // A member written before log times were kept reads back, and writes the same.
        assert!(!delivery.member().contains("logged_ms"));
        let logged = Delivery {
            logged_ms: vec![1_764_669_600_000, 1_764_669_600_001],
            ..delivery
        };
        let back: Delivery = serde_json::from_str(&logged.member()).unwrap();
        assert_eq!(back, logged);
        assert_eq!(entry_ms("1764669600000-3"), Some(1_764_669_600_000));
        assert_eq!(entry_ms("nope"), None);
    }

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_read_reply_gives_each_entry_and_its_event() {
        let entries = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![
                    bulk("other"),
                    bulk("x"),
                    bulk("event"),
                    bulk("{}"),
                    bulk("type"),
                    bulk("Open"),
                ]),
            ]),
            // An entry deleted after it was read, as a re-read of the pending shows it.
            Value::Array(vec![bulk("2-0"), Value::Nil]),
            Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("kind"), bulk("test")]),
            ]),
        ]);
        let wanted = vec![
            LogEntry {
                id: "1-0".into(),
                event: Some("{}".into()),
                event_type: Some("Open".into()),
            },
            LogEntry {
                id: "2-0".into(),
                event: None,
                event_type: None,
            },
            LogEntry {
                id: "3-0".into(),
                event: None,
                event_type: None,
            },
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), entries.clone()])]);
        assert_eq!(read_entries(resp2), wanted);
        let resp3 = Value::Map(vec![(bulk("s"), entries)]);
        assert_eq!(read_entries(resp3), wanted);
        assert_eq!(
            read_entries(Value::Nil),
            [],
            "nothing came within the block"
        );
    }
}
