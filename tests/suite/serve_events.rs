//! `mailtrack serve` in front of a real Redis, as an operator runs it: Redis killed with
//! kill -9 under load loses no event and slows no redirect; with `durability = "sync"`,
//! mailtrack itself killed with kill -9 loses no event it answered for.

use crate::common;
use crate::support_redis;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{click, try_send, Proto, ServeProcess, ADMIN_ON_A_FREE_PORT};
use support_redis::{stream_entries, RedisServer};

const STREAM: &str = "mailtrack:events";

/// A config in `dir` with the fixed test ring, plain HTTP and the admin listener on port 0,
/// and the Redis sink.
fn write_config(dir: &Path, redis: &RedisServer, durability: &str) -> PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    let config = dir.join("mailtrack.toml");
    let body = format!(
        "[keys]\nfile = \"keys.toml\"\n{ADMIN_ON_A_FREE_PORT}[server]\nhttp = \"127.0.0.1:0\"\nshutdown_grace = 5\n\
         [log]\nformat = \"json\"\n[events]\nsink = \"redis\"\nredis_url = \"{}\"\n\
         stream = \"{STREAM}\"\nspool_dir = \"spool\"\nsink_timeout_ms = 300\ndurability = \"{durability}\"\n",
        redis.url()
    );
    std::fs::write(&config, body).unwrap();
    config
}

/// One answered click: its message id, and how long the redirect took.
struct Answered {
    id: String,
    latency: Duration,
    at: Instant,
}

/// Clicks distinct links until the server stops answering or `until` passes.
async fn click_until(addr: SocketAddr, worker: usize, until: Instant) -> Vec<Answered> {
    let mut answered = Vec::new();
    for n in 0.. {
        if Instant::now() >= until {
            break;
        }
        let id = format!("w{worker}-{n}");
        let target = click("https://example.com/landing", &id);
        let started = Instant::now();
        match try_send(addr, None, Proto::Http1, "GET", &target, &[]).await {
            Ok(reply) if reply.status == 302 => answered.push(Answered {
                id,
                latency: started.elapsed(),
                at: started,
            }),
            Ok(reply) => panic!("unexpected {}", reply.status),
            Err(_) => break, // the server is gone
        }
    }
    answered
}

/// The message ids of the click events in the stream, deduplicated.
fn ids_in_stream(redis: &RedisServer) -> HashSet<String> {
    stream_entries(redis, STREAM)
        .into_iter()
        .map(|(_, _, message_id)| message_id)
        .collect()
}

/// Waits until every id in `expected` is in the stream, at most `limit`.
fn wait_for_stream(redis: &RedisServer, expected: &HashSet<&str>, limit: Duration) -> usize {
    let started = Instant::now();
    loop {
        let seen = ids_in_stream(redis);
        let missing = expected.iter().filter(|id| !seen.contains(**id)).count();
        if missing == 0 || started.elapsed() > limit {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort_unstable();
    let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
    latencies[index]
}

fn sigterm(serve: &mut ServeProcess) {
    serve.signal("-TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn redis_killed_under_load_loses_no_event_and_slows_no_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start_with_aof();
    let config = write_config(dir.path(), &redis, "batch");
    let mut serve = ServeProcess::spawn(&config, 1);
    let addr = serve.addr();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let start = Instant::now();
    let until = start + Duration::from_secs(7);
    let load: Vec<_> = (0..4)
        .map(|worker| runtime.spawn(click_until(addr, worker, until)))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    redis.kill9();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    redis.restart();
    let up = Instant::now();
    let answered: Vec<Answered> = runtime.block_on(async {
        let mut all = Vec::new();
        for task in load {
            all.extend(task.await.unwrap());
        }
        all
    });

    let mut before: Vec<_> = answered
        .iter()
        .filter(|a| a.at < down)
        .map(|a| a.latency)
        .collect();
    let mut during: Vec<_> = answered
        .iter()
        .filter(|a| a.at >= down && a.at + a.latency < up)
        .map(|a| a.latency)
        .collect();
    assert!(
        before.len() > 100 && during.len() > 100,
        "{} / {}",
        before.len(),
        during.len()
    );
    let (p99_before, p99_during) = (percentile(&mut before, 0.99), percentile(&mut during, 0.99));
    eprintln!("p99 before {p99_before:?}, while Redis was down {p99_during:?}");
    assert!(
        p99_during <= (p99_before * 5).max(Duration::from_millis(50)),
        "redirects slowed while Redis was down: p99 {p99_during:?} against {p99_before:?}"
    );

    let expected: HashSet<&str> = answered.iter().map(|a| a.id.as_str()).collect();
    let missing = wait_for_stream(&redis, &expected, Duration::from_secs(20));
    assert_eq!(
        missing,
        0,
        "of {} answered clicks, {missing} have no event",
        expected.len()
    );
    sigterm(&mut serve);
}

#[test]
fn sync_durability_survives_kill_9_of_mailtrack() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start_with_aof();
    let config = write_config(dir.path(), &redis, "sync");
    let mut serve = ServeProcess::spawn(&config, 1);
    let addr = serve.addr();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Redis goes down part way, so some answered events sit only in the spool when mailtrack
    // is killed; the rest went straight into the stream.
    let until = Instant::now() + Duration::from_secs(30);
    let load: Vec<_> = (0..4)
        .map(|worker| runtime.spawn(click_until(addr, worker, until)))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    redis.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL: no drain, no flush; only what was committed before each answer survives.
    serve.kill();
    let answered: Vec<Answered> = runtime.block_on(async {
        let mut all = Vec::new();
        for task in load {
            all.extend(task.await.unwrap());
        }
        all
    });
    assert!(answered.len() > 100, "the load ran: {}", answered.len());

    redis.restart();
    let in_stream_before_replay = ids_in_stream(&redis).len();
    let mut restarted = ServeProcess::spawn(&config, 1);
    let expected: HashSet<&str> = answered.iter().map(|a| a.id.as_str()).collect();
    let missing = wait_for_stream(&redis, &expected, Duration::from_secs(20));
    eprintln!(
        "{} answered; {in_stream_before_replay} in the stream before the restart replayed the spool",
        expected.len()
    );
    assert!(
        in_stream_before_replay < expected.len(),
        "some events were only in the spool"
    );
    assert_eq!(
        missing,
        0,
        "of {} answered clicks, {missing} have no event",
        expected.len()
    );
    sigterm(&mut restarted);
}
