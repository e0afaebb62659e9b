//! `mailtrack notify test --endpoint NAME`: one test event, sent now to that endpoint (not
//! through the log, so no Redis is needed for an HTTP endpoint), and what came of it printed:
//! the status, the latency and the start of the receiver's answer.
//!
//! The test event is a real event's shape (docs/events.md), of a type and with tags the
//! endpoint's rule wants, marked as a test twice over: `mailtrack.test: true` and a
//! `mail.messageId` starting `mailtrack-test-`. It is signed like every delivery and sent as
//! a batch of one, with the `webhook-id` a delivery of it would have. For a stream endpoint it
//! is added to the target stream, with the fields the delivery loop writes.

use std::process::ExitCode;

use serde::Serialize;

use mailtrack::config::notify::{EndpointConfig, ReceiverConfig, RuleConfig, StreamReceiver};
use mailtrack::events::event::{Click, Event, EventType, Extras, Mail, Open, Subscription};
use mailtrack::events::sample::{sample_click, sample_event, sample_subscription};
use mailtrack::notify::http::Verdict;
use mailtrack::notify::redis_log::{Delivery, EVENT_FIELD};
use mailtrack::notify::webhook_id;
use mailtrack::Config;

use super::deliver::Sender;
use super::{check_endpoint, find_endpoint, invalid};
use crate::cli::{Failure, EXIT_UNAVAILABLE};

/// What a test event's `mail.messageId` starts with.
pub(super) const TEST_MESSAGE_PREFIX: &str = "mailtrack-test-";

/// An [`Event`] with `mailtrack.test`, its fields in the order of a real event's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TestEvent {
    event_type: EventType,
    mail: Mail,
    #[serde(skip_serializing_if = "Option::is_none")]
    open: Option<Open>,
    #[serde(skip_serializing_if = "Option::is_none")]
    click: Option<Click>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<Subscription>,
    mailtrack: TestExtras,
}

#[derive(Serialize)]
struct TestExtras {
    #[serde(flatten)]
    extras: Extras,
    /// Always true: the marker a receiver filters test events on.
    test: bool,
}

/// Runs `notify test` for endpoint `name`.
pub(super) fn run(config: &Config, name: &str) -> Result<ExitCode, Failure> {
    let endpoint = find_endpoint(config, name)?;
    let (event_id, json) = test_event(&endpoint.rule);
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::Io)?;
    runtime.block_on(async {
        match &endpoint.receiver {
            ReceiverConfig::Http(http) => {
                check_endpoint(endpoint)
                    .await
                    .map_err(|message| invalid(config, "notify.endpoint.url", message))?;
                let delivery = Delivery {
                    id: webhook_id(&endpoint.name, [event_id.as_str()]),
                    attempts: 0,
                    events: vec![json],
                    logged_ms: Vec::new(),
                };
                let sender = Sender::new(config, &endpoint.name, http).map_err(Failure::Io)?;
                println!("endpoint {}: POST {}", endpoint.name, http.url);
                println!("webhook-id: {}", delivery.id);
                println!("eventId: {event_id}");
                let answer = sender.send(&delivery).await;
                match answer.status {
                    Some(status) => println!("status: {status}"),
                    None => println!("status: no answer"),
                }
                println!("latency: {:.1} ms", answer.latency.as_secs_f64() * 1000.0);
                println!("answer: {}", answer.detail);
                if answer.verdict == Verdict::Delivered {
                    println!("delivered: the receiver took the test event");
                    Ok(ExitCode::SUCCESS)
                } else {
                    println!("not delivered: the receiver did not take the test event");
                    Ok(ExitCode::from(EXIT_UNAVAILABLE))
                }
            }
            ReceiverConfig::Stream(target) => to_stream(config, endpoint, target, &json).await,
        }
    })
}

