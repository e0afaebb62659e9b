//! `format = "sns"`: every event in the envelope Amazon SNS wraps SES's events in, after a
//! `SubscriptionConfirmation` the receiver confirms, so that a receiver written for
//! SES → SNS → HTTPS works by changing one URL.
//!
//! - **The envelopes.** [`notification`] and [`subscription_confirmation`] make a POST's body
//!   and its `x-amz-sns-*` headers, as SNS sends them (docs/notify.md, "SNS envelopes", says
//!   what is not reproduced: AWS's certificate signature above all).
//! - **The subscription.** Its state is a Redis hash, `{stream}:notify:{endpoint}:sns`, so
//!   that every `notify` process sees it and it survives restarts: the subscription it is for
//!   (a digest of the topic ARN and the receiver's URL: change either and a new confirmation
//!   is needed), its `Token`, and when it was confirmed.
//! - **The gate.** [`SnsGate`] holds an endpoint's deliveries back until its subscription is
//!   confirmed, and re-sends the confirmation meanwhile; the events wait in the log.
//! - **The confirmation.** [`confirm`] answers a receiver's GET of its `SubscribeURL`: the
//!   unguessable `Token` is the credential, compared in constant time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::RedisError;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map, Value};
use url::Url;

use super::http::{Attempt, Verdict, WebhookClient};
use super::redis_log::{now_ms, Delivery};
use super::schedule::RetrySchedule;
use crate::config::notify::WebhookSecret;

/// The path of the confirmation route on notify's listener.
pub const CONFIRM_PATH: &str = "/sns/confirm";

/// The path `UnsubscribeURL`s name. Nothing answers it yet: unsubscribing is the config's job.
pub const UNSUBSCRIBE_PATH: &str = "/sns/unsubscribe";

/// The path `SigningCertURL` names. Nothing is served there: there is no AWS certificate.
pub const SIGNING_CERT_PATH: &str = "/sns/signing-cert.pem";

/// Random bytes in a `Token`: 32, so that guessing one is hopeless (written as 64 hex digits).
pub const TOKEN_BYTES: usize = 32;

/// The longest wait between two confirmations of an unconfirmed subscription: the endpoint's
/// retry schedule sets the waits (5 s, 5 min, 30 min, … by default), each at most an hour, and
/// the last one repeats, so a receiver that comes up a day later is asked again within the hour.
pub const CONFIRM_RESEND_MAX: Duration = Duration::from_secs(3600);

/// How often an unconfirmed endpoint looks in Redis for its confirmation: the GET may reach
/// any `notify` process, so each one looks.
pub const CONFIRM_POLL: Duration = Duration::from_millis(200);

/// What SNS says it is.
pub const USER_AGENT: &str = "Amazon Simple Notification Service Agent";

/// What SNS sends its bodies as (the JSON is in a `text/plain` body, as SNS does by default).
pub const CONTENT_TYPE: &str = "text/plain; charset=UTF-8";

/// SNS's `SignatureVersion` for SES topics; the `Signature` is not AWS's (see [`signature`]).
const SIGNATURE_VERSION: &str = "1";

/// Keeps the subscription state if it is for `ARGV[1]`, else starts it afresh with token
/// `ARGV[2]` at `ARGV[3]` (ms); answers the token and the confirmation time ('' if none).
const ENSURE: &str = r"
if redis.call('HGET', KEYS[1], 'subscription') ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'subscription', ARGV[1], 'token', ARGV[2], 'created_at', ARGV[3])
end
return {redis.call('HGET', KEYS[1], 'token'), redis.call('HGET', KEYS[1], 'confirmed_at') or ''}
";

/// Marks the subscription confirmed at `ARGV[3]` if it is still `ARGV[1]` with token `ARGV[2]`
/// (the token was already compared in constant time; this guards a change in between).
const CONFIRM: &str = r"
if redis.call('HGET', KEYS[1], 'subscription') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  redis.call('HSETNX', KEYS[1], 'confirmed_at', ARGV[3])
  return 1
end
return 0
";

/// One SNS endpoint's subscription: what its envelopes name, and where its state is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsTopic {
    /// The endpoint's name.
    pub endpoint: String,
    /// `TopicArn`.
    pub topic_arn: String,
    /// `{topic_arn}:{a UUID of the subscription}`, as SNS names subscriptions.
    pub subscription_arn: String,
    /// The base of `SubscribeURL`, `UnsubscribeURL` and `SigningCertURL`.
    pub public_url: Url,
    /// The Redis hash of its state.
    pub state_key: String,
    /// Which subscription the state is for: a digest of the topic ARN and the receiver's URL.
    subscription: String,
}

