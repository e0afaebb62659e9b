//! The endpoint's reads of the events stream, `XREADGROUP`, sent and read here rather than
//! through redis-rs: the one command that carries nearly all of notify's bytes.
//!
//! redis-rs parses every reply into a tree of [`redis::Value`]s with combine's parser
//! combinators: 24–28% of notify's CPU in a profile of `benches/notify.sh` (the self time of
//! combine's and redis-rs's parsers, under `perf record`), more than signing the bodies.
//! Here the reply is decoded by `redis-protocol` into frames that point into the read
//! buffer, and each event's bytes are copied once, from that buffer into its [`LogEntry`].
//!
//! [`StreamReads`] keeps a connection per read in flight (the worker runs reads ahead, see
//! `worker::ReadAhead`), each carrying one command at a time, so no reply can be taken for
//! another read's. A connection that fails, or whose reply is late, is dropped, and the next
//! read dials again; an error Redis answers leaves it usable. Redis takes commands from
//! different connections in the order they arrive, which two reads sent at once may not
//! keep: their batches may go out in either order, as attempts running at once already
//! may (deliveries are unordered, docs/notify.md).
//!
//! Plain TCP only, with the URL's user, password and database; the connection speaks RESP2
//! whatever protocol the URL asks for, since a read's reply is the same in both. Over TLS or
//! a Unix socket, [`StreamReads::open`] gives `None`, and the reads go through redis-rs, as
//! every other command does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{ConnectionAddr, ErrorKind, RedisError};
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::redis_log::{LogEntry, EVENT_FIELD, TYPE_FIELD};

/// What a connection reads from its socket at a time, at least: a read of 100 events of
/// about 500 bytes comes in a few.
const READ_CHUNK: usize = 64 * 1024;

/// The events stream's reads for one endpoint, over plain TCP. Clones share the connections.
#[derive(Clone)]
pub struct StreamReads {
    shared: Arc<Shared>,
}

struct Shared {
    host: String,
    port: u16,
    /// What a new connection sends before its first read (`HELLO`, `AUTH`, `SELECT`), and
    /// how many replies that makes.
    handshake: (Vec<u8>, usize),
    /// How long a reply may take beyond the read's own block.
    response_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for StreamReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReads")
            .field("host", &self.shared.host)
            .field("port", &self.shared.port)
            .finish_non_exhaustive()
    }
}

/// One connection and what it has read but not yet parsed.
struct Connection {
    socket: TcpStream,
    buffer: Vec<u8>,
}

impl StreamReads {
    /// Reads for `client`'s server, each connection dialled when first needed, or `None`
    /// when it is not reached over plain TCP. A reply may take `response_timeout` beyond a
    /// read's block.
    pub fn open(client: &redis::Client, response_timeout: Duration) -> Option<StreamReads> {
        let info = client.get_connection_info();
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return None;
        };
        let settings = info.redis_settings();
        let mut handshake = redis::pipe();
        if let Some(password) = settings.password() {
            let auth = handshake.cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
        }
        if settings.db() != 0 {
            handshake.cmd("SELECT").arg(settings.db());
        }
        let replies = handshake.len();
        let handshake = handshake.get_packed_pipeline();
        Some(StreamReads {
            shared: Arc::new(Shared {
                host: host.clone(),
                port: *port,
                handshake: (handshake, replies),
                response_timeout,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Sends `read`, an `XREADGROUP` blocking up to `block` (see [`read_group`]), and gives
    /// the entries of its reply.
    ///
    /// [`read_group`]: crate::events::tail::read_group
    pub async fn read_group(
        &self,
        read: &redis::Cmd,
        block: Duration,
    ) -> Result<Vec<LogEntry>, RedisError> {
        let command = read.get_packed_command();
        let limit = self.shared.response_timeout + block;
        let exchange = async {
            let mut connection = self.connection().await?;
            if let Err(error) = connection.socket.write_all(&command).await {
                self.forget_idle();
                return Err(error.into());
            }
            let reply = connection.reply(entries).await;
            // An error Redis answered ends the exchange cleanly; anything else may have left
            // part of a reply unread. A socket that failed most likely means Redis went away,
            // and the idle connections with it: the next read dials afresh.
            match &reply {
                Ok(_) | Err(Failure::Answered(_)) => self.put_back(connection),
                Err(Failure::Io(_)) => self.forget_idle(),
                Err(Failure::Protocol(_)) => {}
            }
            reply.map_err(RedisError::from)
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("Redis did not answer XREADGROUP within {limit:?}"),
            ))),
        }
    }

    /// An idle connection, or a new one, handshake done.
    async fn connection(&self) -> Result<Connection, RedisError> {
        let idle = match self.shared.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(_) => None,
        };
        if let Some(connection) = idle {
            return Ok(connection);
        }
        let socket = TcpStream::connect((self.shared.host.as_str(), self.shared.port)).await?;
        socket.set_nodelay(true)?;
        let mut connection = Connection {
            socket,
            buffer: Vec::with_capacity(READ_CHUNK),
        };
        let (handshake, replies) = &self.shared.handshake;
        connection.socket.write_all(handshake).await?;
        for _ in 0..*replies {
            connection
                .reply(skip)
                .await
                .map_err(|failure| match failure {
                    Failure::Answered(text) => RedisError::from((
                        ErrorKind::AuthenticationFailed,
                        "Redis refused the connection's handshake",
                        text,
                    )),
                    other => RedisError::from(other),
                })?;
        }
        Ok(connection)
    }

