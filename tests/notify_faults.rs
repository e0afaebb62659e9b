//! Nothing is lost between `mailtrack serve` and `mailtrack notify`, whatever fails, with the
//! real binaries: serve writes signed clicks and opens to a real Redis (its append-only file
//! fsynced on every write), notify delivers them to two receivers on loopback with different
//! rules, and while the load goes on one thing fails: a receiver down for 20 s, a receiver
//! answering 500 to a third of the requests, a receiver slower than the timeout, notify killed
//! with kill -9 mid-batch, Redis killed and restarted from its AOF, or two notify processes
//! share the work. In every case each receiver gets every event its rule matches (the events
//! as serve wrote them to the stream, filtered here, not as notify counts them), at least once,
//! and none other; duplicates are counted and printed (`--nocapture` shows them). Every
//! delivery is verified with the real `standardwebhooks` package.
//!
//! Then the endings of a delivery through the process: a receiver answering 400 to everything
//! fills the dead letters with exactly the events that matched, and one answering 410 stops its
//! endpoint (logged as such) while the other goes on, its events left in the log for
//! `notify recover`.

mod common;
mod support_receiver;
mod support_redis;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailtrack::link::LinkTags;
use mailtrack::testing::{fixed_signer, request_target};
use serde_json::Value;

use common::{pixel, try_send, Proto, ServeProcess, ADMIN_ON_A_FREE_PORT, BINARY};
use support_receiver::{verify_with_standardwebhooks, Received, Receiver, Reply};
use support_redis::{event_id, stream_entries, RedisServer};

const STREAM: &str = "mailtrack:events";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver has this long to answer: short, so that the slow receiver's case is short.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Short, so that a batch goes out soon after its first event.
const LINGER_MS: u64 = 50;
/// Small batches, so that a run of a few seconds makes many deliveries.
const BATCH_SIZE: usize = 20;
/// A restarted notify takes over a killed one's entries after this: above timeout + linger
/// + the 1 s margin notify asks for, far below the 60 s default.
const CLAIM_IDLE_MS: u64 = 3_000;
/// Retries that outlast every fault here (about 40 s, at least 31 s with the jitter), so that
/// nothing becomes a dead letter while a receiver is down for 20 s.
const LONG_SCHEDULE: &str =
    r#"["200ms", "500ms", "1s", "2s", "4s", "4s", "4s", "4s", "4s", "4s", "4s", "4s", "4s"]"#;
/// How long a case may take, after the load stops, to have every event delivered.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);
/// The pause between one load worker's requests: about 100 requests a second for two.
const LOAD_PAUSE: Duration = Duration::from_millis(20);

/// How a receiver answers, switchable while the case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 204 at once.
    Fine,
    /// 500 to every third request, 204 to the others.
    FailEveryThird,
    /// 204, but only after three times the timeout: notify has given up by then.
    Slow,
    /// This status to everything.
    Always(u16),
}

/// Which events an endpoint wants, written once for notify's config and once for the test.
#[derive(Debug, Clone, Copy)]
struct Rule {
    name: &'static str,
    events: &'static [&'static str],
    /// Only events carrying the tag `campaign` = `spring`.
    spring_only: bool,
}

/// Clicks tagged `campaign = spring`.
const SPRING_CLICKS: Rule = Rule {
    name: "spring",
    events: &["Click"],
    spring_only: true,
};

/// Every open and click.
const EVERYTHING: Rule = Rule {
    name: "everything",
    events: &["Open", "Click"],
    spring_only: false,
};

impl Rule {
    /// Whether the rule wants `event`, read from the event's JSON as serve wrote it.
    fn wants(&self, event: &Value) -> bool {
        let kind = event["eventType"].as_str().unwrap_or_default();
        let tagged = |tags: &Value| {
            tags["campaign"]
                .as_array()
                .is_some_and(|values| values.iter().any(|v| v == "spring"))
        };
        self.events.contains(&kind)
            && (!self.spring_only
                || tagged(&event["click"]["linkTags"])
                || tagged(&event["mail"]["tags"]))
    }

    fn toml(&self, receiver: SocketAddr, schedule: &str) -> String {
        let events: Vec<String> = self.events.iter().map(|e| format!("{e:?}")).collect();
        let tags = if self.spring_only {
            "tags = { campaign = [\"spring\"] }\n"
        } else {
            ""
        };
        format!(
            "[[notify.endpoint]]\nname = \"{}\"\nevents = [{}]\n{tags}\
             url = \"http://{receiver}/hooks/{}\"\nsecrets_file = \"hook.secrets\"\n\
             allow_private = true\ntimeout_ms = {}\nlinger_ms = {LINGER_MS}\n\
             batch_size = {BATCH_SIZE}\nretry_schedule = {schedule}\n",
            self.name,
            events.join(", "),
            self.name,
            TIMEOUT.as_millis()
        )
    }
}