impl SnsTopic {
    /// The subscription of `endpoint`, delivering `topic_arn` to `receiver`, whose state is
    /// kept beside the events `stream`, confirmed through `public_url`.
    pub fn new(
        endpoint: &str,
        topic_arn: &str,
        receiver: &Url,
        public_url: Url,
        stream: &str,
    ) -> SnsTopic {
        let subscription =
            hex(digest(&SHA256, format!("{topic_arn}\n{receiver}").as_bytes()).as_ref());
        let subscription_arn = format!("{topic_arn}:{}", uuid_from(subscription.as_bytes()));
        SnsTopic {
            endpoint: endpoint.to_owned(),
            topic_arn: topic_arn.to_owned(),
            subscription_arn,
            public_url,
            state_key: format!("{stream}:notify:{endpoint}:sns"),
            subscription,
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = self.public_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url.query_pairs_mut().extend_pairs(query);
        url.into()
    }

    /// Where the receiver confirms: notify's own listener, with the endpoint and the token.
    pub fn subscribe_url(&self, token: &str) -> String {
        self.url(
            CONFIRM_PATH,
            &[
                ("Action", "ConfirmSubscription"),
                ("endpoint", &self.endpoint),
                ("TopicArn", &self.topic_arn),
                ("Token", token),
            ],
        )
    }

    fn unsubscribe_url(&self) -> String {
        self.url(
            UNSUBSCRIBE_PATH,
            &[
                ("Action", "Unsubscribe"),
                ("endpoint", &self.endpoint),
                ("SubscriptionArn", &self.subscription_arn),
            ],
        )
    }
}

/// A POST's body and the headers that go with it.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The body, sent exactly as signed (when secrets sign it).
    pub body: Bytes,
    /// `x-amz-sns-*`, `Content-Type` and `User-Agent`.
    pub headers: Vec<(&'static str, String)>,
}

/// A UUID-shaped id made from `seed`: the first 16 bytes of its SHA-256, marked version 4 as
/// SNS's own `MessageId`s are. The same seed gives the same id, so a retried delivery keeps
/// its `MessageId`, as SNS's do.
pub fn uuid_from(seed: &[u8]) -> String {
    let hash = digest(&SHA256, seed);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The `Notification` envelope of `delivery`'s one event (SNS endpoints have batches of one):
/// `Message` is the event's JSON exactly as in the log, as a string; `Timestamp` is when the
/// event happened; no `Subject`, as SES publishes none.
pub fn notification(topic: &SnsTopic, delivery: &Delivery) -> Envelope {
    let event = delivery.events.first().map_or("{}", String::as_str);
    let message_id = uuid_from(delivery.id.as_bytes());
    let timestamp = event_timestamp(event);
    let mut fields = BTreeMap::new();
    fields.insert("Type", "Notification".to_owned());
    fields.insert("MessageId", message_id.clone());
    fields.insert("TopicArn", topic.topic_arn.clone());
    fields.insert("Message", event.to_owned());
    fields.insert("Timestamp", timestamp);
    fields.insert("UnsubscribeURL", topic.unsubscribe_url());
    let mut headers = sns_headers("Notification", &message_id, topic);
    headers.push(("x-amz-sns-subscription-arn", topic.subscription_arn.clone()));
    Envelope {
        body: body(topic, fields),
        headers,
    }
}

/// The `SubscriptionConfirmation` envelope for `token`, sent at `now`. Its `MessageId` is new
/// for every sending: each is a message of its own.
pub fn subscription_confirmation(topic: &SnsTopic, token: &str, now: SystemTime) -> Envelope {
    let message_id = uuid_from(format!("{}\n{token}\n{}", topic.endpoint, now_ms()).as_bytes());
    let mut fields = BTreeMap::new();
    fields.insert("Type", "SubscriptionConfirmation".to_owned());
    fields.insert("MessageId", message_id.clone());
    fields.insert("Token", token.to_owned());
    fields.insert("TopicArn", topic.topic_arn.clone());
    fields.insert(
        "Message",
        format!(
            "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit \
             the SubscribeURL included in this message.",
            topic.topic_arn
        ),
    );
    fields.insert("SubscribeURL", topic.subscribe_url(token));
    fields.insert(
        "Timestamp",
        humantime::format_rfc3339_millis(now).to_string(),
    );
    Envelope {
        body: body(topic, fields),
        headers: sns_headers("SubscriptionConfirmation", &message_id, topic),
    }
}

fn sns_headers(kind: &str, message_id: &str, topic: &SnsTopic) -> Vec<(&'static str, String)> {
    vec![
        ("x-amz-sns-message-type", kind.to_owned()),
        ("x-amz-sns-message-id", message_id.to_owned()),
        ("x-amz-sns-topic-arn", topic.topic_arn.clone()),
        ("content-type", CONTENT_TYPE.to_owned()),
        ("user-agent", USER_AGENT.to_owned()),
    ]
}

/// The JSON body: the fields, then `SignatureVersion`, `Signature` and `SigningCertURL`.
fn body(topic: &SnsTopic, fields: BTreeMap<&'static str, String>) -> Bytes {
    let mut object = Map::new();
    object.insert("Signature".into(), Value::String(signature(&fields)));
    object.insert("SignatureVersion".into(), json!(SIGNATURE_VERSION));
    object.insert(
        "SigningCertURL".into(),
        Value::String(topic.url(SIGNING_CERT_PATH, &[])),
    );
    for (name, value) in fields {
        object.insert(name.into(), Value::String(value));
    }
    // A map of strings always serialises.
    serde_json::to_vec(&Value::Object(object))
        .expect("an envelope serialises")
        .into()
}

/// Not an AWS signature, which needs AWS's private key: the base64 SHA-256 of SNS's
/// string-to-sign (each signed field's name and value on lines of their own, in name order),
/// there so that parsers that expect the field find it. Authenticity comes from the Standard
/// Webhooks headers, when the endpoint has secrets.
fn signature(fields: &BTreeMap<&'static str, String>) -> String {
    let mut text = String::new();
    for name in [
        "Message",
        "MessageId",
        "SubscribeURL",
        "Subject",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ] {
        if let Some(value) = fields.get(name) {
            text.push_str(name);
            text.push('\n');
            text.push_str(value);
            text.push('\n');
        }
    }
    STANDARD.encode(digest(&SHA256, text.as_bytes()))
}

/// When the event happened (`open.timestamp`, `click.timestamp` or
/// `subscription.timestamp`, as recorded), or now.
fn event_timestamp(event: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(event).ok();
    let recorded = parsed.as_ref().and_then(|event| {
        ["click", "open", "subscription"]
            .iter()
            .find_map(|kind| event.get(kind)?.get("timestamp")?.as_str())
            .map(str::to_owned)
    });
    recorded.unwrap_or_else(|| humantime::format_rfc3339_millis(SystemTime::now()).to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh `Token`: [`TOKEN_BYTES`] from the system's random source, in hex.
fn new_token(random: &SystemRandom) -> Result<String, RedisError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    random.fill(&mut bytes).map_err(|_| {
        RedisError::from(std::io::Error::other(
            "the system's random source failed; no SNS token was made",
        ))
    })?;
    Ok(hex(&bytes))
}

/// Where a subscription stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Its `Token`.
    pub token: String,
    /// Whether the receiver has confirmed it.
    pub confirmed: bool,
}

/// The subscription's state, made afresh (a new token, unconfirmed) when there is none or it
/// is for another topic ARN or receiver URL.
pub async fn ensure_subscription(
    redis: &mut ConnectionManager,
    topic: &SnsTopic,
) -> Result<Subscription, RedisError> {
    let token = new_token(&SystemRandom::new())?;
    let (token, confirmed_at): (String, String) = redis::cmd("EVAL")
        .arg(ENSURE)
        .arg(1)
        .arg(&topic.state_key)
        .arg(&topic.subscription)
        .arg(token)
        .arg(now_ms())
        .query_async(redis)
        .await?;
    Ok(Subscription {
        token,
        confirmed: !confirmed_at.is_empty(),
    })
}

/// An endpoint's deliveries held back until its subscription is confirmed.
#[derive(Debug)]
pub struct SnsGate {
    topic: Arc<SnsTopic>,
    redis: ConnectionManager,
    schedule: RetrySchedule,
    confirmed: bool,
    sent: u32,
    next_send: Option<Instant>,
}

impl SnsGate {
    /// The gate of `topic`, re-sending its confirmation after the waits of `schedule`.
    pub fn new(topic: SnsTopic, redis: ConnectionManager, schedule: RetrySchedule) -> SnsGate {
        SnsGate {
            topic: Arc::new(topic),
            redis,
            schedule,
            confirmed: false,
            sent: 0,
            next_send: None,
        }
    }

    /// The subscription its envelopes are for.
    pub fn topic(&self) -> &Arc<SnsTopic> {
        &self.topic
    }

    /// Whether deliveries may go: true once the subscription is confirmed (and from then on).
    /// Until then, sends the confirmation when it is due, and rests [`CONFIRM_POLL`].
    pub async fn open(
        &mut self,
        client: &WebhookClient,
        url: &Url,
        secrets: &[WebhookSecret],
    ) -> bool {
        if self.confirmed {
            return true;
        }
        match self.check_or_send(client, url, secrets).await {
            Ok(true) => {
                tracing::info!(endpoint = %self.topic.endpoint, topic_arn = %self.topic.topic_arn, "SNS subscription confirmed; delivering");
                self.confirmed = true;
                return true;
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(endpoint = %self.topic.endpoint, %error, "SNS subscription state not read; trying again");
            }
        }
        tokio::time::sleep(CONFIRM_POLL).await;
        false
    }

    async fn check_or_send(
        &mut self,
        client: &WebhookClient,
        url: &Url,
        secrets: &[WebhookSecret],
    ) -> Result<bool, RedisError> {
        let subscription = ensure_subscription(&mut self.redis, &self.topic).await?;
        if subscription.confirmed {
            return Ok(true);
        }
        if self.next_send.is_some_and(|at| Instant::now() < at) {
            return Ok(false);
        }
        let envelope =
            subscription_confirmation(&self.topic, &subscription.token, SystemTime::now());
        let id = envelope
            .headers
            .iter()
            .find(|(name, _)| *name == "x-amz-sns-message-id")
            .map_or_else(String::new, |(_, id)| format!("msg_{id}"));
        let answer = client
            .send(Attempt {
                url,
                id: &id,
                body: envelope.body,
                secrets,
                headers: &envelope.headers,
            })
            .await;
        self.sent += 1;
        let wait = self
            .schedule
            .wait_after_random(self.sent as usize)
            .or_else(|| {
                self.schedule
                    .wait_after_random(self.schedule.attempts() - 1)
            })
            .unwrap_or(CONFIRM_RESEND_MAX)
            .min(CONFIRM_RESEND_MAX);
        self.next_send = Some(Instant::now() + wait);
        let taken = matches!(answer.verdict, Verdict::Delivered);
        tracing::info!(endpoint = %self.topic.endpoint, status = ?answer.status, taken, next_in = ?wait, "SNS SubscriptionConfirmation sent; deliveries wait for the receiver to GET its SubscribeURL");
        // The receiver may have confirmed while it answered.
        let subscription = ensure_subscription(&mut self.redis, &self.topic).await?;
        Ok(subscription.confirmed)
    }
}

/// What the confirmation route answers: a status, a content type and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmAnswer {
    /// 200 confirmed; 400 a query that is not a confirmation; 403 a wrong token; 404 no such
    /// SNS endpoint; 503 Redis could not be asked.
    pub status: u16,
    /// `text/xml` for the confirmation, `application/json` for an error.
    pub content_type: &'static str,
    /// `ConfirmSubscriptionResponse` XML, or `{"error": "..."}`.
    pub body: String,
}

impl ConfirmAnswer {
    fn error(status: u16, message: &str) -> ConfirmAnswer {
        ConfirmAnswer {
            status,
            content_type: "application/json",
            body: json!({ "error": message }).to_string(),
        }
    }
}

/// Answers a GET of `SubscribeURL` (its `query`) against the SNS endpoints `topics`: marks
/// the subscription confirmed when `Token` is the endpoint's, compared in constant time, and
/// answers SNS's `ConfirmSubscriptionResponse`. Needs no bearer token: the `Token` is the
/// credential. Confirming twice answers the same.
pub async fn confirm(
    redis: &mut ConnectionManager,
    topics: &[SnsTopic],
    query: Option<&str>,
) -> ConfirmAnswer {
    let pairs: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let (Some(endpoint), Some(token)) = (pairs.get("endpoint"), pairs.get("Token")) else {
        return ConfirmAnswer::error(
            400,
            "a confirmation needs the endpoint and Token parameters of its SubscribeURL",
        );
    };
    let Some(topic) = topics.iter().find(|topic| &topic.endpoint == endpoint) else {
        return ConfirmAnswer::error(404, &format!("no SNS endpoint {endpoint:?}"));
    };
    let stored: Result<Option<String>, RedisError> = redis::cmd("HGET")
        .arg(&topic.state_key)
        .arg("token")
        .query_async(redis)
        .await;
    let stored = match stored {
        Ok(stored) => stored.unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%endpoint, %error, "SNS confirmation not checked: Redis failed");
            return ConfirmAnswer::error(
                503,
                "the subscription state could not be read; try again",
            );
        }
    };
    if stored.is_empty() || !same_secret(stored.as_bytes(), token.as_bytes()) {
        tracing::warn!(%endpoint, "SNS confirmation refused: not the subscription's Token");
        return ConfirmAnswer::error(403, "the Token is not this subscription's (it may be from an older subscription: use the latest SubscriptionConfirmation)");
    }
    let marked: Result<i64, RedisError> = redis::cmd("EVAL")
        .arg(CONFIRM)
        .arg(1)
        .arg(&topic.state_key)
        .arg(&topic.subscription)
        .arg(&stored)
        .arg(now_ms())
        .query_async(redis)
        .await;
    match marked {
        Ok(1) => ConfirmAnswer {
            status: 200,
            content_type: "text/xml",
            body: confirm_response(topic),
        },
        Ok(_) => ConfirmAnswer::error(
            403,
            "the subscription changed meanwhile; use the latest SubscriptionConfirmation",
        ),
        Err(error) => {
            tracing::warn!(%endpoint, %error, "SNS confirmation not recorded: Redis failed");
            ConfirmAnswer::error(503, "the confirmation could not be recorded; try again")
        }
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ: their
/// SHA-256 digests (of equal length whatever the inputs) are compared whole.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (digest(&SHA256, a), digest(&SHA256, b));
    let differ = a
        .as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |differ, (x, y)| differ | (x ^ y));
    std::hint::black_box(differ) == 0
}

