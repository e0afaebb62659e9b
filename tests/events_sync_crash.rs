//! `durability = "sync"` survives `kill -9`: a child process offers events and prints each
//! one's id once its commit resolves, while Redis runs and then while it is killed (so the
//! commits are spool fsyncs). The child is killed with SIGKILL; Redis comes back from its
//! AOF; `mailtrack events replay` delivers the spool. Every acknowledged event is then in
//! the stream.
//!
//! The child is this test binary itself, re-run with `--ignored --exact sync_child`: no
//! test-only code in the `mailtrack` binary.

#[path = "suite/support_redis/mod.rs"]
mod support_redis;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mailtrack::events::sample::sample_event;
use mailtrack::events::EventPipeline;
use mailtrack::Config;
use support_redis::{event_id, stream_entries, RedisServer};

/// Names the child's config file.
const CHILD_CONFIG: &str = "MAILTRACK_TEST_SYNC_CHILD_CONFIG";
/// Marks a line of the child's output as an acknowledged event id.
const ACKED: &str = "ACKED ";

fn write_config(dir: &Path, redis_url: &str) -> std::path::PathBuf {
    let path = dir.join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n\n[events]\nsink = \"redis\"\nredis_url = \"{redis_url}\"\n\
         durability = \"sync\"\nsink_timeout_ms = 500\nbatch_max_events = 32\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The child: offers events for ever, printing each id once committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sync_acknowledged_events_survive_kill_9 as a child process"]
async fn sync_child() {
    let Ok(path) = std::env::var(CHILD_CONFIG) else {
        return;
    };
    let config = Config::load(Some(Path::new(&path))).unwrap();
    let (queue, _pipeline) = EventPipeline::start(&config.events).unwrap();
    for i in 0.. {
        let event = sample_event(&format!("m-{i}"));
        let id = event.mailtrack.event_id.clone();
        // Several in flight at once, as concurrent requests would be.
        let commit = queue.offer_durable(event).unwrap();
        tokio::spawn(async move {
            if commit.await.is_ok() {
                println!("{ACKED}{id}");
            }
        });
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

#[test]
fn sync_acknowledged_events_survive_kill_9() {
    let mut redis = RedisServer::start_with_aof();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &redis.url());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sync_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_CONFIG, &config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, acked) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix(ACKED) {
                // The test stops listening only after the child is dead.
                let _ = lines.send(id.to_owned());
            }
        }
    });
    let mut acknowledged = Vec::new();
    let wait_for = |count: usize, acknowledged: &mut Vec<String>| {
        while acknowledged.len() < count {
            let id = acked.recv_timeout(Duration::from_secs(30));
            acknowledged.push(id.expect("the child acknowledges events"));
        }
    };
    wait_for(300, &mut acknowledged);
    redis.kill9();
    wait_for(acknowledged.len() + 300, &mut acknowledged);
    // Killing the child is SIGKILL: nothing is flushed or drained.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    acknowledged.extend(acked.try_iter());

    redis.restart();
    let replay = Command::new(env!("CARGO_BIN_EXE_mailtrack"))
        .args(["events", "replay", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(replay.status.success(), "{stderr}");
    assert!(
        !stderr.contains("replayed 0 events"),
        "the spool held events: {stderr}"
    );

    let stored: std::collections::HashSet<String> = stream_entries(&redis, "mailtrack:events")
        .iter()
        .map(|(event, _, _)| event_id(event))
        .collect();
    eprintln!("{} acknowledged; {}", acknowledged.len(), stderr.trim());
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.first()
    );
}
