//! `format = "sns"` against a receiver written the way SES → SNS → HTTPS receivers are
//! (tests/receivers/sns_receiver.py): the `SubscriptionConfirmation` comes first and is
//! confirmed by a GET of its `SubscribeURL` on notify's own listener; then every event arrives
//! in a `Notification` envelope with SNS's headers, its `Message` the event as logged. Until
//! the receiver confirms, nothing is delivered and nothing is lost; a wrong `Token` is refused,
//! and the confirmation needs no admin bearer token when one guards the listener.

use crate::support_receiver;
use crate::support_redis;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support_receiver::{verify_with_standardwebhooks, Received};
use support_redis::RedisServer;

const BINARY: &str = env!("CARGO_BIN_EXE_mailtrack");
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:ses-events";
const STREAM: &str = "mailtrack:events";
/// Long enough for any condition here on a loaded machine; never reached when all is well.
const DEADLINE: Duration = Duration::from_secs(30);

/// A child process killed when dropped, so that a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // It may have exited already; then there is nothing to kill.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python receiver, recording into `record`; confirming only once `confirm_when` exists.
fn start_receiver(record: &Path, confirm_when: Option<&Path>) -> (Running, u16) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/receivers/sns_receiver.py"
    );
    let mut command = Command::new("python3");
    command.arg(script).arg("--record").arg(record);
    if let Some(flag) = confirm_when {
        command.arg("--confirm-when").arg(flag);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let stdout: ChildStdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line.trim().parse().expect("the receiver prints its port");
    (Running(child), port)
}

