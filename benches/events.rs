//! Events per second through the pipeline's Redis sink, beside `redis-benchmark` doing
//! pipelined `XADD`s of the same entry against the same server in the same run.
//!
//! ```text
//! cargo bench --bench events
//! ```
//!
//! `EVENTS_BENCH_N` (events per run, 200000), `EVENTS_BENCH_BATCH` (`batch_max_events`) and
//! `EVENTS_BENCH_WORKERS` (tokio worker threads, 2) change the run. A third line, redis-rs
//! alone sending one prebuilt pipeline of 512 over and over on one connection, is what a
//! plain client of the same library makes on this machine. Events are written before each
//! run, as request handlers write them; the rate of that writing is printed on its own line.
//!
//! Both write the same fields (`event` with an event's JSON, `type`, `message_id`) with no
//! trimming. `redis-benchmark` runs in two shapes: 64 commands per round trip over 50
//! connections, and one connection sending pipelines of 512 (the default `batch_max_events`),
//! the shape of a writer on one connection. Each of the three runs [`ROUNDS`] times,
//! interleaved, and the best of each is compared. The ratios are ours over theirs: how close
//! the whole path (writing events, the queue, batching, one writer with two batches in flight
//! over the sink's four connections) comes to what the server takes.

#[path = "../tests/support_redis/mod.rs"]
mod support_redis;

use std::process::Command;
use std::time::{Instant, SystemTime};

use mailtrack::config::SinkKind;
use mailtrack::events::sample::sample_click;
use mailtrack::events::{EncodedEvent, EventPipeline, RequestFacts};
use mailtrack::link::{decode, Decoded, LinkTags, MessageId, VerifiedLink};
use mailtrack::testing::{fixed_ring, fixed_signer, request_target};
use support_redis::{events_config, RedisServer};

/// Events per run, unless `EVENTS_BENCH_N` says otherwise.
const DEFAULT_N: usize = 200_000;

/// Runs of each; the best of each is compared.
const ROUNDS: usize = 3;

