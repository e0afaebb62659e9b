//! The Redis sink on Redis Cluster (`redis_cluster = true`): a real one-node cluster that
//! owns every slot, reached through its seed URL, gets every event once.

use crate::support_redis;

use std::time::{Duration, Instant};

use mailtrack::config::SinkKind;
use mailtrack::events::sample::sample_click;
use mailtrack::events::EventPipeline;
use support_redis::{event_id, events_config, stream_entries, RedisServer};

/// A one-node cluster: cluster mode on, all 16384 slots assigned to the node.
fn one_node_cluster() -> RedisServer {
    let server = RedisServer::start_with(&[
        "--appendonly",
        "no",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let _: () = server.query(redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16383));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = server.query(redis::cmd("CLUSTER").arg("INFO"));
        if info.contains("cluster_state:ok") {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not come up: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_events_reach_a_stream_on_redis_cluster() {
    let server = one_node_cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut config = events_config(dir.path(), SinkKind::Redis, Some(server.url()));
    config.redis_cluster = true;
    let (queue, pipeline) = EventPipeline::start(&config).unwrap();
    let mut ids = Vec::new();
    for i in 0..1_000 {
        let event = sample_click(&format!("m-{i}"));
        ids.push(event.mailtrack.event_id.clone());
        queue.offer(event).unwrap();
    }
    let stats = pipeline.shutdown().await;
    assert_eq!((stats.dropped, stats.sink_errors), (0, 0), "{stats:?}");
    let mut stored: Vec<String> = stream_entries(&server, "mailtrack:events")
        .iter()
        .map(|(event, _, _)| event_id(event))
        .collect();
    // Once each; batches go over several connections, so not necessarily in offered order.
    stored.sort_unstable();
    ids.sort_unstable();
    assert_eq!(stored, ids);
}
