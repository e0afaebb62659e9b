//! Events per second through the pipeline's Redis sink, beside `redis-benchmark` doing
//! pipelined `XADD`s of the same entry against the same server in the same run.
//!
//! ```text
//! cargo bench --bench events
//! ```
//!
//! Both write the same fields (`event` with an event's JSON, `type`, `message_id`) with no
//! trimming. `redis-benchmark` runs in two shapes: 64 commands per round trip over 50
//! connections, and one connection sending pipelines of 512 (the default `batch_max_events`),
//! the shape of a writer on one connection. The ratios are ours over theirs: how close the
//! whole path (writing events, the queue, batching, one writer with two batches in flight over
//! the sink's four connections) comes to what the server takes.
//!
//! How it is run, so that the ratios hold from run to run on a shared machine:
//!
//! - redis-server runs on core 1, and everything that loads it (this process, with its
//!   runtime, and each redis-benchmark) on core 0;
//! - a warm-up round of all three comes first and is not counted;
//! - each run's stream is deleted after it, so every run starts from an empty one;
//! - each of the three then runs [`ROUNDS`] times, interleaved in a turning order, and the
//!   best of each is compared. Every round is printed.
//!
//! A further line, redis-rs alone sending one prebuilt pipeline of 512 over and over on one
//! connection, is what a plain client of the same library makes on this machine. Events are
//! written before each run, as request handlers write them; the rate of that writing is
//! printed on its own line.
//!
//! `EVENTS_BENCH_N` (events per run, 200000), `EVENTS_BENCH_BATCH` (`batch_max_events`) and
//! `EVENTS_BENCH_WORKERS` (tokio worker threads; by default one per core the process may use,
//! as `serve` has) change the run.

#[path = "../tests/suite/support_redis/mod.rs"]
mod support_redis;

use std::process::Command;
use std::time::{Instant, SystemTime};

use mailtrack::config::SinkKind;
use mailtrack::events::sample::sample_click;
use mailtrack::events::{EncodedEvent, EventPipeline, RequestFacts};
use mailtrack::link::{decode, Decoded, LinkTags, VerifiedLink};
use mailtrack::testing::{fixed_ring, fixed_signer, request_target};
use support_redis::{events_config, RedisServer};

/// Events per run, unless `EVENTS_BENCH_N` says otherwise.
const DEFAULT_N: usize = 200_000;

/// Counted runs of each; the best of each is compared.
const ROUNDS: usize = 5;

/// The three runs, as indices into the rates.
const THEIRS: usize = 0;
const SAME_SHAPE: usize = 1;
const OURS: usize = 2;

/// The streams the runs write: redis-benchmark's and the pipeline's.
const THEIR_STREAM: &str = "mailtrack:bench:theirs";
const OUR_STREAM: &str = "mailtrack:bench:ours";

fn main() {
    let n: usize = std::env::var("EVENTS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_N);
    let server = RedisServer::start();
    let pinned = pin_apart(&server);
    let event = EncodedEvent::new(&verified_click(), &facts(SystemTime::now()));
    let payload = String::from_utf8(event.json().to_vec()).expect("JSON is UTF-8");

    // Each run starts from an empty stream, after a warm-up, so that none of them pays for
    // growing redis-server's memory: 200,000 entries into new memory cost it about 27,000
    // page faults, against 3,200 into memory a DEL has freed.
    let run = |which: usize| {
        let rate = match which {
            THEIRS => redis_benchmark(&server, n, &payload, 50, 64),
            SAME_SHAPE => redis_benchmark(&server, n, &payload, 1, 512),
            _ => pipeline(&server, n),
        };
        let _: () = server.query(redis::cmd("DEL").arg(THEIR_STREAM).arg(OUR_STREAM));
        rate
    };
    for which in [THEIRS, SAME_SHAPE, OURS] {
        run(which);
    }
    // Each round's three rates, by THEIRS, SAME_SHAPE and OURS.
    let mut rounds = [[0f64; 3]; ROUNDS];
    for (round, rates) in rounds.iter_mut().enumerate() {
        for k in 0..3 {
            let which = (round + k) % 3;
            rates[which] = run(which);
        }
    }
    let every = |which: usize| rounds.iter().map(move |rates| rates[which]);
    let best = |which: usize| every(which).fold(0f64, f64::max);
    let (theirs, same_shape, ours) = (best(THEIRS), best(SAME_SHAPE), best(OURS));

    let floor = redis_rs_alone(&server, n, &payload);
    match pinned {
        Ok(()) => println!("redis-server on core 1; this process and redis-benchmark on core 0"),
        Err(why) => println!("not pinned ({why}): the ratios may swing from run to run"),
    }
    println!("event payload: {} bytes", payload.len());
    println!(
        "writing events as a handler does: {:>10.0} events/s (not in the pipeline's time)",
        encode_rate(n)
    );
    println!("redis-rs alone, one connection: {floor:>10.0} events/s");
    println!("redis-benchmark -c 50 -P 64:    {theirs:>10.0} events/s");
    println!("redis-benchmark -c 1 -P 512:    {same_shape:>10.0} events/s");
    println!("mailtrack pipeline (Redis):     {ours:>10.0} events/s");
    for (which, name) in [
        (THEIRS, "-c 50 -P 64"),
        (SAME_SHAPE, "-c 1 -P 512"),
        (OURS, "mailtrack"),
    ] {
        let each: Vec<String> = every(which)
            .map(|r| format!("{:.0}k", r / 1000.0))
            .collect();
        println!("  every round, {name}: {}", each.join(" "));
    }
    println!("ratio to redis-benchmark -c 50 -P 64: {:.2}", ours / theirs);
    println!(
        "ratio to redis-benchmark -c 1 -P 512: {:.2}",
        ours / same_shape
    );
}

/// Pins redis-server (every thread of it) to core 1, and this process to core 0, where the
/// runtimes and the redis-benchmark processes it starts later inherit it: a server and its
/// load generator on different cores, as `benches/compare.sh` runs them. Unpinned, a run
/// now and then made half the rate of the runs around it.
fn pin_apart(server: &RedisServer) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Err(format!("{cores} core"));
    }
    let info: String = server.query(redis::cmd("INFO").arg("server"));
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .ok_or("no process_id in INFO server")?
        .trim()
        .to_owned();
    taskset("1", &pid)?;
    taskset("0", &std::process::id().to_string())
}

/// `taskset -a -p -c CORE PID`: every thread of `pid` onto `core`.
fn taskset(core: &str, pid: &str) -> Result<(), String> {
    let output = Command::new("taskset")
        .args(["-a", "-p", "-c", core, pid])
        .output()
        .map_err(|e| format!("taskset: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// `redis-benchmark -n N -c CLIENTS -P DEPTH -q XADD … event <payload> type Click
/// message_id …`.
fn redis_benchmark(server: &RedisServer, n: usize, payload: &str, clients: u32, depth: u32) -> f64 {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-n", &n.to_string(), "-q"])
        .args(["-c", &clients.to_string(), "-P", &depth.to_string()])
        .args(["XADD", THEIR_STREAM, "*", "event", payload])
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
    // As many workers as `serve` would have: one per core this process may run on.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = std::env::var("EVENTS_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        runtime.worker_threads(workers);
    }
    let runtime = runtime.enable_all().build().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut config = events_config(dir.path(), SinkKind::Redis, Some(server.url()));
    config.stream = OUR_STREAM.to_owned();
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
    let id = mailtrack::testing::stamp_v2(&sample.mail.message_id, "");
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
        verdict: None,
        seconds_since_send: None,
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