/// The admin bearer token, when a test sets one: `/sns/confirm` must not need it.
const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A config with one SNS endpoint to the receiver on `port`; with `[admin] token_file` when
/// `token`.
fn write_config(dir: &Path, redis: &RedisServer, port: u16, token: bool) -> PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    std::fs::write(dir.join("admin.token"), ADMIN_TOKEN).unwrap();
    let token_file = if token {
        "token_file = \"admin.token\"\n"
    } else {
        ""
    };
    std::fs::write(dir.join("sns.secrets"), format!("{SECRET}\n")).unwrap();
    let path = dir.join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n[log]\nformat = \"json\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{token_file}\
         [events]\nsink = \"redis\"\nredis_url = \"{}\"\n\
         [notify]\nadmin_listen = \"127.0.0.1:0\"\n\
         [[notify.endpoint]]\nname = \"ses\"\nevents = [\"Click\", \"Open\"]\n\
         url = \"http://127.0.0.1:{port}/sns\"\nallow_private = true\nformat = \"sns\"\n\
         topic_arn = \"{TOPIC}\"\nsecrets_file = \"sns.secrets\"\nlinger_ms = 20\n\
         retry_schedule = [\"300ms\", \"300ms\"]\ntimeout_ms = 5000\n",
        redis.url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start_notify(config: &Path) -> Running {
    let child = Command::new(BINARY)
        .args(["notify", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// Adds `count` SES-shaped events to the stream; answers each one's JSON by its eventId.
fn add_events(redis: &RedisServer, count: usize) -> BTreeMap<String, String> {
    let mut added = BTreeMap::new();
    for n in 0..count {
        let id = format!("e{n}");
        let json = if n % 3 == 0 {
            format!(
                r#"{{"eventType":"Open","mail":{{"messageId":"m-{n}"}},"open":{{"ipAddress":"192.0.2.1","timestamp":"2026-12-02T10:00:{:02}.123Z","userAgent":"UA"}},"mailtrack":{{"eventId":"{id}"}}}}"#,
                n % 60
            )
        } else {
            format!(
                r#"{{"eventType":"Click","mail":{{"messageId":"m-{n}"}},"click":{{"ipAddress":"192.0.2.1","timestamp":"2026-12-02T10:00:{:02}.456Z","userAgent":"UA","link":"https://example.com/{n}","linkTags":{{}}}},"mailtrack":{{"eventId":"{id}"}}}}"#,
                n % 60
            )
        };
        let _: String = redis.query(
            redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("event")
                .arg(&json),
        );
        added.insert(id, json);
    }
    added
}

/// What the receiver recorded, in order.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a record is JSON"))
        .collect()
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

fn event_ids(records: &[Value]) -> BTreeSet<String> {
    of_type(records, "Notification")
        .iter()
        .filter_map(|r| r["event"]["mailtrack"]["eventId"].as_str())
        .map(str::to_owned)
        .collect()
}

/// Waits until `done` holds of the records, and answers them.
fn wait_for(path: &Path, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let now = records(path);
        if done(&now) {
            return now;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "waited for {what}; the receiver has {now:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GETs `url` (on loopback) with a bare HTTP/1.1 request; answers the status and body.
fn get(url: &str) -> (u16, String) {
    let url = url::Url::parse(url).unwrap();
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: notify\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

fn state(redis: &RedisServer) -> BTreeMap<String, String> {
    redis.query(redis::cmd("HGETALL").arg(format!("{STREAM}:notify:ses:sns")))
}

fn as_received(record: &Value) -> Received {
    let headers = record["headers"].as_object().unwrap();
    Received {
        path: "/sns".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect(),
        body: record["body"]
            .as_str()
            .unwrap()
            .to_owned()
            .into_bytes()
            .into(),
        status: 200,
        delay: Duration::ZERO,
    }
}

#[test]
fn the_receiver_confirms_first_then_gets_every_event_in_an_envelope() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let (_receiver, port) = start_receiver(&record, None);
    let added = add_events(&redis, 24);
    let config = write_config(dir.path(), &redis, port, false);
    let _notify = start_notify(&config);

    let want: BTreeSet<String> = added.keys().cloned().collect();
    let got = wait_for(&record, "every event", |r| event_ids(r) == want);

    let first = &got[0];
    assert_eq!(first["type"], "SubscriptionConfirmation", "{got:#?}");
    assert_eq!(first["confirmed"], 200, "the SubscribeURL GET confirmed it");
    let body: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["TopicArn"], TOPIC);
    assert_eq!(
        body["Token"].as_str().unwrap().len(),
        64,
        "32 random bytes in hex"
    );
    assert!(body["Message"].as_str().unwrap().starts_with(&format!(
        "You have chosen to subscribe to the topic {TOPIC}."
    )));
    let confirmations = of_type(&got, "SubscriptionConfirmation");
    assert_eq!(confirmations.len(), 1, "confirmed at once: no resend");

    let notifications = of_type(&got, "Notification");
    assert_eq!(notifications.len(), got.len() - 1, "{got:#?}");
    for record in &notifications {
        assert!(record["problem"].is_null(), "{record:#?}");
        let headers = &record["headers"];
        let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
        let id = record["event"]["mailtrack"]["eventId"].as_str().unwrap();
        assert_eq!(
            body["Message"].as_str(),
            Some(added[id].as_str()),
            "the event as logged"
        );
        assert!(body.get("Subject").is_none(), "SES publishes no Subject");
        assert!(uuid::Uuid::parse_str(body["MessageId"].as_str().unwrap()).is_ok());
        assert_eq!(headers["x-amz-sns-message-id"], body["MessageId"]);
        assert_eq!(headers["x-amz-sns-topic-arn"], TOPIC);
        assert!(headers["x-amz-sns-subscription-arn"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{TOPIC}:")));
        assert_eq!(headers["content-type"], "text/plain; charset=UTF-8");
        assert_eq!(
            headers["user-agent"],
            "Amazon Simple Notification Service Agent"
        );
        let timestamp = body["Timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'));
        for field in [
            "SignatureVersion",
            "Signature",
            "SigningCertURL",
            "UnsubscribeURL",
        ] {
            assert!(body[field].is_string(), "{field} in {body}");
        }
    }
    let signed: Vec<Received> = notifications.iter().map(|r| as_received(r)).collect();
    verify_with_standardwebhooks(SECRET, &signed);
    let confirmed = state(&redis);
    assert!(confirmed.contains_key("confirmed_at"));

    // Another topic is another subscription: it must be confirmed afresh, with a new Token.
    drop(_notify);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(TOPIC, &format!("{TOPIC}-2"))).unwrap();
    let _notify = start_notify(&config);
    let got = wait_for(&record, "a confirmation of the new topic", |r| {
        of_type(r, "SubscriptionConfirmation").len() == 2
    });
    let again = of_type(&got, "SubscriptionConfirmation")[1];
    let again: Value = serde_json::from_str(again["body"].as_str().unwrap()).unwrap();
    assert_eq!(again["TopicArn"], format!("{TOPIC}-2"));
    assert_ne!(again["Token"].as_str(), Some(confirmed["token"].as_str()));
}

#[test]
fn unconfirmed_events_wait_and_a_wrong_token_is_refused() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let flag = dir.path().join("confirm-now");
    let (_receiver, port) = start_receiver(&record, Some(&flag));
    let config = write_config(dir.path(), &redis, port, true);
    let _notify = start_notify(&config);
    let added = add_events(&redis, 12);

    let got = wait_for(&record, "the confirmation re-sent", |r| {
        of_type(r, "SubscriptionConfirmation").len() >= 2
    });
    assert!(of_type(&got, "Notification").is_empty(), "{got:#?}");
    let latest = of_type(&got, "SubscriptionConfirmation").last().unwrap()["body"].clone();
    let latest: Value = serde_json::from_str(latest.as_str().unwrap()).unwrap();
    let subscribe_url = latest["SubscribeURL"].as_str().unwrap();
    let token = latest["Token"].as_str().unwrap();

    let wrong = subscribe_url.replace(token, &"0".repeat(token.len()));
    let (status, body) = get(&wrong);
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).expect("a JSON error");
    assert!(error["error"].as_str().unwrap().contains("Token"), "{body}");
    let unknown = subscribe_url.replace("endpoint=ses", "endpoint=nobody");
    assert_eq!(get(&unknown).0, 404);
    // The listener's other routes still need the bearer token; only the confirmation does not.
    let metrics = format!("{}/metrics", subscribe_url.split("/sns/").next().unwrap());
    assert_eq!(get(&metrics).0, 401, "{metrics}");
    assert!(!state(&redis).contains_key("confirmed_at"), "not confirmed");

    let seen = of_type(&records(&record), "SubscriptionConfirmation").len();
    let got = wait_for(&record, "another confirmation", |r| {
        of_type(r, "SubscriptionConfirmation").len() > seen
    });
    assert!(of_type(&got, "Notification").is_empty(), "{got:#?}");
    let pending: Vec<redis::Value> = redis.query(
        redis::cmd("XPENDING")
            .arg(STREAM)
            .arg("mailtrack-notify:ses")
            .arg("-")
            .arg("+")
            .arg(100),
    );
    assert!(pending.is_empty(), "nothing was read from the log yet");

    std::fs::write(&flag, "").unwrap();
    let want: BTreeSet<String> = added.keys().cloned().collect();
    let got = wait_for(&record, "every event after the confirmation", |r| {
        event_ids(r) == want
    });
    let confirmed_at = got
        .iter()
        .position(|r| r["confirmed"] == 200)
        .expect("a confirmation was confirmed");
    let first_event = got
        .iter()
        .position(|r| r["type"] == "Notification")
        .unwrap();
    assert!(confirmed_at < first_event, "{got:#?}");
    assert!(of_type(&got, "Notification")
        .iter()
        .all(|r| r["problem"].is_null()));
}
