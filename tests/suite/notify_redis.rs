//! Notify's delivery loop over a real redis-server to real receivers on loopback: each
//! endpoint gets exactly the events its rule wants, at least once, signed so that the
//! `standardwebhooks` package verifies them; a receiver that is down gets everything once it
//! is back; one that refuses everything ends with every event in its dead letters; and two
//! processes on one endpoint share its work.

use crate::support_receiver;
use crate::support_redis;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use mailtrack::config::notify::{
    HttpReceiver, PayloadFormat, RuleConfig, WebhookSecret, DEFAULT_RETRY_SCHEDULE,
};
use mailtrack::events::tail::read_group;
use mailtrack::notify::http::{AddressPolicy, WebhookClient};
use mailtrack::notify::metrics::{EndpointMetrics, NotifyMetrics};
use mailtrack::notify::redis_log::{EndpointStore, CLAIM_MIN_IDLE};
use mailtrack::notify::resp::StreamReads;
use mailtrack::notify::stream_worker::StreamWorker;
use mailtrack::notify::worker::HttpWorker;
use mailtrack::notify::Rule;

use support_receiver::{verify_with_standardwebhooks, Received, Receiver, Reply};
use support_redis::RedisServer;

const STREAM: &str = "mailtrack:events";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Event `n`: a click tagged with a campaign (spring for even n) or, every third, an open.
fn event(n: usize) -> (String, String) {
    let id = format!("evt-{n:05}");
    let json = if n.is_multiple_of(3) {
        format!(
            r#"{{"eventType":"Open","mail":{{"messageId":"m-{n}"}},"open":{{"ipAddress":"192.0.2.1","timestamp":"2026-12-02T06:00:00.000Z","userAgent":"Mail/1"}},"mailtrack":{{"eventId":"{id}","trackingDomain":"t.example","method":"GET","repair":"as_received"}}}}"#
        )
    } else {
        let campaign = if n.is_multiple_of(2) {
            "spring"
        } else {
            "autumn"
        };
        format!(
            r#"{{"eventType":"Click","mail":{{"messageId":"m-{n}"}},"click":{{"ipAddress":"192.0.2.1","timestamp":"2026-12-02T06:00:00.000Z","userAgent":"Mail/1","link":"https://e.example/{n}","linkTags":{{"campaign":["{campaign}"]}}}},"mailtrack":{{"eventId":"{id}","trackingDomain":"t.example","method":"GET","repair":"as_received"}}}}"#
        )
    };
    (id, json)
}

fn publish(redis: &RedisServer, range: std::ops::Range<usize>) {
    for n in range {
        let (_, json) = event(n);
        let kind = if json.contains("\"Open\"") {
            "Open"
        } else {
            "Click"
        };
        let _: String = redis.query(
            redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("event")
                .arg(&json)
                .arg("type")
                .arg(kind),
        );
    }
}

fn receiver_config(url: url::Url, schedule: Vec<Duration>) -> HttpReceiver {
    HttpReceiver {
        url,
        secrets: vec![WebhookSecret::parse(SECRET).unwrap()],
        format: PayloadFormat::StandardWebhooks,
        timeout: Duration::from_millis(700),
        batch_size: 25,
        linger: Duration::from_millis(50),
        concurrency: 4,
        rate_per_second: None,
        retry_schedule: schedule,
        allow_private: true,
        sns: None,
    }
}

fn rule(types: &[&str], campaign: Option<&str>) -> Rule {
    let mut tags = BTreeMap::new();
    if let Some(campaign) = campaign {
        tags.insert("campaign".to_owned(), BTreeSet::from([campaign.to_owned()]));
    }
    Rule::new(&RuleConfig {
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        tags,
        ..RuleConfig::default()
    })
}

