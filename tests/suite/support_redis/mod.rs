//! A real `redis-server` for the events tests: started on a free port in its own folder,
//! killed with SIGKILL and restarted on demand (with its AOF, when asked), and stopped when
//! dropped. Plus the helpers that read a stream back and check events against the schema.

// Each test file uses a different part of this helper, and test crates have no public API
// for `unreachable_pub` to protect.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mailtrack::config::{EventsConfig, SinkKind};
use mailtrack::events::{Event, EventQueue, QueueError};
use serde_json::Value;

pub mod schema;

/// Where the tests look for the server; `REDIS_SERVER` overrides it.
fn redis_server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// A running `redis-server`, stopped on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// A server with no persistence.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&["--appendonly", "no"])
    }

    /// A server whose every write is in its append-only file before it answers, so that a
    /// restart after SIGKILL has everything it acknowledged.
    pub fn start_with_aof() -> RedisServer {
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A server with `extra` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary folder"),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix. It fails only if the child already exited.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and folder (so it reloads its AOF).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// A synchronous client connection.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("a connection to the test server")
    }

    /// Runs a command and returns its reply.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        cmd.query(&mut self.connection())
            .expect("the command succeeds")
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        args.extend(self.extra.iter().map(String::as_str));
        let child = Command::new(redis_server_binary())
            .args(&args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (install it, or set REDIS_SERVER)");
        self.child = Some(child);
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            match pong {
                // A server with `--requirepass` is up once it asks for the password.
                Ok(_) => return,
                Err(e) if e.code() == Some("NOAUTH") => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not start: {e}"),
                // Loading the AOF answers LOADING for a moment; retry.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

/// The events config of a test: its files in `dir`, the sink as given, short timeouts.
pub fn events_config(dir: &Path, sink: SinkKind, redis_url: Option<String>) -> EventsConfig {
    let mut config = EventsConfig::defaults(dir);
    config.sink = sink;
    config.redis_url = redis_url;
    config.sink_timeout = Duration::from_millis(500);
    config
}

/// Every entry of `stream`, oldest first, as (event JSON, `type`, `message_id`).
pub fn stream_entries(server: &RedisServer, stream: &str) -> Vec<(Value, String, String)> {
    let mut entries = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let reply: redis::streams::StreamRangeReply = server.query(
            redis::cmd("XRANGE")
                .arg(stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(10_000),
        );
        let Some(last) = reply.ids.last() else { break };
        start = format!("({}", last.id);
        for id in &reply.ids {
            let json: Vec<u8> = id.get("event").expect("an event field");
            let json = serde_json::from_slice(&json).expect("the event field is JSON");
            let kind: String = id.get("type").expect("a type field");
            let message_id: String = id.get("message_id").expect("a message_id field");
            entries.push((json, kind, message_id));
        }
    }
    entries
}

/// The `mailtrack.eventId` of an event's JSON.
pub fn event_id(event: &Value) -> String {
    event["mailtrack"]["eventId"]
        .as_str()
        .expect("an eventId")
        .to_owned()
}

/// Four producers offering events made by `make` as fast as the queue takes them, until it
/// closes; returns their tasks and the count of events the queue accepted.
pub fn spawn_producers(
    queue: &EventQueue,
    make: fn(&str) -> Event,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<AtomicU64>) {
    let accepted = Arc::new(AtomicU64::new(0));
    let producers = (0..4)
        .map(|p| {
            let (queue, accepted) = (queue.clone(), Arc::clone(&accepted));
            tokio::spawn(async move {
                for i in 0.. {
                    match queue.offer(make(&format!("p{p}-{i}"))) {
                        Ok(()) => accepted.fetch_add(1, Ordering::Relaxed),
                        Err(QueueError::Full) => 0,
                        Err(_) => break,
                    };
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    (producers, accepted)
}

/// The event ids `mailtrack events tail` printed, after checking it succeeded.
pub fn printed_event_ids(output: std::process::Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| event_id(&serde_json::from_str(line).expect("a JSON line")))
        .collect()
}