    fn forget_idle(&self) {
        if let Ok(mut idle) = self.shared.idle.lock() {
            idle.clear();
        }
    }

    fn put_back(&self, connection: Connection) {
        if let Ok(mut idle) = self.shared.idle.lock() {
            idle.push(connection);
        }
    }
}

/// Why a reply was not had.
#[derive(Debug)]
enum Failure {
    /// The socket failed, or closed.
    Io(std::io::Error),
    /// The bytes are not RESP, or not the reply's shape.
    Protocol(String),
    /// Redis answered an error, this one.
    Answered(String),
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::Io(error)
    }
}

impl From<Failure> for RedisError {
    fn from(failure: Failure) -> RedisError {
        match failure {
            Failure::Io(error) => RedisError::from(error),
            Failure::Protocol(what) => {
                RedisError::from((ErrorKind::Parse, "a reply that is not RESP", what))
            }
            Failure::Answered(text) => {
                RedisError::from((ErrorKind::Client, "Redis answered an error", text))
            }
        }
    }
}

impl Connection {
    /// Reads one whole reply and makes it into a `T` with `parse`, from its frame and the
    /// bytes the frame's ranges are of.
    async fn reply<T>(
        &mut self,
        parse: fn(RangeFrame, &[u8]) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        loop {
            // A reply that is not all in yet is decoded again from its start once more has
            // come: a read's reply of 100 events comes in one or two pieces.
            let decoded = decode_range(&self.buffer)
                .map_err(|e| Failure::Protocol(e.details().to_owned()))?;
            if let Some((frame, end)) = decoded {
                let bytes = &self.buffer[..end];
                let parsed = match frame {
                    RangeFrame::Error(range) => Err(Failure::Answered(text(bytes, range))),
                    frame => parse(frame, bytes),
                };
                self.buffer.drain(..end);
                return parsed;
            }
            self.buffer.reserve(READ_CHUNK);
            if self.socket.read_buf(&mut self.buffer).await? == 0 {
                return Err(Failure::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            // And whatever else has come already: a long reply is then decoded again once
            // for each piece the socket had at hand, not once for each read's worth.
            loop {
                self.buffer.reserve(READ_CHUNK);
                match self.socket.try_read_buf(&mut self.buffer) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

fn text(bytes: &[u8], (start, end): (usize, usize)) -> String {
    String::from_utf8_lossy(&bytes[start..end]).into_owned()
}

/// A reply whose content does not matter (the handshake's), only that it is no error.
fn skip(_: RangeFrame, _: &[u8]) -> Result<(), Failure> {
    Ok(())
}

/// The entries of an `XREADGROUP` reply: `[[stream, [entry, …]], …]`, nil when none came
/// within the block. An entry is `[id, [field, value, …]]`, its fields nil once it was
/// deleted.
fn entries(reply: RangeFrame, bytes: &[u8]) -> Result<Vec<LogEntry>, Failure> {
    let streams = match reply {
        RangeFrame::Array(streams) => streams,
        RangeFrame::Null => return Ok(Vec::new()),
        _ => return Err(shape("a reply that is not a list of streams")),
    };
    let mut entries = Vec::new();
    for stream in streams {
        let RangeFrame::Array(pair) = stream else {
            return Err(shape("a stream that is not [name, entries]"));
        };
        let Some(RangeFrame::Array(list)) = pair.into_iter().nth(1) else {
            return Err(shape("a stream that is not [name, entries]"));
        };
        entries.reserve(list.len());
        for entry in list {
            entries.push(log_entry(entry, bytes)?);
        }
    }
    Ok(entries)
}

/// One entry, `[id, [field, value, …]]`.
fn log_entry(entry: RangeFrame, bytes: &[u8]) -> Result<LogEntry, Failure> {
    let RangeFrame::Array(parts) = entry else {
        return Err(shape("an entry that is not [id, fields]"));
    };
    let mut parts = parts.into_iter();
    let Some(RangeFrame::BulkString((start, end))) = parts.next() else {
        return Err(shape("an entry without an id"));
    };
    let id = String::from_utf8(bytes[start..end].to_vec())
        .map_err(|_| shape("an entry id that is not UTF-8"))?;
    let (mut event, mut event_type) = (None, None);
    if let Some(RangeFrame::Array(fields)) = parts.next() {
        let mut fields = fields.into_iter();
        while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
            let (RangeFrame::BulkString(name), RangeFrame::BulkString(value)) = (field, value)
            else {
                continue;
            };
            let value = || String::from_utf8(bytes[value.0..value.1].to_vec()).ok();
            match &bytes[name.0..name.1] {
                name if name == EVENT_FIELD.as_bytes() => event = value(),
                name if name == TYPE_FIELD.as_bytes() => event_type = value(),
                _ => {}
            }
        }
    }
    Ok(LogEntry {
        id,
        event,
        event_type,
    })
}

fn shape(what: &str) -> Failure {
    Failure::Protocol(format!("XREADGROUP's reply: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(reply: &[u8]) -> Result<Vec<LogEntry>, Failure> {
        let (frame, end) = decode_range(reply).unwrap().expect("a whole reply");
        assert_eq!(end, reply.len());
        entries(frame, reply)
    }

    fn entry(id: &str, event: Option<&str>) -> LogEntry {
        LogEntry {
            id: id.into(),
            event: event.map(str::to_owned),
            event_type: None,
        }
    }

    #[test]
    fn a_read_reply_gives_each_entry_and_its_event() {
        let reply = b"*1\r\n*2\r\n$1\r\ns\r\n*4\r\n\
            *2\r\n$3\r\n1-0\r\n*4\r\n$5\r\nother\r\n$1\r\nx\r\n$5\r\nevent\r\n$7\r\n{\"a\":1}\r\n\
            *2\r\n$3\r\n2-0\r\n*-1\r\n\
            *2\r\n$3\r\n3-0\r\n*2\r\n$4\r\nkind\r\n$4\r\ntest\r\n\
            *2\r\n$3\r\n4-0\r\n*4\r\n$5\r\nevent\r\n$2\r\n{}\r\n\
            $4\r\ntype\r\n$5\r\nClick\r\n";
        let wanted = vec![
            entry("1-0", Some(r#"{"a":1}"#)),
            // Deleted after it was read, as a re-read of the pending shows it.
            entry("2-0", None),
            // Not ours: no `event` field.
            entry("3-0", None),
            // As the Redis sink writes it: the type beside the JSON.
            LogEntry {
                event_type: Some("Click".into()),
                ..entry("4-0", Some("{}"))
            },
        ];
        assert_eq!(parsed(reply).unwrap(), wanted);
        assert_eq!(
            parsed(b"*-1\r\n").unwrap(),
            [],
            "nothing came within the block"
        );
    }

    #[test]
    fn a_reply_of_another_shape_is_refused() {
        for reply in [
            b":1\r\n".as_slice(),
            b"*1\r\n$1\r\ns\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n:5\r\n",
        ] {
            assert!(
                matches!(parsed(reply), Err(Failure::Protocol(_))),
                "{reply:?}"
            );
        }
    }
}
