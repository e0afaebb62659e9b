//! The events pipeline with the default file sink, over real files: every event arrives,
//! once, in order, valid against the schema, including under load at shutdown.

use crate::support_redis;

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use mailtrack::config::SinkKind;
use mailtrack::events::sample::{sample_click, sample_event};
use mailtrack::events::{Event, EventPipeline, QueueError};
use mailtrack::link::{decode, Decoded, LinkTags};
use mailtrack::testing::{fixed_ring, fixed_signer, request_target};
use serde_json::Value;
use support_redis::{event_id, events_config, schema, spawn_producers};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON event"))
        .collect()
}

/// An event made the way `serve` makes it: from a signed link that verified.
fn real_click(message_id: &str) -> Event {
    let id = mailtrack::testing::stamp_v2(message_id, "list:news");
    let tags = LinkTags::parse("campaign:fall;lang:en").unwrap();
    let url = fixed_signer()
        .click_url("https://example.com/a?b=c", &id, &tags)
        .unwrap();
    let Decoded::Verified(link) = decode(request_target(&url), &fixed_ring()) else {
        panic!("the fixed signer's link verifies");
    };
    let facts = mailtrack::events::RequestFacts {
        client_ip: "2001:db8::7".parse().unwrap(),
        user_agent: "Mozilla/5.0",
        tracking_domain: "track.example.com",
        method: "GET",
        received: std::time::SystemTime::now(),
        verdict: None,
        seconds_since_send: None,
    };
    Event::new(&link, &facts)
}

#[tokio::test]
async fn n_events_give_n_lines_in_order_each_valid_against_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = events_config(dir.path(), SinkKind::File, None);
    let (queue, pipeline) = EventPipeline::start(&config).unwrap();
    const N: usize = 2_000;
    let mut ids = Vec::new();
    for i in 0..N {
        let event = match i % 3 {
            0 => sample_event(&format!("m-{i}")),
            1 => sample_click(&format!("m-{i}")),
            _ => real_click(&format!("m-{i}")),
        };
        ids.push(event.mailtrack.event_id.clone());
        queue.offer(event).unwrap();
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let stats = pipeline.shutdown().await;
    assert_eq!(stats.delivered + stats.replayed, N as u64, "{stats:?}");
    assert_eq!(stats.dropped, 0);

    let events = lines(&config.file);
    assert_eq!(events.len(), N);
    let validator = schema::validator();
    for event in &events {
        schema::assert_valid(&validator, event);
    }
    let written: Vec<String> = events.iter().map(event_id).collect();
    assert_eq!(written, ids, "every event once, in the order offered");
    assert_eq!(queue.offer(sample_event("late")), Err(QueueError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_writes_everything_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = events_config(dir.path(), SinkKind::File, None);
    config.file_max_bytes = 256 * 1024; // several rotations along the way
    let (queue, pipeline) = EventPipeline::start(&config).unwrap();
    let (producers, accepted) = spawn_producers(&queue, sample_event);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stats = pipeline.shutdown().await;
    for producer in producers {
        producer.await.unwrap();
    }
    let accepted = accepted.load(Ordering::Relaxed);
    assert!(accepted > 1_000, "the load was real: {accepted}");

    let mut events = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("events.jsonl")
        {
            events.extend(lines(&path));
        }
    }
    let distinct: HashSet<String> = events.iter().map(event_id).collect();
    assert_eq!(distinct.len() as u64, accepted, "{stats:?}");
    assert_eq!(events.len() as u64, accepted, "nothing written twice");
    assert_eq!(stats.dropped, 0);
}