/// Adds the test event to a stream endpoint's target stream.
async fn to_stream(
    config: &Config,
    endpoint: &EndpointConfig,
    target: &StreamReceiver,
    json: &str,
) -> Result<ExitCode, Failure> {
    let Some(url) = target
        .redis_url
        .as_deref()
        .or(config.events.redis_url.as_deref())
    else {
        let message = "a stream endpoint's stream is on the events' Redis; set redis_url".into();
        return Err(invalid(config, "events.redis_url", message));
    };
    let kind = ["Open", "Subscription"]
        .into_iter()
        .find(|kind| json.contains(&format!("\"eventType\":\"{kind}\"")))
        .unwrap_or("Click");
    let added = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let message_id = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|event| event["mail"]["messageId"].as_str().map(str::to_owned))
            .unwrap_or_default();
        redis::cmd("XADD")
            .arg(&target.stream)
            .arg("*")
            .arg(EVENT_FIELD)
            .arg(json)
            .arg("type")
            .arg(kind)
            .arg("message_id")
            .arg(message_id)
            .query_async::<String>(&mut connection)
            .await
    };
    println!("endpoint {}: XADD {}", endpoint.name, target.stream);
    match added.await {
        Ok(id) => {
            println!("added: entry {id} of stream {}", target.stream);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("not added: {error}");
            Ok(ExitCode::from(EXIT_UNAVAILABLE))
        }
    }
}

/// A test event `rule` wants, and its `eventId`: a click carrying the first value of each tag
/// the rule names, when the rule wants clicks; else an open when it wants opens; else an
/// unsubscribe when it wants those; an open otherwise.
fn test_event(rule: &RuleConfig) -> (String, String) {
    let message_id = format!("{TEST_MESSAGE_PREFIX}{}", uuid::Uuid::now_v7());
    let mut event: Event = if rule.event_types.contains("Click") {
        let mut click = sample_click(&message_id);
        if let Some(click) = click.click.as_mut() {
            if !rule.tags.is_empty() {
                click.link_tags = rule
                    .tags
                    .iter()
                    .filter_map(|(tag, values)| Some((tag.clone(), vec![values.first()?.clone()])))
                    .collect();
            }
        }
        click
    } else if rule.event_types.contains("Subscription") && !rule.event_types.contains("Open") {
        sample_subscription(&message_id)
    } else {
        sample_event(&message_id)
    };
    event.mail.message_id = message_id;
    let event_id = event.mailtrack.event_id.clone();
    let test = TestEvent {
        event_type: event.event_type,
        mail: event.mail,
        open: event.open,
        click: event.click,
        subscription: event.subscription,
        mailtrack: TestExtras {
            extras: event.mailtrack,
            test: true,
        },
    };
    // An event of strings and maps always serialises.
    let json = serde_json::to_string(&test).expect("an event serialises");
    (event_id, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtrack::notify::{EventFacts, Rule};

    #[test]
    fn the_test_event_is_marked_and_matches_the_rule() {
        let mut rule = RuleConfig::default();
        rule.event_types.insert("Click".into());
        rule.tags.insert(
            "campaign".into(),
            ["spring".to_owned()].into_iter().collect(),
        );
        let (event_id, json) = test_event(&rule);
        let facts = EventFacts::parse(&json).unwrap();
        assert!(Rule::new(&rule).matches(&facts), "{json}");
        assert_eq!(facts.mailtrack.event_id, event_id);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["mailtrack"]["test"], true);
        assert!(value["mail"]["messageId"]
            .as_str()
            .unwrap()
            .starts_with(TEST_MESSAGE_PREFIX));
        assert!(
            json.starts_with("{\"eventType\":\"Click\",\"mail\":"),
            "{json}"
        );

        let mut opens = RuleConfig::default();
        opens.event_types.insert("Open".into());
        let (_, json) = test_event(&opens);
        assert!(Rule::new(&opens).matches(&EventFacts::parse(&json).unwrap()));

        let mut unsubscribes = RuleConfig::default();
        unsubscribes.event_types.insert("Subscription".into());
        let (_, json) = test_event(&unsubscribes);
        assert!(Rule::new(&unsubscribes).matches(&EventFacts::parse(&json).unwrap()));
        assert!(json.contains("\"subscription\":{"), "{json}");
    }
}
