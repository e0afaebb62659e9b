//! `mailtrack notify` over the JSONL file sink, as real processes: serve writes clicks and
//! opens through several rotations and notify delivers each matching one, signed; a kill -9
//! mid-run loses nothing and repeats only what was in flight; notify catches up on files
//! rotated while it was down; a refusing receiver ends with every event in the dead letters
//! file; a pending retry survives a kill -9; and a second notify on one state folder is
//! refused.

use crate::common;
use crate::support_receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailtrack::config::RotatedRetention;
use mailtrack::events::sink::file::FileSink;

use common::{NotifyProcess, ServeProcess, ADMIN_ON_A_FREE_PORT, BINARY};
use support_receiver::{verify_with_standardwebhooks, Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long any wait here may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// Writes the keys, the secret and a config for serve and notify in `dir`: the file sink
/// rotating past `max_bytes`, and one endpoint `hook` for clicks at `receiver`, with `extra`
/// endpoint keys.
fn write_config(dir: &Path, max_bytes: u64, receiver: &Receiver, extra: &str) -> PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    std::fs::write(dir.join("hook.secrets"), format!("{SECRET}\n")).unwrap();
    let path = dir.join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n{ADMIN_ON_A_FREE_PORT}[log]\nformat = \"json\"\n\
         [server]\nhttp = \"127.0.0.1:0\"\n\
         [events]\nfile = \"data/events.jsonl\"\nfile_max_bytes = {max_bytes}\n\
         [notify]\nadmin_listen = \"127.0.0.1:0\"\n\
         [[notify.endpoint]]\nname = \"hook\"\nevents = [\"Click\"]\n\
         url = \"{}\"\nallow_private = true\nsecrets_file = \"hook.secrets\"\n\
         linger_ms = 20\nbatch_size = 5\nconcurrency = 2\n{extra}\n",
        receiver.url("/hook")
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// SIGTERM, and a clean exit, waited for without blocking the runtime the receivers answer on
/// (notify delivers what it holds before it exits).
async fn stop(mut notify: NotifyProcess) {
    notify.signal("-TERM");
    let exited = wait_until("notify to exit after SIGTERM", || notify.exited()).await;
    assert!(exited.success(), "{exited:?}");
}

/// Polls `check` until it gives a value, failing after [`DEADLINE`].
async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Each eventId the receiver accepted, with how many times.
fn accepted_ids(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for delivery in receiver.accepted() {
        let events: Vec<serde_json::Value> = serde_json::from_slice(&delivery.body).unwrap();
        for event in events {
            let id = event["mailtrack"]["eventId"].as_str().unwrap().to_owned();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

/// Waits until the receiver has accepted every one of `want`, and returns the duplicates.
async fn all_delivered(receiver: &Receiver, want: &BTreeSet<String>) -> usize {
    let got = wait_until("every matching event delivered", || {
        let got = accepted_ids(receiver);
        want.iter().all(|id| got.contains_key(id)).then_some(got)
    })
    .await;
    let strangers: Vec<_> = got.keys().filter(|id| !want.contains(*id)).collect();
    assert!(strangers.is_empty(), "not wanted: {strangers:?}");
    got.values().map(|n| n - 1).sum()
}

/// Event `n`, stamped now: a click, or every fourth an open.
fn event(n: usize) -> (String, bool, String) {
    let id = format!("evt-{n:05}");
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    let click = !n.is_multiple_of(4);
    let json = if click {
        format!(
            r#"{{"eventType":"Click","mail":{{"messageId":"m-{n}"}},"click":{{"ipAddress":"192.0.2.1","timestamp":"{now}","userAgent":"Mail/1","link":"https://e.example/{n}","linkTags":{{}}}},"mailtrack":{{"eventId":"{id}"}}}}"#
        )
    } else {
        format!(
            r#"{{"eventType":"Open","mail":{{"messageId":"m-{n}"}},"open":{{"ipAddress":"192.0.2.1","timestamp":"{now}","userAgent":"Mail/1"}},"mailtrack":{{"eventId":"{id}"}}}}"#
        )
    };
    (id, click, json)
}

/// Appends events `range` through the real file sink, one write each (so it rotates past
/// `max_bytes` as serve's would), and returns the clicks' ids.
fn append(dir: &Path, max_bytes: u64, range: std::ops::Range<usize>) -> BTreeSet<String> {
    let mut sink =
        FileSink::open(&events_file(dir), max_bytes, RotatedRetention::default()).unwrap();
    let mut clicks = BTreeSet::new();
    for n in range {
        let (id, click, json) = event(n);
        sink.write(format!("{json}\n").as_bytes()).unwrap();
        if click {
            clicks.insert(id);
        }
    }
    clicks
}

fn events_file(dir: &Path) -> PathBuf {
    dir.join("data/events.jsonl")
}

/// The rotated events files beside the live one.
fn rotated(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("data"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("events.jsonl.") && !name.ends_with(".notify")
        })
        .count()
}

/// How many events serve has written, in every file, and the `eventId`s of the clicks.
fn recorded(dir: &Path) -> (usize, BTreeSet<String>) {
    let mut clicks = BTreeSet::new();
    let mut lines = 0;
    for path in std::fs::read_dir(dir.join("data")).unwrap() {
        let path = path.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("events.jsonl") || path.is_dir() {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            lines += 1;
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            if event["eventType"] == "Click" {
                clicks.insert(event["mailtrack"]["eventId"].as_str().unwrap().to_owned());
            }
        }
    }
    (lines, clicks)
}

fn state_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("data/events.jsonl.notify/hook.endpoint")
        .join(name)
}

#[tokio::test]
async fn serve_to_notify_through_rotations_delivers_each_click_signed() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    // An event is about 600 bytes: the file rotates every few batches.
    let config = write_config(dir.path(), 3000, &receiver, "");
    let serve = ServeProcess::spawn(&config, 1);
    let notify = NotifyProcess::spawn(&config, "notify");
    const REQUESTS: usize = 80;
    // In rounds, each written before the next is sent: a round is more than a file holds, so
    // the file rotates while notify follows it, however serve's writer batches the events.
    let mut want = BTreeSet::new();
    for round in 0..8 {
        for n in round * 10..(round + 1) * 10 {
            let target = if n % 4 == 0 {
                common::pixel(&format!("m-{n}"))
            } else {
                common::click(&format!("https://e.example/{n}"), &format!("m-{n}"))
            };
            let reply = common::send(
                serve.addr(),
                None,
                common::Proto::Http1,
                "GET",
                &target,
                &[],
            )
            .await;
            assert!(reply.status < 400, "{}", reply.status);
        }
        want = wait_until("serve to record the round", || {
            let (lines, clicks) = recorded(dir.path());
            (lines == (round + 1) * 10).then_some(clicks)
        })
        .await;
    }
    assert_eq!(want.len(), REQUESTS * 3 / 4);
    assert!(
        rotated(dir.path()) >= 3,
        "rotated {} times",
        rotated(dir.path())
    );
    let duplicates = all_delivered(&receiver, &want).await;
    eprintln!("duplicates: {duplicates}");
    assert_eq!(duplicates, 0, "nothing failed, so nothing is sent twice");
    verify_with_standardwebhooks(SECRET, &receiver.accepted());
    stop(notify).await;
}

#[tokio::test]
async fn a_kill_9_mid_run_repeats_only_what_was_in_flight() {
    // Slow: deliveries are held while notify is killed.
    let receiver = Receiver::start(|_, _| Reply {
        delay: Duration::from_millis(300),
        ..Reply::status(200)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 4000, &receiver, "");
    let want = append(dir.path(), 4000, 0..120);
    let mut notify = NotifyProcess::spawn(&config, "notify");
    wait_until("a few deliveries", || {
        (receiver.accepted().len() >= 4).then_some(())
    })
    .await;
    notify.kill();
    let before = accepted_ids(&receiver).len();
    assert!(before < want.len(), "killed before the end");
    let notify = NotifyProcess::spawn(&config, "notify");
    let duplicates = all_delivered(&receiver, &want).await;
    eprintln!("delivered {before} events before the kill; duplicates after it: {duplicates}");
    // In flight (2 batches of 5), gathering (1), and what settled since the last checkpoint
    // (written every 200 ms; at most 2 batches finish in that time with a 300 ms receiver),
    // with a batch of slack.
    assert!(duplicates <= 6 * 5, "{duplicates} duplicates");
    stop(notify).await;
}

#[tokio::test]
async fn notify_catches_up_on_files_rotated_while_it_was_down() {
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 2000, &receiver, "");
    let mut want = append(dir.path(), 2000, 0..10);
    let notify = NotifyProcess::spawn(&config, "notify");
    assert_eq!(all_delivered(&receiver, &want).await, 0);
    stop(notify).await;
    let rotated_before = rotated(dir.path());
    want.extend(append(dir.path(), 2000, 10..60));
    assert!(
        rotated(dir.path()) >= rotated_before + 3,
        "several rotations while notify was down"
    );
    let notify = NotifyProcess::spawn(&config, "notify");
    let duplicates = all_delivered(&receiver, &want).await;
    assert_eq!(
        duplicates, 0,
        "a clean stop checkpoints everything delivered"
    );
    stop(notify).await;
}

#[tokio::test]
async fn a_refusing_receiver_ends_with_every_click_in_the_dead_letters_file_and_recover_delivers_them(
) {
    let since = mailtrack::notify::file_log::millis(std::time::SystemTime::now()) - 1000;
    let receiver = Receiver::start(|_, _| Reply::status(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        1 << 20,
        &receiver,
        "retry_schedule = [\"50ms\", \"50ms\"]",
    );
    let want = append(dir.path(), 1 << 20, 0..40);
    let notify = NotifyProcess::spawn(&config, "notify");
    let dead = state_file(dir.path(), "dead.jsonl");
    wait_until("every click dead-lettered", || {
        let text = std::fs::read_to_string(&dead).unwrap_or_default();
        let mut ids = BTreeSet::new();
        for line in text.lines() {
            let letter: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(letter["answer"].is_string(), "{letter}");
            assert!(letter["at"].as_u64().unwrap() > 0, "{letter}");
            for event in letter["delivery"]["events"].as_array().unwrap() {
                let event: serde_json::Value =
                    serde_json::from_str(event.as_str().unwrap()).unwrap();
                ids.insert(event["mailtrack"]["eventId"].as_str().unwrap().to_owned());
            }
        }
        (ids == want).then_some(())
    })
    .await;
    // Every attempt was answered 400: three per delivery (the first and two retries).
    let deliveries = std::fs::read_to_string(&dead).unwrap().lines().count();
    wait_until("the last attempts counted", || {
        (receiver.received().len() == deliveries * 3).then_some(())
    })
    .await;
    stop(notify).await;

    // Pointed at a receiver that takes them, recover delivers every one, from the log and
    // the dead letters, and empties dead.jsonl.
    let fixed = Receiver::start(|_, _| Reply::status(200)).await;
    let config = write_config(dir.path(), 1 << 20, &fixed, "");
    // Off the test's runtime thread, which the receiver answers on.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .args(["notify", "recover", "--config"])
            .arg(&config)
            .args(["--endpoint", "hook", "--since", &since.to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("found in log: {}", want.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("found in dead letters: {}", want.len())),
        "{stdout}"
    );
    let got = accepted_ids(&fixed);
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(got.values().all(|n| *n == 1), "each once: {got:?}");
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "", "{stdout}");
    verify_with_standardwebhooks(SECRET, &fixed.accepted());
}

#[tokio::test]
async fn a_pending_retry_survives_a_kill_9() {
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    // The first attempt fails; every later one succeeds.
    let receiver = Receiver::start(move |n, _| {
        count.fetch_add(1, Ordering::SeqCst);
        Reply::status(if n == 0 { 503 } else { 200 })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1 << 20, &receiver, "retry_schedule = [\"2s\"]");
    let want = append(dir.path(), 1 << 20, 1..2);
    let mut notify = NotifyProcess::spawn(&config, "notify");
    let file_len = std::fs::metadata(events_file(dir.path())).unwrap().len();
    // The failed delivery is among the retries and the checkpoint has passed its event: only
    // the retry file can bring it back.
    wait_until("the retry recorded and the checkpoint past it", || {
        let retries = std::fs::read_to_string(state_file(dir.path(), "retry.jsonl")).ok()?;
        let checkpoint = std::fs::read(state_file(dir.path(), "checkpoint.json")).ok()?;
        let checkpoint: serde_json::Value = serde_json::from_slice(&checkpoint).ok()?;
        (retries.contains("evt-00001") && checkpoint["offset"] == file_len).then_some(())
    })
    .await;
    assert_eq!(
        answered.load(Ordering::SeqCst),
        1,
        "one attempt before the kill"
    );
    notify.kill();
    let notify = NotifyProcess::spawn(&config, "notify");
    assert_eq!(all_delivered(&receiver, &want).await, 0);
    stop(notify).await;
}

#[tokio::test]
async fn a_second_notify_on_one_state_folder_is_refused() {
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 1 << 20, &receiver, "");
    let want = append(dir.path(), 1 << 20, 0..4);
    let first = NotifyProcess::spawn(&config, "notify");
    // Delivering means the first holds the lock.
    all_delivered(&receiver, &want).await;
    let second = Command::new(BINARY)
        .args(["notify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("notify.state_dir"), "{stderr}");
    assert!(stderr.contains("another mailtrack notify"), "{stderr}");
    stop(first).await;
}