/// SNS's answer to `ConfirmSubscription`.
fn confirm_response(topic: &SnsTopic) -> String {
    let request_id = uuid::Uuid::now_v7();
    format!(
        "<ConfirmSubscriptionResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\n  \
         <ConfirmSubscriptionResult>\n    <SubscriptionArn>{}</SubscriptionArn>\n  \
         </ConfirmSubscriptionResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  \
         </ResponseMetadata>\n</ConfirmSubscriptionResponse>\n",
        topic.subscription_arn
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> SnsTopic {
        SnsTopic::new(
            "ses",
            "arn:aws:sns:mailtrack:000000000000:ses",
            &Url::parse("https://receiver.example/sns").unwrap(),
            Url::parse("http://notify.example:9091/").unwrap(),
            "mailtrack:events",
        )
    }

    #[test]
    fn a_notification_is_the_event_in_snss_envelope() {
        let event = r#"{"eventType":"Click","mail":{"messageId":"m"},"click":{"timestamp":"2026-11-23T04:19:05.123Z"}}"#;
        let delivery = Delivery {
            id: "msg_abc".into(),
            attempts: 3,
            logged_ms: Vec::new(),
            events: vec![event.into()],
        };
        let envelope = notification(&topic(), &delivery);
        let body: Value = serde_json::from_slice(&envelope.body).unwrap();
        assert_eq!(body["Type"], "Notification");
        assert_eq!(body["Message"], event, "the event's own bytes, as a string");
        assert_eq!(body["Timestamp"], "2026-11-23T04:19:05.123Z");
        assert!(body.get("Subject").is_none());
        let id = body["MessageId"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(
            notification(
                &topic(),
                &Delivery {
                    attempts: 4,
                    ..delivery
                }
            )
            .body,
            envelope.body,
            "a retry is the same message"
        );
        let headers: BTreeMap<_, _> = envelope.headers.iter().cloned().collect();
        assert_eq!(headers["x-amz-sns-message-id"], id);
        assert_eq!(
            headers["x-amz-sns-subscription-arn"],
            topic().subscription_arn
        );
        assert!(topic()
            .subscription_arn
            .starts_with("arn:aws:sns:mailtrack:000000000000:ses:"));
    }

    #[test]
    fn a_confirmation_names_the_token_in_its_subscribe_url() {
        let envelope = subscription_confirmation(&topic(), "ab12", SystemTime::UNIX_EPOCH);
        let body: Value = serde_json::from_slice(&envelope.body).unwrap();
        assert_eq!(body["Type"], "SubscriptionConfirmation");
        assert_eq!(body["Token"], "ab12");
        assert_eq!(body["Timestamp"], "1970-01-01T00:00:00.000Z");
        let url = Url::parse(body["SubscribeURL"].as_str().unwrap()).unwrap();
        assert_eq!(url.path(), CONFIRM_PATH);
        let query: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["endpoint"], "ses");
        assert_eq!(query["Token"], "ab12");
    }

    #[test]
    fn only_the_same_secret_matches() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