fn main() {
    let n: usize = std::env::var("EVENTS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_N);
    let server = RedisServer::start();
    let event = EncodedEvent::new(&verified_click(), &facts(SystemTime::now()));
    let payload = String::from_utf8(event.json().to_vec()).expect("JSON is UTF-8");

    // Best of ROUNDS for each, the three interleaved, so that a busy moment on a shared
    // machine costs every one of them a round rather than one of them its result.
    let (mut theirs, mut same_shape, mut ours) = (0f64, 0f64, 0f64);
    for _ in 0..ROUNDS {
        theirs = theirs.max(redis_benchmark(&server, n, &payload, 50, 64));
        same_shape = same_shape.max(redis_benchmark(&server, n, &payload, 1, 512));
        ours = ours.max(pipeline(&server, n));
        let _: () = server.query(redis::cmd("DEL").arg("mailtrack:bench:theirs"));
        let _: () = server.query(redis::cmd("DEL").arg("mailtrack:bench:ours"));
    }

    let floor = redis_rs_alone(&server, n, &payload);
    println!("event payload: {} bytes", payload.len());
    println!(
        "writing events as a handler does: {:>10.0} events/s (not in the pipeline's time)",
        encode_rate(n)
    );
    println!("redis-rs alone, one connection: {floor:>10.0} events/s");
    println!("redis-benchmark -c 50 -P 64:    {theirs:>10.0} events/s");
    println!("redis-benchmark -c 1 -P 512:    {same_shape:>10.0} events/s");
    println!("mailtrack pipeline (Redis):     {ours:>10.0} events/s");
    println!("ratio to redis-benchmark -c 50 -P 64: {:.2}", ours / theirs);
    println!(
        "ratio to redis-benchmark -c 1 -P 512: {:.2}",
        ours / same_shape
    );
}

/// `redis-benchmark -n N -c CLIENTS -P DEPTH -q XADD … event <payload> type Click
/// message_id …`.
fn redis_benchmark(server: &RedisServer, n: usize, payload: &str, clients: u32, depth: u32) -> f64 {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-n", &n.to_string(), "-q"])
        .args(["-c", &clients.to_string(), "-P", &depth.to_string()])
        .args(["XADD", "mailtrack:bench:theirs", "*", "event", payload])
        .args(["type", "Click", "message_id", "bench-message-1"])
        .output()
        .expect("redis-benchmark runs");
    let text = String::from_utf8_lossy(&output.stdout);
    // `-q` ends with "…: 123456.79 requests per second, p50=… msec".
    let rate = text.rsplit(": ").find_map(|part| {
        part.split(" requests per second")
            .next()?
            .trim()
            .parse()
            .ok()
    });
    rate.unwrap_or_else(|| panic!("no rate in redis-benchmark's output: {text}"))
}

/// Offers `n` made events as fast as the queue takes them and waits until all are in Redis.
fn pipeline(server: &RedisServer, n: usize) -> f64 {
    let workers = std::env::var("EVENTS_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut config = events_config(dir.path(), SinkKind::Redis, Some(server.url()));
    config.stream = "mailtrack:bench:ours".to_owned();
    config.stream_maxlen = 0;
    // A throughput run measures the sink path, not the spool that a burst past the
    // watermark would take.
    config.queue_capacity = n;
    config.spool_watermark = n;
    if let Some(batch) = std::env::var("EVENTS_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.batch_max_events = batch;
    }
    // Each event is written as a request handler writes it, with its own id and time, before
    // the clock starts: like redis-benchmark's payload, it is ready when the run begins.
    // Writing it is the handler's cost, which [`encode_rate`] reports.
    let link = verified_click();
    let events: Vec<_> = (0..n)
        .map(|_| EncodedEvent::new(&link, &facts(SystemTime::now())))
        .collect();
    runtime.block_on(async {
        let (queue, pipeline) = EventPipeline::start(&config).expect("the pipeline starts");
        let began = Instant::now();
        for (i, event) in events.into_iter().enumerate() {
            // The queue holds all n: an offer never finds it full.
            queue.offer(event).expect("room in the queue");
            if i % 1024 == 0 {
                // Let the writer run, as a server's many request tasks would.
                tokio::task::yield_now().await;
            }
        }
        let stats = pipeline.shutdown().await;
        let took = began.elapsed();
        assert_eq!(stats.delivered + stats.replayed, n as u64, "{stats:?}");
        n as f64 / took.as_secs_f64()
    })
}

/// Events written per second by `EncodedEvent::new`, as a click's handler writes one.
fn encode_rate(n: usize) -> f64 {
    let link = verified_click();
    let facts = facts(SystemTime::now());
    let began = Instant::now();
    for _ in 0..n {
        std::hint::black_box(EncodedEvent::new(&link, std::hint::black_box(&facts)));
    }
    n as f64 / began.elapsed().as_secs_f64()
}

/// The link of [`sample_click`], signed and verified as `serve` verifies it.
fn verified_click() -> VerifiedLink {
    let sample = sample_click("bench-message-1");
    let click = sample.click.expect("a click");
    let id = MessageId::new(&sample.mail.message_id).expect("a message id");
    let tags = LinkTags::parse("campaign:fall").expect("tags");
    let url = fixed_signer()
        .click_url(&click.link, &id, &tags)
        .expect("a trackable URL");
    match decode(request_target(&url), &fixed_ring()) {
        Decoded::Verified(link) => link,
        other => panic!("the fixed signer's link verifies: {other:?}"),
    }
}

/// The request facts of [`sample_click`], received at `at`.
fn facts(at: SystemTime) -> RequestFacts<'static> {
    RequestFacts {
        client_ip: "2001:db8::1".parse().expect("an address"),
        user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
        tracking_domain: "track.example.com",
        method: "GET",
        received: at,
    }
}

/// The same entries sent by redis-rs alone: prebuilt pipelines of 512, one at a time, over
/// one connection of the kind the sink uses.
fn redis_rs_alone(server: &RedisServer, n: usize, payload: &str) -> f64 {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = redis::Client::open(server.url()).expect("a client");
        let mut connection = redis::aio::ConnectionManager::new(client)
            .await
            .expect("a connection");
        let mut pipe = redis::pipe();
        for _ in 0..512 {
            pipe.cmd("XADD")
                .arg("mailtrack:bench:floor")
                .arg("*")
                .arg("event")
                .arg(payload)
                .arg("type")
                .arg("Click")
                .arg("message_id")
                .arg("bench-message-1");
        }
        let began = Instant::now();
        for _ in 0..n / 512 {
            pipe.exec_async(&mut connection).await.expect("XADD");
        }
        (n / 512 * 512) as f64 / began.elapsed().as_secs_f64()
    })
}
