//! `mailtrack notify recover --endpoint NAME --since T [--until T]`: Aliyun's make-up query.
//! Everything of one endpoint in a window of time is delivered again, from the events log and
//! from the endpoint's dead letters, by this command itself, to the endpoint's configured
//! receiver (so an operator can point an endpoint that a 410 disabled at a fixed receiver and
//! recover its events).
//!
//! - **The log**: the entries written in the window (entry ids are milliseconds), those the
//!   endpoint's rule wants.
//! - **The dead letters**: each event of a dead letter whose time is in the window. An event's
//!   time is its log entry's, when the dead letter recorded it (`logged_ms`, kept since
//!   deliveries carry it), else the dead letter's own (when it died): the time it was in the
//!   log is what the window means, and the death is the nearest later time known. A dead
//!   letter is removed (`XDEL`) once every event it holds was delivered, only after their
//!   2xx; one with events outside the window stays, for a wider window.
//!
//! An event found in both is delivered once. Batches are of the endpoint's `batch_size`,
//! signed, with the `webhook-id` of their events ([`webhook_id`]), each tried a few times at
//! once ([`RETRY_WAITS`]). It may run while `notify` runs: a receiver may then get an event
//! twice, from both, which at-least-once delivery allows and `webhook-id`/`eventId` dedupe.
//!
//! With the file sink the log is the JSONL events file and its rotated files (an event's time
//! is its own timestamp), and the dead letters are the endpoint's `dead.jsonl` in the state
//! folder. Delivered dead letters are removed from it only when no `notify` holds the state
//! folder (it may be appending); otherwise they stay, and the summary says so.
//!
//! [`RETRY_WAITS`]: super::deliver::RETRY_WAITS

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use mailtrack::config::notify::{EndpointConfig, ReceiverConfig};
use mailtrack::config::SinkKind;
use mailtrack::notify::file_log::{self, LockError, StateLock};
use mailtrack::notify::http::Verdict;
use mailtrack::notify::redis_log::{entry_ms, now_ms, DeadLetter, Delivery, EndpointStore};
use mailtrack::notify::{webhook_id, EventFacts, Rule};
use mailtrack::Config;

use super::deliver::Sender;
use super::{check_endpoint, find_endpoint, invalid};
use crate::cli::{Failure, EXIT_UNAVAILABLE};

/// This command's name in the endpoint's consumer group; it never reads as a consumer, but
/// opening the endpoint's store names one.
const CONSUMER: &str = "notify-recover";

/// An event to deliver again.
#[derive(Debug, Clone)]
struct Found {
    /// Its JSON, exactly as logged.
    json: String,
    /// When it was written to the log (ms), or the best time known.
    logged_ms: u64,
}

/// Where a window's events come from: the one place another events log (the JSONL file's
/// follower) slots in, as an arm of its own.
enum EventSource {
    /// The Redis events stream and the endpoint's dead letters beside it.
    Redis(EndpointStore),
    /// The JSONL events file (`live`, and its rotated files) and the endpoint's `dead.jsonl`
    /// in `state_dir`; `lock` when no `notify` held the folder, so dead letters may be
    /// removed.
    File {
        live: PathBuf,
        state_dir: PathBuf,
        endpoint: String,
        lock: Option<StateLock>,
    },
}

impl EventSource {
    /// The log's entries in the window that `rule` wants, by `eventId`.
    async fn window(
        &mut self,
        rule: &Rule,
        since_ms: u64,
        until_ms: u64,
    ) -> Result<BTreeMap<String, Found>, String> {
        let entries = match self {
            EventSource::Redis(store) => store
                .log_window(since_ms, until_ms)
                .await
                .map_err(|e| format!("reading the events stream: {e}"))?,
            EventSource::File { live, .. } => {
                let mut found = BTreeMap::new();
                let since = UNIX_EPOCH + Duration::from_millis(since_ms);
                let until = UNIX_EPOCH + Duration::from_millis(until_ms);
                file_log::events_between(live, since, Some(until), |json| {
                    let Ok(facts) = EventFacts::parse(&json) else {
                        return;
                    };
                    if rule.matches(&facts) {
                        let logged_ms =
                            file_log::event_time(&json).map_or(since_ms, file_log::millis);
                        found.insert(facts.mailtrack.event_id, Found { json, logged_ms });
                    }
                })
                .map_err(|e| format!("reading the events file: {e}"))?;
                return Ok(found);
            }
        };
        let mut found = BTreeMap::new();
        for entry in entries {
            let Some(json) = entry.event else { continue };
            let Ok(facts) = EventFacts::parse(&json) else {
                continue;
            };
            if rule.matches(&facts) {
                let logged_ms = entry_ms(&entry.id).unwrap_or(since_ms);
                found.insert(facts.mailtrack.event_id, Found { json, logged_ms });
            }
        }
        Ok(found)
    }

