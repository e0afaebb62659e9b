//! `sink = "stdout"` and `mailtrack events replay`: a spool left behind (as by a crash with
//! the sink down) is delivered by the binary, as JSON lines on standard output, in order.

use crate::support_redis;

use mailtrack::events::batch::Batch;
use mailtrack::events::sample::sample_event;
use mailtrack::events::spool::{Spool, DEFAULT_SEGMENT_BYTES};
use support_redis::{event_id, schema};

#[test]
fn replay_delivers_a_left_over_spool_to_stdout_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("data/spool");
    let mut ids = Vec::new();
    {
        let mut spool = Spool::open(&spool_dir, 1 << 20, DEFAULT_SEGMENT_BYTES).unwrap();
        for b in 0..3 {
            let mut batch = Batch::with_capacity(10);
            for i in 0..10 {
                let event = sample_event(&format!("m-{b}-{i}"));
                ids.push(event.mailtrack.event_id.clone());
                batch.push(&event.into());
            }
            spool.append(batch.jsonl()).unwrap();
        }
    }
    let config = dir.path().join("mailtrack.toml");
    std::fs::write(
        &config,
        "[keys]\nfile = \"keys.toml\"\n[events]\nsink = \"stdout\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailtrack"))
        .args(["events", "replay", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("replayed 30 events; 0 bytes left"),
        "{stderr}"
    );
    let validator = schema::validator();
    let printed: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let event = serde_json::from_str(line).unwrap();
            schema::assert_valid(&validator, &event);
            event_id(&event)
        })
        .collect();
    assert_eq!(printed, ids);
    // Segments only: the folder also keeps its lock file.
    let left = std::fs::read_dir(&spool_dir)
        .unwrap()
        .filter(|entry| {
            entry.as_ref().unwrap().path().extension() == Some(std::ffi::OsStr::new("spool"))
        })
        .count();
    assert_eq!(left, 0, "replayed segments are deleted");
}
