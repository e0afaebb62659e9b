//! The events pipeline with the Redis sink, against a real `redis-server` on a free port:
//! every event arrives, a Redis killed with SIGKILL loses nothing, a full spool drops exactly
//! what it reports, and shutdown under load writes everything accepted.

use crate::support_redis;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailtrack::config::{Durability, SinkKind};
use mailtrack::events::sample::{sample_click, sample_event};
use mailtrack::events::{EventPipeline, EventQueue, PipelineHandle};
use support_redis::{
    event_id, events_config, schema, spawn_producers, stream_entries, RedisServer,
};

const STREAM: &str = "mailtrack:events";

fn start(server: &RedisServer, dir: &std::path::Path) -> (EventQueue, PipelineHandle) {
    let config = events_config(dir, SinkKind::Redis, Some(server.url()));
    EventPipeline::start(&config).unwrap()
}

fn distinct_ids(server: &RedisServer) -> HashSet<String> {
    stream_entries(server, STREAM)
        .iter()
        .map(|(event, _, _)| event_id(event))
        .collect()
}

/// Polls `done` until it holds, for at most 20 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_events_give_n_entries_each_valid_against_the_schema() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (queue, pipeline) = start(&server, dir.path());
    const N: usize = 3_000;
    let mut ids = Vec::new();
    for i in 0..N {
        let event = if i % 2 == 0 {
            sample_event(&format!("m-{i}"))
        } else {
            sample_click(&format!("m-{i}"))
        };
        ids.push(event.mailtrack.event_id.clone());
        queue.offer(event).unwrap();
    }
    let stats = pipeline.shutdown().await;
    assert_eq!(stats.dropped, 0, "{stats:?}");

    let entries = stream_entries(&server, STREAM);
    assert_eq!(entries.len(), N, "{stats:?}");
    let validator = schema::validator();
    for (event, kind, message_id) in &entries {
        schema::assert_valid(&validator, event);
        assert_eq!(event["eventType"], kind.as_str());
        assert_eq!(event["mail"]["messageId"], message_id.as_str());
    }
    // Batches are spread over several connections, so entries are in the stream once each
    // but not necessarily in the order they were offered.
    let mut written: Vec<String> = entries.iter().map(|(e, _, _)| event_id(e)).collect();
    written.sort_unstable();
    ids.sort_unstable();
    assert_eq!(written, ids, "every event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_commits_resolve_once_the_event_is_in_the_stream() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = events_config(dir.path(), SinkKind::Redis, Some(server.url()));
    config.durability = Durability::Sync;
    let (queue, pipeline) = EventPipeline::start(&config).unwrap();
    assert_eq!(pipeline.durability(), Durability::Sync);
    // Many senders at once share commits: that is the group in group commit.
    let mut waiting = Vec::new();
    for i in 0..200 {
        let event = sample_event(&format!("m-{i}"));
        let id = event.mailtrack.event_id.clone();
        waiting.push((id, queue.offer_durable(event).unwrap()));
    }
    for (id, commit) in waiting {
        commit.await.unwrap();
        assert!(
            distinct_ids(&server).contains(&id),
            "{id} committed but not in the stream"
        );
    }
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_for_seconds_loses_nothing_and_offer_never_waits() {
    let mut server = RedisServer::start_with_aof();
    let dir = tempfile::tempdir().unwrap();
    let mut config = events_config(dir.path(), SinkKind::Redis, Some(server.url()));
    config.sink_timeout = Duration::from_secs(2); // a blocking offer would show it
    let (queue, pipeline) = EventPipeline::start(&config).unwrap();

    // Offers from a plain thread at a steady rate, timing each; the phase says whether Redis
    // is up (0), down (1) or back (2).
    let phase = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (queue, phase, stop) = (queue.clone(), Arc::clone(&phase), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut slowest = [Duration::ZERO; 3];
            let mut offered = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let event = sample_event(&format!("m-{}", offered.len()));
                let id = event.mailtrack.event_id.clone();
                let began = Instant::now();
                let result = queue.offer(event);
                let took = began.elapsed();
                result.expect("the queue never fills");
                let p = phase.load(Ordering::Relaxed) as usize;
                slowest[p] = slowest[p].max(took);
                offered.push(id);
                std::thread::sleep(Duration::from_micros(200));
            }
            (offered, slowest)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill9();
    phase.store(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = pipeline.stats();
    server.restart();
    phase.store(2, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (offered, slowest) = producer.join().unwrap();
    let stats = pipeline.shutdown().await;

    assert!(
        !during.sink_up && during.spooled > 0,
        "Redis was seen down: {during:?}"
    );
    assert!(stats.sink_up && stats.replayed > 0, "and back: {stats:?}");
    let stored = distinct_ids(&server);
    let missing = offered.iter().filter(|id| !stored.contains(*id)).count();
    assert_eq!(missing, 0, "of {} offered: {stats:?}", offered.len());
    assert_eq!(stored.len(), offered.len());
    let [before, down, _after] = slowest;
    eprintln!("slowest offer: {before:?} with Redis up, {down:?} with Redis down");
    let generous = (before * 200).max(Duration::from_millis(100));
    assert!(
        down < generous,
        "offer waited {down:?} with Redis down ({before:?} up)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_exactly_what_it_reports() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = events_config(dir.path(), SinkKind::Redis, Some(server.url()));
    config.spool_max_bytes = 64 * 1024;
    config.batch_max_events = 16;
    server.kill9();
    let (queue, pipeline) = EventPipeline::start(&config).unwrap();
    const N: u64 = 2_000;
    for i in 0..N {
        queue.offer(sample_event(&format!("m-{i}"))).unwrap();
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    eventually("every event is spooled or dropped", || {
        let stats = pipeline.stats();
        stats.spooled + stats.dropped == N
    })
    .await;
    let down = pipeline.stats();
    assert!(
        down.dropped > 0 && down.spool_full && !down.is_ready(),
        "{down:?}"
    );

    server.restart();
    eventually("the spool is replayed", || {
        pipeline.stats().spool_bytes == 0
    })
    .await;
    let stats = pipeline.shutdown().await;
    assert_eq!(stats.replayed, stats.spooled, "{stats:?}");
    let stored = distinct_ids(&server).len() as u64;
    assert_eq!(N - stored, stats.dropped, "missing = dropped: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_writes_everything_accepted() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (queue, pipeline) = start(&server, dir.path());
    let (producers, accepted) = spawn_producers(&queue, sample_click);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = pipeline.shutdown().await;
    for producer in producers {
        producer.await.unwrap();
    }
    let accepted = accepted.load(Ordering::Relaxed);
    assert!(accepted > 1_000, "the load was real: {accepted}");
    assert_eq!(distinct_ids(&server).len() as u64, accepted, "{stats:?}");
    assert_eq!(stats.dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_at_start_is_not_fatal_and_the_spool_is_replayed_at_the_next_start() {
    let mut server = RedisServer::start();
    server.kill9();
    let dir = tempfile::tempdir().unwrap();
    let config = events_config(dir.path(), SinkKind::Redis, Some(server.url()));
    let (queue, pipeline) = EventPipeline::start(&config).unwrap();
    let event = sample_event("m-1");
    let id = event.mailtrack.event_id.clone();
    queue.offer(event).unwrap();
    eventually("the event is spooled", || pipeline.stats().spooled == 1).await;
    let stats = pipeline.stats();
    assert!(
        !stats.sink_up && stats.sink_errors > 0 && stats.spool_bytes > 0,
        "{stats:?}"
    );
    assert!(stats.is_ready(), "the spool has room: {stats:?}");
    let reader = pipeline.stats_reader();
    assert!(reader.is_ready() && reader.snapshot().spooled == 1);

    // Shutdown with the sink still down gives up after a retry (not the whole replay
    // window), and keeps the spool for the next start.
    let began = Instant::now();
    let stats = pipeline.shutdown().await;
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "{:?}",
        began.elapsed()
    );
    assert!(stats.spool_bytes > 0, "{stats:?}");

    server.restart();
    let (_queue, pipeline) = EventPipeline::start(&config).unwrap();
    eventually("the spool is replayed", || pipeline.stats().replayed == 1).await;
    pipeline.shutdown().await;
    assert_eq!(distinct_ids(&server), HashSet::from([id]));
}
