//! Notify's operations, through the real binary, a real redis-server and real receivers on
//! loopback: its own admin listener (`/metrics` per endpoint, `/healthz`, the bearer token of
//! `[admin] token_file`), `notify test` (one signed test event, the receiver's answer
//! printed, exit 0 only on a 2xx), and `notify recover` (a window of the log and the dead
//! letters delivered again, dead letters removed once delivered).
//!
//! The receivers run on the test's runtime while the test waits for the binary, so each test
//! has a multi-threaded runtime.

use crate::common;
use crate::support_receiver;
use crate::support_redis;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support_receiver::{verify_with_standardwebhooks, Received, Receiver, Reply};
use support_redis::RedisServer;

use common::{NotifyProcess, BINARY};
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STREAM: &str = "mailtrack:events";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// How long any wait for the processes below may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A config in `dir` with `endpoints` (each needing only its name, rule and receiver),
/// `[events]` on `redis_url` when given, both admin listeners on free ports, and `extra`.
fn write_config(dir: &Path, redis_url: Option<&str>, endpoints: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    std::fs::write(dir.join("hook.secrets"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let events = match redis_url {
        Some(url) => format!("[events]\nsink = \"redis\"\nredis_url = \"{url}\"\n"),
        None => String::new(),
    };
    let path = dir.join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n[log]\nformat = \"json\"\n{events}\
         [admin]\nlisten = \"127.0.0.1:0\"\n{extra}\n\
         [notify]\nadmin_listen = \"127.0.0.1:0\"\n{endpoints}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// An HTTP endpoint to `receiver`, signed with [`SECRET`], allowed on loopback.
fn http_endpoint(name: &str, events: &str, receiver: &Receiver, more: &str) -> String {
    format!(
        "[[notify.endpoint]]\nname = \"{name}\"\nevents = {events}\n\
         url = \"http://127.0.0.1:{}/{name}\"\nsecrets_file = \"hook.secrets\"\n\
         allow_private = true\nlinger_ms = 20\ntimeout_ms = 2000\n{more}\n",
        receiver.addr.port()
    )
}

/// Event `n`: every third an open, the others clicks.
fn event(n: usize) -> (String, &'static str, String) {
    let id = format!("evt-{n:04}");
    let kind = if n.is_multiple_of(3) { "Open" } else { "Click" };
    let json = format!(
        r#"{{"eventType":"{kind}","mail":{{"messageId":"m-{n}"}},"mailtrack":{{"eventId":"{id}"}}}}"#
    );
    (id, kind, json)
}

/// Adds events `range` to the log; returns each one's id, kind and entry id.
fn publish(
    redis: &RedisServer,
    range: std::ops::Range<usize>,
) -> Vec<(String, &'static str, String)> {
    range
        .map(|n| {
            let (id, kind, json) = event(n);
            let entry: String = redis.query(
                redis::cmd("XADD")
                    .arg(STREAM)
                    .arg("*")
                    .arg("event")
                    .arg(json)
                    .arg("type")
                    .arg(kind),
            );
            (id, kind, entry)
        })
        .collect()
}

/// The ms of an entry id.
fn entry_ms(entry: &str) -> u64 {
    entry.split('-').next().unwrap().parse().unwrap()
}

/// Every `eventId` a receiver took (2xx), with how often.
fn taken(receiver: &Receiver) -> BTreeMap<String, usize> {
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

/// Waits until `done` holds, or fails with `what` after [`DEADLINE`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` on `addr`, with `token` as a bearer token when given: the status and body.
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The value of the series `line_start` (name and labels) in an OpenMetrics text.
fn value(metrics: &str, line_start: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(line_start)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

fn run(args: &[&str], config: &Path) -> Output {
    Command::new(BINARY)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_serves_each_endpoints_metrics_on_its_own_token_guarded_listener() {
    let redis = RedisServer::start();
    let clicks = Receiver::start(|_, _| Reply::status(200)).await;
    let opens = Receiver::start(|_, _| Reply::status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoints = format!(
        "{}{}[[notify.endpoint]]\nname = \"copy\"\nevents = [\"Click\"]\nstream = \"copy:events\"\n",
        http_endpoint("clicks", "[\"Click\"]", &clicks, ""),
        http_endpoint("opens", "[\"Open\"]", &opens, ""),
    );
    let token = "token_file = \"admin.token\"";
    let config = write_config(dir.path(), Some(&redis.url()), &endpoints, token);
    let published = publish(&redis, 0..30);
    let want = |kind: &str| -> BTreeSet<String> {
        published
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(id, _, _)| id.clone())
            .collect()
    };
    let mut notify = NotifyProcess::spawn(&config, "notify");

    let (status, body) = get(notify.admin, "/metrics", None);
    assert_eq!(status, 401, "a token is configured: {body}");
    let (status, _) = get(
        notify.admin,
        "/metrics",
        Some("0123456789abcdef0123456789abcdeX"),
    );
    assert_eq!(status, 401, "a wrong token");
    let (status, body) = get(notify.admin, "/healthz", Some(TOKEN));
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    wait_until("every event at its receiver", || {
        taken(&clicks).keys().cloned().collect::<BTreeSet<_>>() == want("Click")
            && taken(&opens).keys().cloned().collect::<BTreeSet<_>>() == want("Open")
    })
    .await;
    let scrape = || get(notify.admin, "/metrics", Some(TOKEN)).1;
    let delivered = |text: &str, name: &str| {
        value(
            text,
            &format!("mailtrack_notify_delivered_total{{endpoint=\"{name}\"}}"),
        )
    };
    let (n_clicks, n_opens) = (want("Click").len() as f64, want("Open").len() as f64);
    // Counted once the 2xx is read, a moment after the receiver recorded the request; the
    // lag is measured every few seconds.
    wait_until("the counts and a caught-up lag", || {
        let text = scrape();
        delivered(&text, "clicks") == Some(n_clicks)
            && delivered(&text, "opens") == Some(n_opens)
            && delivered(&text, "copy") == Some(n_clicks)
            && ["clicks", "opens", "copy"].iter().all(|name| {
                value(
                    &text,
                    &format!("mailtrack_notify_lag_events{{endpoint=\"{name}\"}}"),
                ) == Some(0.0)
            })
    })
    .await;
    let text = scrape();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text: {text}");
    for name in ["clicks", "opens"] {
        for (series, expected) in [
            ("failed_attempts_total", 0.0),
            ("retried_total", 0.0),
            ("dead_lettered_total", 0.0),
            ("in_flight", 0.0),
            ("circuit_open", 0.0),
            ("disabled", 0.0),
            ("lag_seconds", 0.0),
        ] {
            let line = format!("mailtrack_notify_{series}{{endpoint=\"{name}\"}}");
            assert_eq!(value(&text, &line), Some(expected), "{line} in {text}");
        }
        let attempts = value(
            &text,
            &format!("mailtrack_notify_attempt_seconds_count{{endpoint=\"{name}\"}}"),
        )
        .unwrap();
        assert!(attempts >= 1.0, "{text}");
    }
    for (name, events) in [("clicks", n_clicks), ("opens", n_opens), ("copy", n_clicks)] {
        let count = format!("mailtrack_notify_delivery_seconds_count{{endpoint=\"{name}\"}}");
        assert_eq!(
            value(&text, &count),
            Some(events),
            "one sample an event: {text}"
        );
        let sum = format!("mailtrack_notify_delivery_seconds_sum{{endpoint=\"{name}\"}}");
        let sum = value(&text, &sum).unwrap();
        assert!(
            sum > 0.0 && sum < events * 60.0,
            "from the log to the 2xx: {sum}"
        );
    }
    notify.stop();

    // Beyond loopback the token is required, by the same rule as serve's admin listener.
    let open = write_config(
        dir.path(),
        Some(&redis.url()),
        &http_endpoint("clicks", "[\"Click\"]", &clicks, ""),
        "",
    );
    let text = std::fs::read_to_string(&open).unwrap().replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"0.0.0.0:0\"",
    );
    std::fs::write(&open, text).unwrap();
    let output = run(&["notify"], &open);
    assert_eq!(output.status.code(), Some(64), "{}", text_of(&output));
    assert!(
        text_of(&output).contains("admin.token_file: required when notify.admin_listen"),
        "{}",
        text_of(&output)
    );
}

fn text_of(output: &Output) -> String {
    text(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_sends_one_signed_test_event_and_exits_by_the_answer() {
    let good = Receiver::start(|_, _| Reply {
        body: "thanks",
        ..Reply::status(200)
    })
    .await;
    let broken = Receiver::start(|_, _| Reply {
        body: "broken today",
        ..Reply::status(500)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let campaign = "tags = { campaign = [\"spring\"] }";
    let endpoints = format!(
        "{}{}[[notify.endpoint]]\nname = \"private\"\nevents = [\"Open\"]\n\
         url = \"http://127.0.0.1:{}/\"\nsecrets_file = \"hook.secrets\"\n",
        http_endpoint("good", "[\"Click\"]", &good, campaign),
        http_endpoint("broken", "[\"Open\"]", &broken, ""),
        good.addr.port(),
    );
    // No Redis at all: an HTTP endpoint's test needs none.
    let config = write_config(dir.path(), None, &endpoints, "");

    let output = run(&["notify", "test", "--endpoint", "good"], &config);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("status: 200"), "{out}");
    assert!(out.contains("latency: "), "{out}");
    assert!(out.contains("answer: thanks"), "{out}");
    let received: Vec<Received> = good.received();
    assert_eq!(received.len(), 1, "one POST");
    verify_with_standardwebhooks(SECRET, &received);
    let batch: Vec<serde_json::Value> = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(batch.len(), 1, "a batch of one");
    let event = &batch[0];
    assert_eq!(event["eventType"], "Click");
    assert_eq!(event["mailtrack"]["test"], true);
    assert_eq!(
        event["click"]["linkTags"]["campaign"][0], "spring",
        "the rule's tags"
    );
    assert!(event["mail"]["messageId"]
        .as_str()
        .unwrap()
        .starts_with("mailtrack-test-"));
    assert!(
        out.contains(received[0].headers["webhook-id"].as_str()),
        "{out}"
    );

    let output = run(&["notify", "test", "--endpoint", "broken"], &config);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(69), "{out}");
    assert!(out.contains("status: 500"), "{out}");
    assert!(out.contains("broken today"), "{out}");
    assert_eq!(broken.received().len(), 1);

    let output = run(&["notify", "test", "--endpoint", "private"], &config);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(64), "{out}");
    assert!(
        out.contains("notify.endpoint.url") && out.contains("allow_private"),
        "{out}"
    );
    assert_eq!(
        good.received().len(),
        1,
        "nothing sent to a refused receiver"
    );

    let output = run(&["notify", "test", "--endpoint", "nobody"], &config);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(64), "{out}");
    assert!(
        out.contains("\"nobody\"") && out.contains("good, broken, private"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_recover_delivers_exactly_the_window_that_the_rule_wants() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoints = format!(
        "{}[[notify.endpoint]]\nname = \"copy\"\nevents = [\"Open\"]\nstream = \"copy:events\"\n",
        http_endpoint("hook", "[\"Click\"]", &receiver, "batch_size = 4")
    );
    let config = write_config(dir.path(), Some(&redis.url()), &endpoints, "");
    // Three runs of events, each in milliseconds of its own, so the window's edges are exact.
    let mut runs = Vec::new();
    for range in [0..10, 10..25, 25..30] {
        let last_ms = runs.last().map_or(0, |run: &Vec<(String, &str, String)>| {
            entry_ms(&run.last().unwrap().2)
        });
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        wait_until("the next millisecond", || now_ms() > last_ms).await;
        runs.push(publish(&redis, range));
    }
    let window = &runs[1];
    let since = entry_ms(&window[0].2).to_string();
    let until = entry_ms(&window.last().unwrap().2).to_string();
    let want: BTreeSet<String> = window
        .iter()
        .filter(|(_, kind, _)| *kind == "Click")
        .map(|(id, _, _)| id.clone())
        .collect();

    let recover = |since: &str, until: &str| {
        let mut args = vec!["notify", "recover", "--endpoint", "hook", "--since", since];
        if !until.is_empty() {
            args.extend(["--until", until]);
        }
        run(&args, &config)
    };
    let output = recover(&since, &until);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let got = taken(&receiver);
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), want, "{out}");
    assert!(got.values().all(|n| *n == 1), "each once: {got:?}");
    assert!(
        out.contains(&format!("found in log: {}", want.len())),
        "{out}"
    );
    assert!(out.contains(&format!("delivered: {}", want.len())), "{out}");
    assert!(out.contains("failed: 0"), "{out}");
    let accepted = receiver.accepted();
    assert!(accepted.iter().all(|r| {
        serde_json::from_slice::<Vec<serde_json::Value>>(&r.body)
            .unwrap()
            .len()
            <= 4
    }));
    verify_with_standardwebhooks(SECRET, &accepted);

    // A stream endpoint's test event goes to its stream, with the log's fields.
    let output = run(&["notify", "test", "--endpoint", "copy"], &config);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("added: entry "), "{}", text(&output));
    let copied: Vec<(String, BTreeMap<String, String>)> =
        redis.query(redis::cmd("XRANGE").arg("copy:events").arg("-").arg("+"));
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].1["type"], "Open");
    let event: serde_json::Value = serde_json::from_str(&copied[0].1["event"]).unwrap();
    assert_eq!(event["mailtrack"]["test"], true);

    let output = recover("yesterday", "");
    assert_eq!(output.status.code(), Some(64), "{}", text(&output));
    assert!(text(&output).contains("--since"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_a_410d_endpoints_events_are_recovered_to_a_fixed_receiver() {
    let redis = RedisServer::start();
    let refusing = Receiver::start(|_, _| Reply::status(400)).await;
    let gone = Receiver::start(|_, _| Reply::status(410)).await;
    let fixed = Receiver::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let short = "retry_schedule = [\"100ms\", \"200ms\"]\nbatch_size = 5";
    let endpoints = |refusing: &Receiver, gone: &Receiver| {
        format!(
            "{}{}",
            http_endpoint("refused", "[\"Click\"]", refusing, short),
            http_endpoint("gone", "[\"Click\", \"Open\"]", gone, short),
        )
    };
    let config = write_config(
        dir.path(),
        Some(&redis.url()),
        &endpoints(&refusing, &gone),
        "",
    );
    let published = publish(&redis, 0..24);
    let clicks: BTreeSet<String> = published
        .iter()
        .filter(|(_, kind, _)| *kind == "Click")
        .map(|(id, _, _)| id.clone())
        .collect();
    let all: BTreeSet<String> = published.iter().map(|(id, _, _)| id.clone()).collect();
    let mut notify = NotifyProcess::spawn(&config, "notify");
    let dead_events = || -> usize {
        let entries: Vec<(String, Vec<(String, String)>)> = redis.query(
            redis::cmd("XRANGE")
                .arg("mailtrack:events:notify:refused:dead")
                .arg("-")
                .arg("+"),
        );
        entries
            .iter()
            .flat_map(|(_, fields)| fields.iter().filter(|(k, _)| k == "delivery"))
            .map(|(_, delivery)| {
                let delivery: serde_json::Value = serde_json::from_str(delivery).unwrap();
                delivery["events"].as_array().unwrap().len()
            })
            .sum()
    };
    wait_until("every click dead-lettered", || {
        dead_events() == clicks.len()
    })
    .await;
    wait_until("the gone endpoint disabled", || {
        let text = get(notify.admin, "/metrics", None).1;
        value(&text, "mailtrack_notify_disabled{endpoint=\"gone\"}") == Some(1.0)
    })
    .await;
    notify.stop();

    // The operator points both endpoints at a receiver that works, and recovers.
    let config = write_config(
        dir.path(),
        Some(&redis.url()),
        &endpoints(&fixed, &fixed),
        "",
    );
    let output = run(
        &["notify", "recover", "--endpoint", "refused", "--since", "0"],
        &config,
    );
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert_eq!(
        taken(&fixed).keys().cloned().collect::<BTreeSet<_>>(),
        clicks,
        "{out}"
    );
    assert!(
        taken(&fixed).values().all(|n| *n == 1),
        "log and dead letters deduped: {out}"
    );
    assert!(
        out.contains(&format!("found in dead letters: {}", clicks.len())),
        "{out}"
    );
    let left: u64 = redis.query(redis::cmd("XLEN").arg("mailtrack:events:notify:refused:dead"));
    assert_eq!(left, 0, "every delivered dead letter removed: {out}");

    let before = fixed.accepted().len();
    let since = "2000-01-01T00:00:00Z";
    let output = run(
        &["notify", "recover", "--endpoint", "gone", "--since", since],
        &config,
    );
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let mut to_gone = BTreeSet::new();
    for delivery in &fixed.accepted()[before..] {
        assert!(delivery.path.ends_with("/gone"));
        let events: Vec<serde_json::Value> = serde_json::from_slice(&delivery.body).unwrap();
        for event in events {
            to_gone.insert(event["mailtrack"]["eventId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(to_gone, all, "every event of the disabled endpoint: {out}");
    verify_with_standardwebhooks(SECRET, &fixed.accepted());
}