/// A receiver whose answers follow a switchable [`Mode`].
struct Hook {
    rule: Rule,
    receiver: Receiver,
    mode: Arc<Mutex<Mode>>,
}

impl Hook {
    async fn start(rule: Rule, mode: Mode) -> Hook {
        let mode = Arc::new(Mutex::new(mode));
        let script_mode = Arc::clone(&mode);
        let receiver = Receiver::start(move |n, _| match *script_mode.lock().unwrap() {
            Mode::Fine => Reply::status(204),
            Mode::FailEveryThird if n % 3 == 2 => Reply::status(500),
            Mode::FailEveryThird => Reply::status(204),
            Mode::Slow => Reply {
                delay: TIMEOUT * 3,
                ..Reply::status(204)
            },
            Mode::Always(status) => Reply::status(status),
        })
        .await;
        Hook {
            rule,
            receiver,
            mode,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The requests notify may count as delivered: answered 2xx within its timeout.
    fn delivered(&self) -> Vec<Received> {
        let answered = self.receiver.accepted().into_iter();
        answered.filter(|r| r.delay < TIMEOUT).collect()
    }

    /// How many times each event was delivered.
    fn delivered_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for request in self.delivered() {
            for id in event_ids_of(&request) {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// The `eventId`s of a delivery's body, a JSON array of events.
fn event_ids_of(request: &Received) -> Vec<String> {
    let events: Vec<Value> = serde_json::from_slice(&request.body)
        .unwrap_or_else(|e| panic!("a delivery is a JSON array of events: {e}"));
    events.iter().map(event_id).collect()
}

/// A spawned `mailtrack notify`, its log lines kept (and copied to standard error, marked
/// with its label). Killed when dropped.
struct NotifyProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl NotifyProcess {
    /// Starts it and waits until every one of `endpoints` is being notified.
    fn spawn(config: &Path, label: &str, endpoints: usize) -> NotifyProcess {
        let mut child = Command::new(BINARY)
            .args(["notify", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        let label = label.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{label}: {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let notify = NotifyProcess { child, log };
        wait_until(
            "notify to start every endpoint",
            Duration::from_secs(20),
            || notify.logged("notifying") >= endpoints,
        );
        notify
    }

    /// How many of its log lines contain `text`.
    fn logged(&self, text: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|line| line.contains(text)).count()
    }

    fn lines_with(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|line| line.contains(text))
            .cloned()
            .collect()
    }

    /// SIGKILL, as a crash would.
    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for NotifyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done`, failing the test after `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One case's processes: a Redis with its AOF, serve, the receivers, and notify. Dropped in
/// this order: notify and serve before the Redis and receivers they talk to.
struct Rig {
    notify: Vec<NotifyProcess>,
    serve: ServeProcess,
    hooks: Vec<Hook>,
    runtime: tokio::runtime::Runtime,
    redis: RedisServer,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Starts everything: receivers for `rules` answering as `modes` say, with the retry
    /// schedule `schedule`, and `processes` notify processes.
    fn start(rules: &[(Rule, Mode)], schedule: &str, processes: usize) -> Rig {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hooks: Vec<Hook> = rules
            .iter()
            .map(|(rule, mode)| runtime.block_on(Hook::start(*rule, *mode)))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start_with_aof();
        let config = write_config(dir.path(), &redis, &hooks, schedule);
        let serve = ServeProcess::spawn(&config, 1);
        let notify = (0..processes)
            .map(|n| NotifyProcess::spawn(&config, &format!("notify{n}"), hooks.len()))
            .collect();
        Rig {
            runtime,
            redis,
            serve,
            hooks,
            config,
            notify,
            _dir: dir,
        }
    }

    /// Load on serve from two workers until `stop` turns true; returns the message ids of
    /// the requests serve answered, each a distinct link.
    fn start_load(
        &self,
        prefix: &str,
        stop: &Arc<AtomicBool>,
    ) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
        (0..2)
            .map(|worker| {
                let (addr, stop) = (self.serve.addr(), Arc::clone(stop));
                let prefix = format!("{prefix}{worker}-");
                self.runtime.spawn(async move {
                    let mut answered = Vec::new();
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let id = format!("{prefix}{n}");
                        if send_one(addr, &id, n).await {
                            answered.push(id);
                        }
                        tokio::time::sleep(LOAD_PAUSE).await;
                    }
                    answered
                })
            })
            .collect()
    }

    /// `count` requests from one worker, as fast as serve answers.
    fn send(&self, prefix: &str, count: usize) -> Vec<String> {
        let addr = self.serve.addr();
        self.runtime.block_on(async {
            let mut answered = Vec::new();
            for n in 0..count {
                let id = format!("{prefix}{n}");
                if send_one(addr, &id, n).await {
                    answered.push(id);
                }
            }
            answered
        })
    }

    fn finish_load(&self, load: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<String> {
        self.runtime.block_on(async {
            let mut all = Vec::new();
            for task in load {
                all.extend(task.await.unwrap());
            }
            all
        })
    }

    /// Every event in the stream, by `eventId`, once every answered request's event is there.
    fn events_in_stream(&self, answered: &[String]) -> BTreeMap<String, Value> {
        let answered: HashSet<&str> = answered.iter().map(String::as_str).collect();
        let mut events = BTreeMap::new();
        wait_until(
            "serve to write every answered request's event to the stream",
            Duration::from_secs(30),
            || {
                let entries = stream_entries(&self.redis, STREAM);
                let seen: HashSet<&str> = entries.iter().map(|(_, _, m)| m.as_str()).collect();
                if answered.iter().all(|id| seen.contains(id)) {
                    events = entries
                        .iter()
                        .map(|(json, _, _)| (event_id(json), json.clone()))
                        .collect();
                    true
                } else {
                    false
                }
            },
        );
        events
    }

    /// The `eventId`s of `events` that `rule` wants.
    fn wanted(events: &BTreeMap<String, Value>, rule: Rule) -> BTreeSet<String> {
        events
            .iter()
            .filter(|(_, json)| rule.wants(json))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Waits until every hook was delivered every event its rule wants, then checks that it
    /// got none other, that every delivery verifies, and prints the duplicates.
    fn assert_nothing_lost(&self, case: &str, events: &BTreeMap<String, Value>) {
        for hook in &self.hooks {
            let want = Rig::wanted(events, hook.rule);
            assert!(
                !want.is_empty(),
                "{case}: the load made no event {} wants",
                hook.rule.name
            );
            let missing = |counts: &BTreeMap<String, usize>| {
                want.iter().filter(|id| !counts.contains_key(*id)).count()
            };
            let started = Instant::now();
            let counts = loop {
                let counts = hook.delivered_counts();
                let left = missing(&counts);
                if left == 0 {
                    break counts;
                }
                assert!(
                    started.elapsed() < DELIVERY_DEADLINE,
                    "{case}: endpoint {} is missing {left} of {} events after {DELIVERY_DEADLINE:?}",
                    hook.rule.name,
                    want.len()
                );
                std::thread::sleep(Duration::from_millis(100));
            };
            let unwanted: Vec<&String> = counts.keys().filter(|id| !want.contains(*id)).collect();
            assert!(
                unwanted.is_empty(),
                "{case}: endpoint {} got {} events its rule does not match, e.g. {:?}",
                hook.rule.name,
                unwanted.len(),
                events.get(unwanted[0])
            );
            let deliveries: usize = counts.values().sum();
            let requests = hook.receiver.received();
            eprintln!(
                "{case}: endpoint {}: {} events wanted, all delivered; {} duplicates; \
                 {} requests, {} of them counted as deliveries",
                hook.rule.name,
                want.len(),
                deliveries - want.len(),
                requests.len(),
                hook.delivered().len()
            );
            let answered: Vec<Received> = requests.into_iter().filter(|r| r.status != 0).collect();
            verify_with_standardwebhooks(SECRET, &answered);
        }
    }
}

/// The config serve and notify both read: the Redis sink, a spool, and an endpoint per hook.
fn write_config(dir: &Path, redis: &RedisServer, hooks: &[Hook], schedule: &str) -> PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    std::fs::write(dir.join("hook.secrets"), format!("{SECRET}\n")).unwrap();
    let endpoints: String = hooks
        .iter()
        .map(|hook| hook.rule.toml(hook.receiver.addr, schedule))
        .collect();
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n{ADMIN_ON_A_FREE_PORT}[server]\nhttp = \"127.0.0.1:0\"\n\
         shutdown_grace = 5\n[log]\nformat = \"json\"\n[events]\nsink = \"redis\"\n\
         redis_url = \"{}\"\nstream = \"{STREAM}\"\nspool_dir = \"spool\"\nsink_timeout_ms = 300\n\
         budget_per_minute = 0\n[notify]\nadmin_listen = \"127.0.0.1:0\"\nclaim_idle_ms = {CLAIM_IDLE_MS}\n{endpoints}",
        redis.url()
    );
    let path = dir.join("mailtrack.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The request-target of a signed click to a link of message `id` with `tags`.
fn tagged_click(id: &str, tags: &[(&str, &str)]) -> String {
    let mut link_tags = LinkTags::new();
    for (key, value) in tags {
        link_tags.push(key, value).unwrap();
    }
    let message = mailtrack::testing::stamp_v2(id, "");
    let link = fixed_signer()
        .click_url("https://example.com/landing", &message, &link_tags)
        .unwrap();
    request_target(&link).to_owned()
}

/// Request `n` of a worker: every third an open, the others clicks, half of those tagged
/// `campaign = spring`, a quarter `campaign = autumn`, the rest untagged. Whether serve
/// answered it (a closed connection while serve is busy is not a failure of the case: the
/// request simply made no event).
async fn send_one(addr: SocketAddr, id: &str, n: usize) -> bool {
    let target = match n % 6 {
        0 | 3 => pixel(id),
        1 | 4 => tagged_click(id, &[("campaign", "spring")]),
        2 => tagged_click(id, &[("campaign", "autumn")]),
        _ => tagged_click(id, &[]),
    };
    match try_send(addr, None, Proto::Http1, "GET", &target, &[]).await {
        Ok(reply) => {
            assert!(
                matches!(reply.status, 200 | 302),
                "serve answered {} to {target}",
                reply.status
            );
            true
        }
        Err(_) => false,
    }
}

/// The number of entries `group` has read and not acknowledged.
fn pending(redis: &RedisServer, group: &str) -> u64 {
    // The summary form: the count, the smallest and largest ids, and the count per consumer.
    let summary: (u64, redis::Value, redis::Value, redis::Value) =
        redis.query(redis::cmd("XPENDING").arg(STREAM).arg(group));
    summary.0
}

/// A case of "nothing lost": the rig started with `rules`, the load started, then `fault`
/// once the first deliveries are in, then half a second more of load, then the checks.
fn nothing_lost(
    case: &str,
    rules: &[(Rule, Mode)],
    processes: usize,
    fault: impl FnOnce(&mut Rig),
) -> Rig {
    let mut rig = Rig::start(rules, LONG_SCHEDULE, processes);
    let stop = Arc::new(AtomicBool::new(false));
    let load = rig.start_load(case, &stop);
    wait_until("the first deliveries", Duration::from_secs(20), || {
        rig.hooks
            .iter()
            .all(|hook| !hook.receiver.received().is_empty())
    });
    fault(&mut rig);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let answered = rig.finish_load(load);
    let events = rig.events_in_stream(&answered);
    eprintln!(
        "{case}: {} requests answered, {} events in the stream",
        answered.len(),
        events.len()
    );
    rig.assert_nothing_lost(case, &events);
    rig
}

#[test]
fn a_receiver_down_for_20_s_then_up_loses_nothing() {
    nothing_lost(
        "down",
        &[(SPRING_CLICKS, Mode::Fine), (EVERYTHING, Mode::Fine)],
        1,
        |rig| {
            rig.hooks[1].receiver.go_down();
            std::thread::sleep(Duration::from_secs(20));
            rig.runtime.block_on(rig.hooks[1].receiver.come_up());
        },
    );
}

#[test]
fn a_receiver_answering_500_to_a_third_loses_nothing() {
    nothing_lost(
        "third",
        &[
            (SPRING_CLICKS, Mode::Fine),
            (EVERYTHING, Mode::FailEveryThird),
        ],
        1,
        |_| std::thread::sleep(Duration::from_secs(4)),
    );
}

#[test]
fn a_receiver_slower_than_the_timeout_loses_nothing() {
    nothing_lost(
        "slow",
        &[(SPRING_CLICKS, Mode::Fine), (EVERYTHING, Mode::Fine)],
        1,
        |rig| {
            rig.hooks[1].set(Mode::Slow);
            std::thread::sleep(Duration::from_secs(4));
            rig.hooks[1].set(Mode::Fine);
        },
    );
}

#[test]
fn notify_killed_mid_batch_then_restarted_loses_nothing() {
    nothing_lost(
        "kill",
        &[(SPRING_CLICKS, Mode::Fine), (EVERYTHING, Mode::Fine)],
        1,
        |rig| {
            let group = format!("mailtrack-notify:{}", EVERYTHING.name);
            // Killed while it holds entries it read and has not acknowledged: mid-batch.
            wait_until(
                "notify to hold unacknowledged entries",
                Duration::from_secs(10),
                || pending(&rig.redis, &group) > 0,
            );
            rig.notify[0].kill9();
            let held = pending(&rig.redis, &group);
            eprintln!("kill: notify killed holding {held} unacknowledged entries");
            std::thread::sleep(Duration::from_secs(1));
            let restarted = NotifyProcess::spawn(&rig.config, "notify-restarted", rig.hooks.len());
            rig.notify.push(restarted);
        },
    );
}

#[test]
fn redis_restarted_from_its_aof_loses_nothing() {
    nothing_lost(
        "redis",
        &[(SPRING_CLICKS, Mode::Fine), (EVERYTHING, Mode::Fine)],
        1,
        |rig| {
            rig.redis.kill9();
            // serve spools meanwhile; notify's reads and writes fail and are tried again.
            std::thread::sleep(Duration::from_secs(2));
            rig.redis.restart();
        },
    );
}

#[test]
fn two_notify_processes_share_the_work_and_lose_nothing() {
    let mut worked: BTreeMap<String, u64> = BTreeMap::new();
    let rig = nothing_lost(
        "two",
        &[(SPRING_CLICKS, Mode::Fine), (EVERYTHING, Mode::Fine)],
        2,
        |rig| {
            // Which consumers hold entries, sampled while the load goes on: a consumer seen
            // holding some has read work from the stream.
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(4) {
                for hook in &rig.hooks {
                    let group = format!("mailtrack-notify:{}", hook.rule.name);
                    let consumers: Vec<BTreeMap<String, redis::Value>> = rig
                        .redis
                        .query(redis::cmd("XINFO").arg("CONSUMERS").arg(STREAM).arg(&group));
                    for consumer in consumers {
                        let name: String =
                            redis::from_redis_value(consumer["name"].clone()).unwrap();
                        let held: u64 =
                            redis::from_redis_value(consumer["pending"].clone()).unwrap();
                        *worked.entry(name).or_insert(0) += held;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        },
    );
    eprintln!("two: unacknowledged entries seen per consumer, summed over samples: {worked:?}");
    let pids: Vec<String> = rig
        .notify
        .iter()
        .map(|n| format!("-{}", n.child.id()))
        .collect();
    for pid in &pids {
        assert!(
            worked
                .iter()
                .any(|(name, held)| name.ends_with(pid.as_str()) && *held > 0),
            "the notify process {pid} never held work: {worked:?}"
        );
    }
}

#[test]
fn a_receiver_answering_400_fills_the_dead_letters_with_exactly_what_matched() {
    let rig = Rig::start(
        &[(SPRING_CLICKS, Mode::Always(400))],
        r#"["100ms", "200ms"]"#,
        1,
    );
    let answered = rig.send("dead-", 120);
    let events = rig.events_in_stream(&answered);
    let want = Rig::wanted(&events, SPRING_CLICKS);
    assert!(!want.is_empty());
    let dead_key = format!("{STREAM}:notify:{}:dead", SPRING_CLICKS.name);
    let dead_events = || -> Vec<String> {
        let entries: Vec<(String, BTreeMap<String, String>)> = rig
            .redis
            .query(redis::cmd("XRANGE").arg(&dead_key).arg("-").arg("+"));
        entries
            .iter()
            .flat_map(|(_, fields)| {
                let delivery: Value = serde_json::from_str(&fields["delivery"]).unwrap();
                let events = delivery["events"].as_array().unwrap().clone();
                events.into_iter().map(|text| {
                    let json: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
                    event_id(&json)
                })
            })
            .collect()
    };
    wait_until(
        "every matching event to be a dead letter",
        Duration::from_secs(30),
        || dead_events().len() >= want.len(),
    );
    let dead = dead_events();
    assert_eq!(
        dead.len(),
        want.len(),
        "dead letters hold each matching event once"
    );
    assert_eq!(dead.into_iter().collect::<BTreeSet<_>>(), want);
    let retry_key = format!("{STREAM}:notify:{}:retry", SPRING_CLICKS.name);
    let retrying: u64 = rig.redis.query(redis::cmd("ZCARD").arg(&retry_key));
    assert_eq!(retrying, 0, "nothing is left to retry");
    let group = format!("mailtrack-notify:{}", SPRING_CLICKS.name);
    assert_eq!(pending(&rig.redis, &group), 0, "every entry is settled");
    let hook = &rig.hooks[0];
    assert!(hook.delivered().is_empty());
    // Each delivery was tried three times: once, and after each of the two waits.
    eprintln!(
        "dead: {} matching events dead-lettered after {} requests",
        want.len(),
        hook.receiver.received().len()
    );
    verify_with_standardwebhooks(SECRET, &hook.receiver.received());
}

#[test]
fn a_receiver_answering_410_stops_its_endpoint_and_leaves_its_events_in_the_log() {
    let gone = Rule {
        name: "gone",
        ..EVERYTHING
    };
    let rig = Rig::start(
        &[(gone, Mode::Always(410)), (SPRING_CLICKS, Mode::Fine)],
        LONG_SCHEDULE,
        1,
    );
    let mut answered = rig.send("before-", 60);
    let notify = &rig.notify[0];
    wait_until(
        "notify to log the endpoint disabled",
        Duration::from_secs(20),
        || notify.logged("endpoint disabled") > 0,
    );
    let lines = notify.lines_with("endpoint disabled");
    assert!(
        lines.iter().all(|line| line.contains("\"gone\"")
            && line.contains("410")
            && line.contains("ERROR")),
        "{lines:?}"
    );
    answered.extend(rig.send("after-", 60));
    let events = rig.events_in_stream(&answered);
    // The other endpoint goes on: every spring click of both rounds arrives.
    let spring = &rig.hooks[1];
    let want = Rig::wanted(&events, SPRING_CLICKS);
    wait_until(
        "the other endpoint to get every spring click",
        DELIVERY_DEADLINE,
        || {
            spring
                .delivered_counts()
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>()
                == want
        },
    );
    // Nothing after the 410 went to the gone receiver.
    let sent_after: Vec<String> = rig.hooks[0]
        .receiver
        .received()
        .iter()
        .flat_map(event_ids_of)
        .filter(|id| {
            events[id]["mail"]["messageId"]
                .as_str()
                .unwrap()
                .starts_with("after-")
        })
        .collect();
    assert!(
        sent_after.is_empty(),
        "delivered after the 410: {sent_after:?}"
    );
    // Every event the gone endpoint wants is still in its group: read and unacknowledged,
    // or not read yet.
    let group = format!("mailtrack-notify:{}", gone.name);
    let held: Vec<(String, String, u64, u64)> = rig.redis.query(
        redis::cmd("XPENDING")
            .arg(STREAM)
            .arg(&group)
            .arg("-")
            .arg("+")
            .arg(100_000),
    );
    let held: HashSet<String> = held.into_iter().map(|(id, ..)| id).collect();
    let groups: Vec<BTreeMap<String, redis::Value>> = rig
        .redis
        .query(redis::cmd("XINFO").arg("GROUPS").arg(STREAM));
    let ours = groups
        .iter()
        .find(|g| redis::from_redis_value::<String>(g["name"].clone()).unwrap() == group)
        .expect("the gone endpoint's group");
    let last_read: String = redis::from_redis_value(ours["last-delivered-id"].clone()).unwrap();
    let entries: Vec<(String, BTreeMap<String, String>)> = rig
        .redis
        .query(redis::cmd("XRANGE").arg(STREAM).arg("-").arg("+"));
    let unread_or_held: BTreeSet<String> = entries
        .iter()
        .filter(|(id, _)| held.contains(id) || stream_id_after(id, &last_read))
        .map(|(_, fields)| event_id(&serde_json::from_str(&fields["event"]).unwrap()))
        .collect();
    let want_gone = Rig::wanted(&events, gone);
    let lost: Vec<&String> = want_gone.difference(&unread_or_held).collect();
    assert!(
        lost.is_empty(),
        "events of the gone endpoint no longer in its group: {lost:?}"
    );
    eprintln!(
        "gone: {} events kept for recovery ({} pending, the rest unread)",
        want_gone.len(),
        held.len()
    );
}

/// Whether stream id `id` comes after `other` (`ms-seq` each).
fn stream_id_after(id: &str, other: &str) -> bool {
    let parse = |id: &str| -> (u64, u64) {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (ms.parse().unwrap(), seq.parse().unwrap())
    };
    parse(id) > parse(other)
}