    /// Every dead letter of the endpoint.
    async fn dead_letters(&mut self) -> Result<Vec<DeadLetter>, String> {
        match self {
            EventSource::Redis(store) => store
                .dead_letter_list()
                .await
                .map_err(|e| format!("reading the dead letters: {e}")),
            EventSource::File {
                state_dir,
                endpoint,
                ..
            } => {
                let letters = file_log::dead_letters(state_dir, endpoint)
                    .map_err(|e| format!("reading the dead letters: {e}"))?;
                // The id is "{when it died}-{line}": its milliseconds are the death's, as a
                // dead letters stream entry's are, and the line names it for removal.
                Ok(letters
                    .into_iter()
                    .map(|(line, letter)| DeadLetter {
                        id: format!("{}-{line}", letter.at),
                        delivery: letter.delivery,
                        answer: letter.answer,
                    })
                    .collect())
            }
        }
    }

    /// Removes delivered dead letters, and says how many it removed.
    async fn remove_dead_letters(&mut self, ids: &[String]) -> Result<usize, String> {
        match self {
            EventSource::Redis(store) => store
                .remove_dead_letters(ids)
                .await
                .map(|()| ids.len())
                .map_err(|e| format!("removing delivered dead letters: {e}")),
            EventSource::File {
                state_dir,
                endpoint,
                lock,
                ..
            } => {
                if ids.is_empty() {
                    return Ok(0);
                }
                if lock.is_none() {
                    eprintln!(
                        "mailtrack: {}",
                        format_args!(
                            "{} delivered dead letters stay in dead.jsonl: a running notify holds \
                         the state folder {}; run recover again with notify stopped to remove them",
                            ids.len(),
                            state_dir.display()
                        )
                    );
                    return Ok(0);
                }
                let lines: BTreeSet<usize> = ids
                    .iter()
                    .filter_map(|id| id.split_once('-')?.1.parse().ok())
                    .collect();
                file_log::remove_dead_letters(state_dir, endpoint, &lines)
                    .map(|()| lines.len())
                    .map_err(|e| format!("removing delivered dead letters: {e}"))
            }
        }
    }
}

/// What a run came to, as it prints it.
#[derive(Debug, Default)]
struct Counts {
    in_log: usize,
    in_dead_letters: usize,
    in_both: usize,
    delivered: usize,
    failed: usize,
    dead_letters_removed: usize,
}

/// Runs `notify recover` for endpoint `name`, from `since` to `until` (now by default).
pub(super) fn run(
    config: &Config,
    name: &str,
    since: &str,
    until: Option<&str>,
) -> Result<ExitCode, Failure> {
    let endpoint = find_endpoint(config, name)?;
    let since_ms =
        parse_time(since).map_err(|m| invalid(config, "--since", format!("{since:?}: {m}")))?;
    let until_ms = match until {
        None => now_ms(),
        Some(text) => {
            parse_time(text).map_err(|m| invalid(config, "--until", format!("{text:?}: {m}")))?
        }
    };
    if until_ms < since_ms {
        let message = "is before --since: the window would be empty".to_owned();
        return Err(invalid(config, "--until", message));
    }
    let ReceiverConfig::Http(http) = &endpoint.receiver else {
        let message = format!(
            "endpoint {name:?} is a stream; its subscriber reads the events stream's window \
             itself (XRANGE {} {since_ms} {until_ms})",
            config.events.stream
        );
        return Err(invalid(config, "--endpoint", message));
    };
    let redis_url = match config.events.sink {
        SinkKind::Redis => match config.events.redis_url.clone() {
            Some(url) => Some(url),
            None => {
                let message = "notify recover reads the Redis events stream; set redis_url";
                return Err(invalid(config, "events.redis_url", message.to_owned()));
            }
        },
        SinkKind::File => None,
        SinkKind::Stdout => {
            let message = "notify recover reads the Redis stream or the JSONL file; standard \
                           output cannot be read back";
            return Err(invalid(config, "events.sink", message.to_owned()));
        }
    };
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::Io)?;
    runtime.block_on(async {
        check_endpoint(endpoint)
            .await
            .map_err(|message| invalid(config, "notify.endpoint.url", message))?;
        let io = |message: String| Failure::Io(std::io::Error::other(message));
        let mut source = match &redis_url {
            Some(redis_url) => {
                let store = EndpointStore::open(
                    redis_url,
                    &config.events.stream,
                    name,
                    CONSUMER,
                    Duration::ZERO,
                    config.notify.claim_idle,
                )
                .await
                .map_err(|e| io(format!("connecting to Redis: {e}")))?;
                EventSource::Redis(store)
            }
            None => {
                let state_dir = config.notify.state_dir_for(&config.events.file);
                let lock = match StateLock::acquire(&state_dir) {
                    Ok(lock) => Some(lock),
                    Err(LockError::Held(_)) => None,
                    Err(e) => return Err(io(e.to_string())),
                };
                EventSource::File {
                    live: config.events.file.clone(),
                    state_dir,
                    endpoint: name.to_owned(),
                    lock,
                }
            }
        };
        let sender = Sender::new(config, name, http).map_err(Failure::Io)?;
        let counts = recover(
            endpoint,
            &mut source,
            &sender,
            http.batch_size,
            since_ms,
            until_ms,
        )
        .await
        .map_err(io)?;
        println!(
            "endpoint {name}: window {} to {}",
            format_ms(since_ms),
            format_ms(until_ms)
        );
        println!("found in log: {}", counts.in_log);
        println!(
            "found in dead letters: {} ({} also in the log, delivered once)",
            counts.in_dead_letters, counts.in_both
        );
        println!("delivered: {}", counts.delivered);
        println!("failed: {}", counts.failed);
        println!("dead letters removed: {}", counts.dead_letters_removed);
        Ok(match counts.failed {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::from(EXIT_UNAVAILABLE),
        })
    })
}