/// A running worker, stopped on `stop`.
struct Running {
    stats: EndpointMetrics,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        // The worker holds the receiver until it returns.
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

async fn start(
    redis: &RedisServer,
    endpoint: &str,
    consumer: &str,
    rule: Rule,
    receiver: HttpReceiver,
) -> Running {
    start_at(&redis.url(), endpoint, consumer, rule, receiver).await
}

async fn start_at(
    redis_url: &str,
    endpoint: &str,
    consumer: &str,
    rule: Rule,
    receiver: HttpReceiver,
) -> Running {
    let store = EndpointStore::open(
        redis_url,
        STREAM,
        endpoint,
        consumer,
        receiver.linger,
        CLAIM_MIN_IDLE,
    )
    .await
    .unwrap();
    let client = WebhookClient::new(receiver.timeout, AddressPolicy::AllowPrivate).unwrap();
    let stats = NotifyMetrics::default().endpoint(endpoint);
    let worker = HttpWorker::new(
        endpoint.to_owned(),
        rule,
        receiver,
        client,
        store,
        stats.clone(),
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(worker.run(stopped));
    Running { stats, stop, task }
}

/// The event ids in `received` requests, each once, and how many came more than once.
fn delivered(received: &[Received]) -> (BTreeSet<String>, usize) {
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    for request in received {
        let events: Vec<serde_json::Value> = serde_json::from_slice(&request.body).unwrap();
        for event in events {
            let id = event["mailtrack"]["eventId"].as_str().unwrap().to_owned();
            if !seen.insert(id) {
                duplicates += 1;
            }
        }
    }
    (seen, duplicates)
}

fn wanted(range: std::ops::Range<usize>, pick: impl Fn(&str) -> bool) -> BTreeSet<String> {
    range
        .map(event)
        .filter(|(_, json)| pick(json))
        .map(|(id, _)| id)
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_endpoint_gets_exactly_what_its_rule_wants_signed() {
    let redis = RedisServer::start();
    publish(&redis, 0..150);
    let spring = Receiver::start(|_, _| Reply::status(200)).await;
    let opens = Receiver::start(|_, _| Reply::status(204)).await;
    let schedule = DEFAULT_RETRY_SCHEDULE.to_vec();
    let a = start(
        &redis,
        "spring",
        "p1",
        rule(&["Click"], Some("spring")),
        receiver_config(spring.url("/a"), schedule.clone()),
    )
    .await;
    let b = start(
        &redis,
        "opens",
        "p1",
        rule(&["Open"], None),
        receiver_config(opens.url("/b"), schedule),
    )
    .await;
    publish(&redis, 150..300);
    let want_spring = wanted(0..300, |j| j.contains("\"spring\""));
    let want_opens = wanted(0..300, |j| j.contains("\"Open\""));
    wait_for("every spring click", Duration::from_secs(20), || {
        delivered(&spring.accepted()).0 == want_spring
    })
    .await;
    wait_for("every open", Duration::from_secs(20), || {
        delivered(&opens.accepted()).0 == want_opens
    })
    .await;
    a.stop().await;
    b.stop().await;
    let (got, duplicates) = delivered(&spring.accepted());
    assert_eq!(got, want_spring);
    eprintln!("spring: {} events, {duplicates} duplicates", got.len());
    assert!(spring.received().iter().all(|r| r.path == "/a"));
    verify_with_standardwebhooks(SECRET, &spring.received());
    verify_with_standardwebhooks(SECRET, &opens.received());
    // Nothing left pending in either group.
    for group in ["mailtrack-notify:spring", "mailtrack-notify:opens"] {
        let pending: redis::Value = redis.query(redis::cmd("XPENDING").arg(STREAM).arg(group));
        let redis::Value::Array(summary) = pending else {
            panic!("{pending:?}")
        };
        assert_eq!(summary[0], redis::Value::Int(0), "{group}: {summary:?}");
    }
}

/// The stream's reads speak RESP of their own (`notify::resp`): they must log in, pick the
/// database and speak the protocol the URL names, as redis-rs does for every other command.
#[tokio::test]
async fn the_reads_use_the_urls_password_database_and_protocol() {
    let redis = RedisServer::start_with(&["--appendonly", "no", "--requirepass", "s3cret"]);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    for (db, protocol) in [(2, "resp2"), (3, "resp3")] {
        let url = format!(
            "redis://default:s3cret@127.0.0.1:{}/{db}?protocol={protocol}",
            redis.port()
        );
        let mut connection = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let range = db * 100..db * 100 + 60;
        for n in range.clone() {
            let _: String = redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("event")
                .arg(event(n).1)
                .query(&mut connection)
                .unwrap();
        }
        let endpoint = format!("db{db}");
        let worker = start_at(
            &url,
            &endpoint,
            "p1",
            rule(&["Open", "Click"], None),
            receiver_config(receiver.url(&format!("/{endpoint}")), vec![]),
        )
        .await;
        let want = wanted(range, |_| true);
        wait_for(
            &format!("{protocol}: every event of db {db}"),
            Duration::from_secs(20),
            || {
                let received = receiver.accepted();
                let ours: Vec<Received> = received
                    .into_iter()
                    .filter(|r| r.path == format!("/{endpoint}"))
                    .collect();
                delivered(&ours).0 == want
            },
        )
        .await;
        worker.stop().await;
    }
    // A wrong password is Redis's refusal, said as such.
    let url = format!("redis://default:wrong@127.0.0.1:{}/2", redis.port());
    let client = redis::Client::open(url.as_str()).unwrap();
    let reads = StreamReads::open(&client, Duration::from_secs(1)).unwrap();
    let refused = reads
        .read_group(
            &read_group("mailtrack-notify:db2", "p1", 10, 10, STREAM),
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        redis::ErrorKind::AuthenticationFailed,
        "{refused}"
    );
    assert!(refused.to_string().contains("WRONGPASS"), "{refused}");
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_once_it_is_back() {
    let redis = RedisServer::start();
    // Down: it answers 503 to everything for its first 3 seconds.
    let up_at = Instant::now() + Duration::from_secs(3);
    let receiver = Receiver::start(move |_, _| {
        if Instant::now() < up_at {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let schedule = vec![Duration::from_millis(200); 20];
    let worker = start(
        &redis,
        "flaky",
        "p1",
        rule(&["Open", "Click"], None),
        receiver_config(receiver.url("/"), schedule),
    )
    .await;
    publish(&redis, 0..120);
    let all = wanted(0..120, |_| true);
    wait_for(
        "every event after the outage",
        Duration::from_secs(30),
        || delivered(&receiver.accepted()).0 == all,
    )
    .await;
    let stats = worker.stats.clone();
    worker.stop().await;
    assert!(stats.failed_attempts.get() > 0, "the outage was felt");
    assert_eq!(stats.dead_lettered.get(), 0);
    // Probed, not flooded: while it was down, the breaker held attempts back.
    let during_outage = receiver.received().iter().filter(|_| true).count();
    assert!(
        during_outage < 120,
        "{during_outage} requests for 120 events"
    );
}

#[tokio::test]
async fn a_receiver_refusing_everything_ends_with_every_event_dead_lettered() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(|_, _| Reply::status(400)).await;
    let schedule = vec![Duration::from_millis(100), Duration::from_millis(100)];
    let mut config = receiver_config(receiver.url("/"), schedule);
    config.batch_size = 10;
    let worker = start(
        &redis,
        "refuser",
        "p1",
        rule(&["Open", "Click"], None),
        config,
    )
    .await;
    publish(&redis, 0..60);
    let stats = worker.stats.clone();
    wait_for("every event dead-lettered", Duration::from_secs(60), || {
        stats.dead_lettered.get() == 60
    })
    .await;
    worker.stop().await;
    let dead: Vec<(String, Vec<(String, String)>)> = redis.query(
        redis::cmd("XRANGE")
            .arg(format!("{STREAM}:notify:refuser:dead"))
            .arg("-")
            .arg("+"),
    );
    let mut events = BTreeSet::new();
    for (_, fields) in &dead {
        let fields: BTreeMap<_, _> = fields.iter().cloned().collect();
        let delivery: serde_json::Value = serde_json::from_str(&fields["delivery"]).unwrap();
        assert_eq!(
            delivery["attempts"], 2,
            "three attempts: the first and two retries"
        );
        for event in delivery["events"].as_array().unwrap() {
            let event: serde_json::Value = serde_json::from_str(event.as_str().unwrap()).unwrap();
            events.insert(event["mailtrack"]["eventId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        events,
        wanted(0..60, |_| true),
        "every event is a dead letter, none lost"
    );
    let retries: u64 =
        redis.query(redis::cmd("ZCARD").arg(format!("{STREAM}:notify:refuser:retry")));
    assert_eq!(retries, 0);
}

#[tokio::test]
async fn two_processes_share_one_endpoint() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let schedule = DEFAULT_RETRY_SCHEDULE.to_vec();
    let one = start(
        &redis,
        "shared",
        "p1",
        rule(&["Open", "Click"], None),
        receiver_config(receiver.url("/"), schedule.clone()),
    )
    .await;
    let two = start(
        &redis,
        "shared",
        "p2",
        rule(&["Open", "Click"], None),
        receiver_config(receiver.url("/"), schedule),
    )
    .await;
    publish(&redis, 0..400);
    let all = wanted(0..400, |_| true);
    wait_for("every event", Duration::from_secs(20), || {
        delivered(&receiver.accepted()).0 == all
    })
    .await;
    let (by_one, by_two) = (one.stats.delivered.get(), two.stats.delivered.get());
    one.stop().await;
    two.stop().await;
    let (_, duplicates) = delivered(&receiver.accepted());
    eprintln!("p1 delivered {by_one}, p2 {by_two}, duplicates {duplicates}");
    assert!(
        by_one > 0 && by_two > 0,
        "both took part: {by_one} and {by_two}"
    );
}

#[tokio::test]
async fn a_stream_endpoint_gets_a_filtered_copy_on_another_redis() {
    let events = RedisServer::start();
    let queue = RedisServer::start();
    publish(&events, 0..90);
    let store = EndpointStore::open(
        &events.url(),
        STREAM,
        "crm",
        "p1",
        Duration::from_millis(50),
        CLAIM_MIN_IDLE,
    )
    .await
    .unwrap();
    let target = redis::Client::open(queue.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let worker = StreamWorker::new(
        "crm".into(),
        rule(&["Click"], None),
        store,
        target,
        "crm:clicks".into(),
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(worker.run(stopped));
    publish(&events, 90..180);
    let want = wanted(0..180, |j| j.contains("\"Click\""));
    let copied = || -> BTreeSet<String> {
        let entries: Vec<(String, Vec<(String, String)>)> =
            queue.query(redis::cmd("XRANGE").arg("crm:clicks").arg("-").arg("+"));
        entries
            .iter()
            .map(|(_, fields)| {
                let fields: BTreeMap<_, _> = fields.iter().cloned().collect();
                assert_eq!(fields["type"], "Click");
                let event: serde_json::Value = serde_json::from_str(&fields["event"]).unwrap();
                event["mailtrack"]["eventId"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    wait_for("every click copied", Duration::from_secs(20), || {
        copied() == want
    })
    .await;
    // The worker holds the receiver until it returns.
    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test]
async fn lag_counts_what_the_endpoint_has_not_read() {
    let redis = RedisServer::start();
    let mut store = EndpointStore::open(
        &redis.url(),
        STREAM,
        "slow",
        "p1",
        Duration::from_millis(10),
        CLAIM_MIN_IDLE,
    )
    .await
    .unwrap();
    assert_eq!(store.lag().await.unwrap(), (0, Duration::ZERO));
    publish(&redis, 0..10);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (events, age) = store.lag().await.unwrap();
    assert_eq!(events, 10);
    assert!(age >= Duration::from_secs(1), "{age:?}");
    let read = store.read_new(4, Duration::from_millis(10)).await.unwrap();
    assert_eq!(read.len(), 4);
    assert_eq!(store.lag().await.unwrap().0, 6);
}

/// A rate limit holds attempts back without using a retry, and without bursts: 40 one-event
/// batches to an endpoint allowed 50 attempts a second, with 4 slots free, all arrive once,
/// none retried, and any 11 in a row at the receiver span at least the 10 intervals between
/// them, less 40 ms for scheduling and loopback jitter. (Starting every free slot at once,
/// then resting, sent 4 attempts together.)
#[tokio::test]
async fn a_rate_limit_spaces_attempts_and_uses_no_retry() {
    let redis = RedisServer::start();
    publish(&redis, 0..40);
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&arrivals);
    let receiver = Receiver::start(move |_, _| {
        log.lock().unwrap().push(Instant::now());
        Reply::status(204)
    })
    .await;
    let mut config = receiver_config(receiver.url("/limited"), DEFAULT_RETRY_SCHEDULE.to_vec());
    config.batch_size = 1;
    config.linger = Duration::ZERO;
    config.rate_per_second = Some(50);
    let everything = rule(&["Open", "Click"], None);
    let running = start(&redis, "limited", "p1", everything, config).await;
    wait_for("every event", Duration::from_secs(30), || {
        delivered(&receiver.accepted()).0.len() == 40
    })
    .await;
    let retried = running.stats.retried.get();
    running.stop().await;
    let (got, duplicates) = delivered(&receiver.accepted());
    assert_eq!((got, duplicates), (wanted(0..40, |_| true), 0));
    assert_eq!(retried, 0, "holding back is not a retry");
    let times = arrivals.lock().unwrap().clone();
    assert_eq!(times.len(), 40, "one attempt each");
    let least = Duration::from_millis(10 * 20 - 40);
    for window in times.windows(11) {
        let span = window[10] - window[0];
        assert!(
            span >= least,
            "11 attempts within {span:?}: faster than 50 a second"
        );
    }
}
