//! `mailtrack events tail` against a real Redis: it reads as a consumer group, acknowledges
//! what it prints, and claims the entries a dead consumer left pending.

use crate::support_redis;

use std::time::Duration;

use mailtrack::config::SinkKind;
use mailtrack::events::sample::sample_event;
use mailtrack::events::tail::{tail, TailOptions};
use mailtrack::events::EventPipeline;
use support_redis::{event_id, events_config, printed_event_ids, RedisServer};

const STREAM: &str = "mailtrack:events";

/// Puts `n` events in the stream through the pipeline; returns their ids in order.
async fn fill(server: &RedisServer, dir: &std::path::Path, n: usize) -> Vec<String> {
    let config = events_config(dir, SinkKind::Redis, Some(server.url()));
    let (queue, pipeline) = EventPipeline::start(&config).unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let event = sample_event(&format!("m-{i}"));
        ids.push(event.mailtrack.event_id.clone());
        queue.offer(event).unwrap();
    }
    pipeline.shutdown().await;
    ids
}

fn pending(server: &RedisServer, group: &str) -> i64 {
    let summary: Vec<redis::Value> = server.query(redis::cmd("XPENDING").arg(STREAM).arg(group));
    redis::from_redis_value(summary[0].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_claims_a_dead_consumers_entries_then_reads_new_ones_and_acks_all() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ids = fill(&server, dir.path(), 10).await;

    // A consumer that read four entries and died before acknowledging them.
    let group = "billing";
    let _: () = server.query(
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(STREAM)
            .arg(group)
            .arg("0"),
    );
    let _: redis::Value = server.query(
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg("dead")
            .arg("COUNT")
            .arg(4)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">"),
    );
    assert_eq!(pending(&server, group), 4);

    let config = events_config(dir.path(), SinkKind::Redis, Some(server.url()));
    let options = TailOptions {
        group: group.to_owned(),
        consumer: "alive".to_owned(),
        max_events: Some(10),
        block: Duration::from_millis(200),
        min_idle: Duration::ZERO,
    };
    let mut out = Vec::new();
    let written = tail(&config, &options, &mut out).await.unwrap();
    assert_eq!(written, 10);
    let printed: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| event_id(&serde_json::from_str(line).unwrap()))
        .collect();
    assert_eq!(
        printed, ids,
        "the claimed four first, then the rest, in order"
    );
    assert_eq!(
        pending(&server, group),
        0,
        "everything printed was acknowledged"
    );
}

#[test]
fn the_binary_tails_with_a_new_group_from_the_start_of_the_stream() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ids = runtime.block_on(fill(&server, dir.path(), 5));
    let config = dir.path().join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n[events]\nsink = \"redis\"\nredis_url = \"{}\"\n",
        server.url()
    );
    std::fs::write(&config, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrack"))
        .args(["events", "tail", "--group", "ops", "--max", "5", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = printed_event_ids(output);
    assert_eq!(printed, ids);
}

#[test]
fn a_malformed_redis_url_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailtrack.toml");
    let text =
        "[keys]\nfile = \"keys.toml\"\n[events]\nsink = \"redis\"\nredis_url = \"htp:/nope\"\n";
    std::fs::write(&config, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrack"))
        .args(["events", "tail", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("events.redis_url"), "{stderr}");
}