/// Finds the window's events, delivers them in batches, and removes the dead letters that
/// were delivered whole.
async fn recover(
    endpoint: &EndpointConfig,
    source: &mut EventSource,
    sender: &Sender,
    batch_size: usize,
    since_ms: u64,
    until_ms: u64,
) -> Result<Counts, String> {
    let rule = Rule::new(&endpoint.rule);
    let mut counts = Counts::default();
    let mut events = source.window(&rule, since_ms, until_ms).await?;
    counts.in_log = events.len();
    // Each dead letter's events (by eventId), and whether all of them are in the window.
    let mut letters: Vec<(String, Vec<String>, bool)> = Vec::new();
    for letter in source.dead_letters().await? {
        let died_ms = entry_ms(&letter.id).unwrap_or_else(now_ms);
        let mut ids = Vec::new();
        let mut whole = true;
        for (n, json) in letter.delivery.events.iter().enumerate() {
            let logged_ms = letter.delivery.logged_ms.get(n).copied().unwrap_or(died_ms);
            if !(since_ms..=until_ms).contains(&logged_ms) {
                whole = false;
                continue;
            }
            let Ok(facts) = EventFacts::parse(json) else {
                whole = false;
                continue;
            };
            let id = facts.mailtrack.event_id;
            counts.in_dead_letters += 1;
            if events.contains_key(&id) {
                counts.in_both += 1;
            } else {
                let found = Found {
                    json: json.clone(),
                    logged_ms,
                };
                events.insert(id.clone(), found);
            }
            ids.push(id);
        }
        if !ids.is_empty() {
            letters.push((letter.id, ids, whole));
        }
    }
    // In the order they were logged, so a receiver sees them roughly as they happened.
    let mut ordered: Vec<(String, Found)> = events.into_iter().collect();
    ordered.sort_by_key(|(id, found)| (found.logged_ms, id.clone()));
    let mut delivered = BTreeSet::new();
    for batch in ordered.chunks(batch_size.max(1)) {
        let ids = batch.iter().map(|(id, _)| id.as_str());
        let delivery = Delivery {
            id: webhook_id(&endpoint.name, ids),
            attempts: 0,
            events: batch.iter().map(|(_, found)| found.json.clone()).collect(),
            logged_ms: batch.iter().map(|(_, found)| found.logged_ms).collect(),
        };
        let answer = sender.send_with_retries(&delivery).await;
        if answer.verdict == Verdict::Delivered {
            counts.delivered += batch.len();
            delivered.extend(batch.iter().map(|(id, _)| id.clone()));
        } else {
            counts.failed += batch.len();
            let status = answer
                .status
                .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
            eprintln!(
                "mailtrack: batch {} ({} events) not delivered: {status}: {}",
                delivery.id,
                batch.len(),
                answer.detail
            );
        }
    }
    let done: Vec<String> = letters
        .into_iter()
        .filter(|(_, ids, whole)| *whole && ids.iter().all(|id| delivered.contains(id)))
        .map(|(letter, _, _)| letter)
        .collect();
    counts.dead_letters_removed = source.remove_dead_letters(&done).await?;
    Ok(counts)
}

/// `T`: Unix milliseconds (all digits), or an RFC 3339 time in UTC
/// (`2026-12-02T10:00:00Z`, fractions of a second allowed).
fn parse_time(text: &str) -> Result<u64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| "is too large for Unix milliseconds".to_owned());
    }
    let time = humantime::parse_rfc3339(text).map_err(|e| {
        format!("{e}; expected RFC 3339 in UTC (2026-12-02T10:00:00Z) or Unix milliseconds")
    })?;
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "is before 1970".to_owned())?;
    u64::try_from(since_epoch.as_millis()).map_err(|_| "is too far ahead".to_owned())
}

/// Milliseconds as RFC 3339, for the summary.
fn format_ms(ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_unix_milliseconds() {
        assert_eq!(parse_time("2026-12-02T10:00:00Z"), Ok(1_796_205_600_000));
        assert_eq!(
            parse_time("2026-12-02T10:00:00.250Z"),
            Ok(1_796_205_600_250)
        );
        assert_eq!(parse_time("1796205600000"), Ok(1_796_205_600_000));
        for bad in ["", "yesterday", "2026-12-02", "99999999999999999999999"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
