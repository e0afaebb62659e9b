//! `[notify]` and its `[[notify.endpoint]]`s: who `mailtrack notify` delivers events to, which
//! events each one wants, and how hard it tries.
//!
//! ```toml
//! [[notify.endpoint]]
//! name = "billing"
//! events = ["Click"]
//! tags = { campaign = ["spring", "summer"] }
//! url = "https://billing.example.com/hooks/mailtrack"
//! secrets_file = "billing.secrets"      # whsec_… lines: each signs every delivery
//!
//! [[notify.endpoint]]
//! name = "crm"
//! events = ["Click", "Open"]
//! stream = "crm:events"                 # a Redis stream the receiver pulls from
//! ```
//!
//! Every default is named below with its reason. An endpoint's refusals name the key and the
//! endpoint: `notify.endpoint.url: endpoint "billing": …`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use url::Url;

use super::server::{check_name, Refusal};

/// The event types a rule may name: those the proxy records.
pub const EVENT_TYPES: [&str; 3] = ["Open", "Click", "Subscription"];

/// How long a receiver has to answer a delivery, when not configured: 5 s. Long enough for a
/// receiver that writes to its database before it answers; short enough that a hung receiver
/// holds only a few deliveries at a time. Aliyun's receivers must answer in 700 ms; set
/// `timeout_ms` to hold yours to that.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most events in one POST, when not configured: 100, as SendGrid batches. One request
/// then carries a busy minute's clicks of a campaign, and its body stays near 100 KiB.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// How long a batch waits to fill once it has its first event, when not configured: 500 ms.
/// A person never notices it; at any real rate a batch fills before.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(500);

/// Deliveries to one endpoint in flight at once, when not configured: 4. Enough to hide a
/// receiver's round trip; few enough that a slow receiver is not flooded.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The retry schedule, when not configured: Svix's, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h,
/// each with ±20% jitter. It spans a day and a half, so a receiver down over a weekend
/// night loses nothing; Postal's 36 minutes and Postmark's 70 are what its users complain of.
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Where `mailtrack notify`'s own admin listener (`/metrics`, `/healthz`) binds, when
/// `[notify] admin_listen` is not set: loopback, so that only this machine reaches it and no
/// token is needed, as serve's admin listener. Port 9091, not serve's 9090: serve and notify
/// often run on one machine from one config file, and each needs an address of its own.
pub const DEFAULT_NOTIFY_ADMIN_LISTEN: &str = "127.0.0.1:9091";

/// The most endpoints one config may name: each is a consumer group and a task of its own.
pub const MAX_ENDPOINTS: usize = 256;

/// How long an entry another `notify` process read must stay unacknowledged before this one
/// takes it over, when not configured: 60 s. Far longer than a delivery's timeout and a
/// batch's linger together, so that a live process's entries are never taken from it; short
/// enough that a crashed process's batch goes out again within a minute or so.
pub const DEFAULT_CLAIM_IDLE: Duration = Duration::from_secs(60);

/// What `claim_idle_ms` must leave beyond every HTTP endpoint's timeout and linger: 1 s, for
/// the Redis round trips of recording an attempt's outcome. Below it, a live process's
/// batch could be claimed while its attempt is still being recorded, and sent twice.
pub const CLAIM_IDLE_MARGIN: Duration = Duration::from_secs(1);

/// `[notify]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The endpoints, in the order given; names are unique.
    pub endpoints: Vec<EndpointConfig>,
    /// Where notify's admin listener binds; `[admin] token_file`'s token guards it, and is
    /// required when this is not a loopback address. SNS receivers confirm on it.
    pub admin_listen: SocketAddr,
    /// The base of every SNS `SubscribeURL` and `UnsubscribeURL`, as receivers reach notify's
    /// admin listener; `None` for `http://{admin_listen}` (as bound).
    pub public_url: Option<Url>,
    /// `state_dir`: where notify keeps each endpoint's checkpoint, retries and dead letters
    /// when it follows the events file, resolved against the config folder. `None` for the
    /// default, `{events file}.notify` beside the events file ([`NotifyConfig::state_dir_for`]).
    pub state_dir: Option<PathBuf>,
    /// How long an entry read by another consumer stays pending before it is claimed
    /// (`claim_idle_ms`).
    pub claim_idle: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            endpoints: Vec::new(),
            // The constant is a valid address; the test below checks it.
            admin_listen: DEFAULT_NOTIFY_ADMIN_LISTEN
                .parse()
                .expect("DEFAULT_NOTIFY_ADMIN_LISTEN is an address"),
            public_url: None,
            state_dir: None,
            claim_idle: DEFAULT_CLAIM_IDLE,
        }
    }
}

impl NotifyConfig {
    /// The state folder for the events file `events_file`: `state_dir` when set, else
    /// `{events file}.notify` beside it, so that the events and what has been delivered of them
    /// live on one volume and move together.
    pub fn state_dir_for(&self, events_file: &Path) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let mut name = events_file
            .file_name()
            .map_or_else(|| "events".into(), |n| n.to_os_string());
        name.push(".notify");
        events_file.with_file_name(name)
    }
}

/// One `[[notify.endpoint]]`: a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Unique; names its consumer group, checkpoint, metrics and dead letters.
    pub name: String,
    /// Which events it wants.
    pub rule: RuleConfig,
    /// Where they go.
    pub receiver: ReceiverConfig,
}

/// The conditions an event must meet, all of them, to be delivered to an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleConfig {
    /// `eventType`s wanted, from [`EVENT_TYPES`]; never empty.
    pub event_types: BTreeSet<String>,
    /// For each tag named, the values wanted: the event must carry the tag with one of them.
    pub tags: BTreeMap<String, BTreeSet<String>>,
    /// What to do with events the classifier judged a machine's (`machines`).
    pub machines: MachineFilter,
}

/// An endpoint's `machines`: whether events the classifier judged a machine's
/// (`mailtrack.verdict.class` `machine_open` or `machine_click`) are delivered. Proxy opens
/// are people's and count as such; an event with no verdict counts as a person's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MachineFilter {
    /// Every event, machine or not: the default, so that no endpoint loses events it had.
    #[default]
    Include,
    /// Only events not judged a machine's.
    Exclude,
    /// Only events judged a machine's (to study them, or to bill scanners apart).
    Only,
}

/// Where an endpoint's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverConfig {
    /// POSTed to a URL.
    Http(HttpReceiver),
    /// Added to a Redis stream, which the receiver reads.
    Stream(StreamReceiver),
}

/// An HTTP(S) receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReceiver {
    /// http or https, with a host.
    pub url: Url,
    /// Every one signs every delivery; during a rotation, the old and the new.
    pub secrets: Vec<WebhookSecret>,
    /// What the body is.
    pub format: PayloadFormat,
    /// How long the receiver has to answer.
    pub timeout: Duration,
    /// The most events in one POST (always 1 for SNS).
    pub batch_size: usize,
    /// How long a batch waits to fill.
    pub linger: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// The most POSTs a second; `None` for no limit. A held-back delivery uses no retry.
    pub rate_per_second: Option<u32>,
    /// The waits between attempts; after the last, a dead letter.
    pub retry_schedule: Vec<Duration>,
    /// Whether the URL may resolve to a loopback, private or link-local address.
    pub allow_private: bool,
    /// For `format = "sns"`: the `TopicArn` of its envelopes, and the base of its
    /// `SubscribeURL`; `None` otherwise.
    pub sns: Option<Box<SnsOptions>>,
}

/// An SNS endpoint's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsOptions {
    /// The `TopicArn` its envelopes name: `topic_arn`, or
    /// `arn:aws:sns:mailtrack:000000000000:{endpoint}`.
    pub topic_arn: String,
    /// The base of its `SubscribeURL`, overriding `[notify] public_url`.
    pub public_url: Option<Url>,
}

/// The `TopicArn` of an SNS endpoint without `topic_arn`: ARN-shaped, so receivers that split
/// it on `:` find a region (`mailtrack`), an account (twelve zeros, as no AWS account has)
/// and the endpoint's name as the topic.
pub fn default_topic_arn(endpoint: &str) -> String {
    format!("arn:aws:sns:mailtrack:000000000000:{endpoint}")
}

/// The body of an HTTP delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// A JSON array of events, signed per the Standard Webhooks specification.
    StandardWebhooks,
    /// One event per POST in an SNS `Notification` envelope, after a
    /// `SubscriptionConfirmation`, as SES → SNS sends.
    Sns,
}

/// A Redis stream receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReceiver {
    /// The Redis holding it; `None` for the events' own Redis.
    pub redis_url: Option<String>,
    /// The stream key.
    pub stream: String,
}

/// A Standard Webhooks secret: `whsec_` and the base64 of the key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    /// The fewest key bytes: Standard Webhooks asks for 24 to 64.
    pub const MIN_BYTES: usize = 24;

    /// Reads `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or("a secret starts with whsec_")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "the part after whsec_ is not base64")?;
        if key.len() < WebhookSecret::MIN_BYTES {
            return Err(format!(
                "the secret has {} bytes; at least {} are needed",
                key.len(),
                WebhookSecret::MIN_BYTES
            ));
        }
        Ok(WebhookSecret { key })
    }

    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

/// `[notify]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
    admin_listen: Option<String>,
    public_url: Option<String>,
    state_dir: Option<PathBuf>,
    claim_idle_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    events: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, Vec<String>>,
    machines: Option<String>,
    url: Option<String>,
    secrets_file: Option<PathBuf>,
    format: Option<String>,
    timeout_ms: Option<u64>,
    batch_size: Option<usize>,
    linger_ms: Option<u64>,
    concurrency: Option<usize>,
    rate_per_second: Option<u32>,
    retry_schedule: Option<Vec<String>>,
    allow_private: Option<bool>,
    stream: Option<String>,
    redis_url: Option<String>,
    topic_arn: Option<String>,
    public_url: Option<String>,
}

impl RawNotify {
    /// Validates every endpoint; `secrets_file`s resolve against `folder` and are read.
    pub(super) fn validate(self, folder: &Path) -> Result<NotifyConfig, Refusal> {
        if self.endpoint.len() > MAX_ENDPOINTS {
            let message = format!("{} endpoints; at most {MAX_ENDPOINTS}", self.endpoint.len());
            return Err(("notify.endpoint", message));
        }
        let mut names = BTreeSet::new();
        let mut endpoints = Vec::with_capacity(self.endpoint.len());
        for raw in self.endpoint {
            let endpoint = raw.validate(folder)?;
            if !names.insert(endpoint.name.clone()) {
                let message = format!("endpoint {:?} is named twice", endpoint.name);
                return Err(("notify.endpoint.name", message));
            }
            endpoints.push(endpoint);
        }
        if self
            .state_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return Err(("notify.state_dir", "the folder is empty".into()));
        }
        let admin_listen = match self.admin_listen.as_deref() {
            None => NotifyConfig::default().admin_listen,
            Some(text) => text.parse().map_err(|_| {
                let message = format!(
                    "{text:?} is not an address (expected IP:PORT, e.g. \"127.0.0.1:9091\")"
                );
                ("notify.admin_listen", message)
            })?,
        };
        let claim_idle = claim_idle(self.claim_idle_ms, &endpoints)?;
        let public_url = match &self.public_url {
            Some(text) => Some(public_url(text, "notify.public_url")?),
            None => None,
        };
        Ok(NotifyConfig {
            endpoints,
            admin_listen,
            claim_idle,
            public_url,
            state_dir: self.state_dir.map(|dir| folder.join(dir)),
        })
    }
}

/// `claim_idle_ms`, refused when it does not leave [`CLAIM_IDLE_MARGIN`] beyond the longest
/// timeout plus linger of any HTTP endpoint: a live process's batch would then be taken from
/// it mid-attempt.
fn claim_idle(written: Option<u64>, endpoints: &[EndpointConfig]) -> Result<Duration, Refusal> {
    let Some(ms) = written else {
        return Ok(DEFAULT_CLAIM_IDLE);
    };
    let claim_idle = Duration::from_millis(ms);
    let longest = endpoints
        .iter()
        .filter_map(|endpoint| match &endpoint.receiver {
            ReceiverConfig::Http(http) => Some((&endpoint.name, http.timeout + http.linger)),
            ReceiverConfig::Stream(_) => None,
        })
        .max_by_key(|(_, held)| *held);
    if let Some((name, held)) = longest {
        let least = held + CLAIM_IDLE_MARGIN;
        if claim_idle < least {
            let message = format!(
                "{ms} ms is less than endpoint {name:?}'s timeout_ms plus linger_ms plus {} ms; \
                 set at least {} so that a live process's batch is never claimed mid-attempt",
                CLAIM_IDLE_MARGIN.as_millis(),
                least.as_millis()
            );
            return Err(("notify.claim_idle_ms", message));
        }
    }
    Ok(claim_idle)
}

impl RawEndpoint {
    fn validate(self, folder: &Path) -> Result<EndpointConfig, Refusal> {
        let name = self.name.clone();
        check_name(&name, "notify.endpoint.name")?;
        let refuse = |key, message: String| (key, format!("endpoint {name:?}: {message}"));
        let rule = self.rule().map_err(|(key, message)| refuse(key, message))?;
        let receiver = match (&self.url, &self.stream) {
            (Some(_), Some(_)) => {
                return Err(refuse(
                    "notify.endpoint.url",
                    "has both url and stream; an endpoint has one receiver".into(),
                ))
            }
            (None, None) => {
                return Err(refuse(
                    "notify.endpoint.url",
                    "needs a url (pushed to) or a stream (pulled from)".into(),
                ))
            }
            (None, Some(_)) => self.stream_receiver(),
            (Some(_), None) => self.http_receiver(folder),
        }
        .map_err(|(key, message)| refuse(key, message))?;
        Ok(EndpointConfig {
            name,
            rule,
            receiver,
        })
    }

    fn rule(&self) -> Result<RuleConfig, Refusal> {
        let mut event_types = BTreeSet::new();
        for kind in &self.events {
            if !EVENT_TYPES.contains(&kind.as_str()) {
                let message = format!("{kind:?} is not one of {EVENT_TYPES:?}");
                return Err(("notify.endpoint.events", message));
            }
            event_types.insert(kind.clone());
        }
        if event_types.is_empty() {
            let message = format!("names no event type; use some of {EVENT_TYPES:?}");
            return Err(("notify.endpoint.events", message));
        }
        let mut tags = BTreeMap::new();
        for (tag, values) in &self.tags {
            if values.is_empty() {
                let message = format!("tag {tag:?} lists no value, so nothing would match");
                return Err(("notify.endpoint.tags", message));
            }
            tags.insert(tag.clone(), values.iter().cloned().collect());
        }
        let machines = match self.machines.as_deref() {
            None | Some("include") => MachineFilter::Include,
            Some("exclude") => MachineFilter::Exclude,
            Some("only") => MachineFilter::Only,
            Some(other) => {
                let message = format!("{other:?} is not \"include\", \"exclude\" or \"only\"");
                return Err(("notify.endpoint.machines", message));
            }
        };
        Ok(RuleConfig {
            event_types,
            tags,
            machines,
        })
    }

    fn stream_receiver(&self) -> Result<ReceiverConfig, Refusal> {
        let http_only = [
            ("secrets_file", self.secrets_file.is_some()),
            ("format", self.format.is_some()),
            ("timeout_ms", self.timeout_ms.is_some()),
            ("batch_size", self.batch_size.is_some()),
            ("linger_ms", self.linger_ms.is_some()),
            ("rate_per_second", self.rate_per_second.is_some()),
            ("retry_schedule", self.retry_schedule.is_some()),
            ("allow_private", self.allow_private.is_some()),
            ("topic_arn", self.topic_arn.is_some()),
            ("public_url", self.public_url.is_some()),
        ];
        if let Some((key, _)) = http_only.iter().find(|(_, set)| *set) {
            let message = format!("{key} is for an HTTP receiver, and this one is a stream");
            return Err(("notify.endpoint.stream", message));
        }
        let stream = self.stream.clone().unwrap_or_default();
        if stream.is_empty() {
            return Err(("notify.endpoint.stream", "the stream name is empty".into()));
        }
        Ok(ReceiverConfig::Stream(StreamReceiver {
            redis_url: self.redis_url.clone(),
            stream,
        }))
    }

    fn http_receiver(&self, folder: &Path) -> Result<ReceiverConfig, Refusal> {
        let text = self.url.as_deref().unwrap_or_default();
        let url = Url::parse(text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or((
                "notify.endpoint.url",
                format!("{text:?} is not an http(s) URL"),
            ))?;
        if self.redis_url.is_some() {
            let message = "redis_url is for a stream receiver, and this one is a URL".into();
            return Err(("notify.endpoint.redis_url", message));
        }
        let format = match self.format.as_deref() {
            None | Some("standard") => PayloadFormat::StandardWebhooks,
            Some("sns") => PayloadFormat::Sns,
            Some(other) => {
                let message = format!("{other:?} is not \"standard\" or \"sns\"");
                return Err(("notify.endpoint.format", message));
            }
        };
        let secrets = match &self.secrets_file {
            Some(file) => read_secrets(&folder.join(file))?,
            None => Vec::new(),
        };
        if secrets.is_empty() && format == PayloadFormat::StandardWebhooks {
            let message = "needs a secrets_file: every Standard Webhooks delivery is signed".into();
            return Err(("notify.endpoint.secrets_file", message));
        }
        let batch_size = match (format, self.batch_size) {
            (PayloadFormat::Sns, None | Some(1)) => 1,
            (PayloadFormat::Sns, Some(_)) => {
                let message = "SNS sends one event per POST; batch_size must be 1".into();
                return Err(("notify.endpoint.batch_size", message));
            }
            (_, Some(0)) => {
                return Err(("notify.endpoint.batch_size", "must be at least 1".into()));
            }
            (_, size) => size.unwrap_or(DEFAULT_BATCH_SIZE),
        };
        let sns = self.sns_options(format)?;
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(("notify.endpoint.concurrency", "must be at least 1".into()));
        }
        if self.rate_per_second == Some(0) {
            let message = "0 would deliver nothing; leave it out for no limit".into();
            return Err(("notify.endpoint.rate_per_second", message));
        }
        if self.timeout_ms == Some(0) {
            return Err(("notify.endpoint.timeout_ms", "must be at least 1".into()));
        }
        Ok(ReceiverConfig::Http(HttpReceiver {
            url,
            secrets,
            format,
            timeout: self
                .timeout_ms
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            batch_size,
            linger: self.linger_ms.map_or(DEFAULT_LINGER, Duration::from_millis),
            concurrency,
            rate_per_second: self.rate_per_second,
            retry_schedule: retry_schedule(self.retry_schedule.as_deref())?,
            allow_private: self.allow_private.unwrap_or(false),
            sns,
        }))
    }

    /// `topic_arn` and `public_url`, which only an SNS endpoint takes.
    fn sns_options(&self, format: PayloadFormat) -> Result<Option<Box<SnsOptions>>, Refusal> {
        if format != PayloadFormat::Sns {
            let set = [
                ("topic_arn", self.topic_arn.is_some()),
                ("public_url", self.public_url.is_some()),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                let message = format!("{key} is for format = \"sns\", and this one is not");
                return Err(("notify.endpoint.format", message));
            }
            return Ok(None);
        }
        let topic_arn = match &self.topic_arn {
            None => default_topic_arn(&self.name),
            Some(arn) if is_topic_arn(arn) => arn.clone(),
            Some(arn) => {
                let message = format!(
                    "{arn:?} is not arn:aws:sns:REGION:ACCOUNT:TOPIC (letters, digits, - _ . \
                     in each part)"
                );
                return Err(("notify.endpoint.topic_arn", message));
            }
        };
        let public_url = match &self.public_url {
            Some(text) => Some(public_url(text, "notify.endpoint.public_url")?),
            None => None,
        };
        Ok(Some(Box::new(SnsOptions {
            topic_arn,
            public_url,
        })))
    }
}

/// Whether `arn` reads `arn:PARTITION:sns:REGION:ACCOUNT:TOPIC`, each part non-empty and of
/// characters that need no escaping in a header or a query.
fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    let plain = |part: &str| {
        !part.is_empty()
            && part.len() <= 256
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && parts.iter().all(|p| plain(p))
}

/// A base URL for `SubscribeURL`s: http(s), with a host, no query or fragment.
fn public_url(text: &str, key: &'static str) -> Result<Url, Refusal> {
    Url::parse(text)
        .ok()
        .filter(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.query().is_none()
                && url.fragment().is_none()
        })
        .ok_or((
            key,
            format!("{text:?} is not an http(s) URL without a query"),
        ))
}

/// A secrets file: one `whsec_…` a line; blank lines and `#` comments are skipped.
fn read_secrets(path: &Path) -> Result<Vec<WebhookSecret>, Refusal> {
    let key = "notify.endpoint.secrets_file";
    let text =
        std::fs::read_to_string(path).map_err(|e| (key, format!("{}: {e}", path.display())))?;
    let lines = text.lines().map(str::trim).enumerate();
    lines
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| {
            WebhookSecret::parse(line)
                .map_err(|e| (key, format!("{} line {}: {e}", path.display(), n + 1)))
        })
        .collect()
}

/// `["5s", "5m", "2h"]`, in humantime's notation; at most 20 waits, each at most a week.
fn retry_schedule(written: Option<&[String]>) -> Result<Vec<Duration>, Refusal> {
    let key = "notify.endpoint.retry_schedule";
    let Some(written) = written else {
        return Ok(DEFAULT_RETRY_SCHEDULE.to_vec());
    };
    if written.len() > 20 {
        return Err((key, format!("{} waits; at most 20", written.len())));
    }
    written
        .iter()
        .map(|text| {
            let wait = humantime::parse_duration(text)
                .map_err(|e| (key, format!("{text:?}: {e} (write e.g. \"5s\", \"30m\")")))?;
            if wait > Duration::from_secs(7 * 24 * 3600) {
                return Err((key, format!("{text:?} is more than a week")));
            }
            Ok(wait)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(text: &str, folder: &Path) -> Result<NotifyConfig, Refusal> {
        toml::from_str::<RawNotify>(text).unwrap().validate(folder)
    }

    #[test]
    fn the_state_folder_is_beside_the_events_file_unless_set() {
        let folder = Path::new("/etc/mailtrack");
        let events = Path::new("/etc/mailtrack/data/events.jsonl");
        let config = parse("", folder).unwrap();
        assert_eq!(
            config.state_dir_for(events),
            Path::new("/etc/mailtrack/data/events.jsonl.notify")
        );
        let config = parse("state_dir = \"state/notify\"", folder).unwrap();
        assert_eq!(
            config.state_dir_for(events),
            Path::new("/etc/mailtrack/state/notify")
        );
        assert_eq!(
            parse("state_dir = \"\"", folder).unwrap_err().0,
            "notify.state_dir"
        );
    }

    fn with_secrets(lines: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.secrets"), lines).unwrap();
        dir
    }

    #[test]
    fn the_admin_listener_defaults_to_loopback_9091() {
        let config = parse("", Path::new("/")).unwrap();
        assert_eq!(
            config.admin_listen,
            DEFAULT_NOTIFY_ADMIN_LISTEN.parse().unwrap()
        );
        let config = parse("admin_listen = \"127.0.0.1:0\"", Path::new("/")).unwrap();
        assert_eq!(config.admin_listen.port(), 0);
        let (key, _) = parse("admin_listen = \"nope\"", Path::new("/")).unwrap_err();
        assert_eq!(key, "notify.admin_listen");
    }

    #[test]
    fn an_http_endpoint_takes_the_anchors_defaults() {
        let dir = with_secrets(&format!("# rotated in 2026-12\n{SECRET}\n\n"));
        let text = "[[endpoint]]\nname = \"billing\"\nevents = [\"Click\"]\n\
                    tags = { campaign = [\"spring\"] }\n\
                    url = \"https://billing.example/hooks\"\nsecrets_file = \"s.secrets\"\n";
        let config = parse(text, dir.path()).unwrap();
        let endpoint = &config.endpoints[0];
        assert_eq!(endpoint.name, "billing");
        assert_eq!(
            endpoint.rule.event_types,
            BTreeSet::from(["Click".to_owned()])
        );
        assert!(endpoint.rule.tags["campaign"].contains("spring"));
        let ReceiverConfig::Http(http) = &endpoint.receiver else {
            panic!("{endpoint:?}");
        };
        assert_eq!(http.secrets.len(), 1);
        assert_eq!(http.format, PayloadFormat::StandardWebhooks);
        assert_eq!(http.timeout, DEFAULT_TIMEOUT);
        assert_eq!(http.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(http.retry_schedule, DEFAULT_RETRY_SCHEDULE);
        assert!(!http.allow_private);
        assert!(!format!("{http:?}").contains("MfKQ"), "secrets never show");
    }

    #[test]
    fn a_stream_endpoint_and_a_custom_schedule() {
        let dir = with_secrets(SECRET);
        let text = "[[endpoint]]\nname = \"crm\"\nevents = [\"Click\", \"Open\"]\n\
                    stream = \"crm:events\"\n\
                    [[endpoint]]\nname = \"fast\"\nevents = [\"Open\"]\nurl = \"http://127.0.0.1:9/\"\n\
                    secrets_file = \"s.secrets\"\nretry_schedule = [\"1s\", \"250ms\"]\n\
                    timeout_ms = 700\nallow_private = true\n";
        let config = parse(text, dir.path()).unwrap();
        assert_eq!(
            config.endpoints[0].receiver,
            ReceiverConfig::Stream(StreamReceiver {
                redis_url: None,
                stream: "crm:events".into()
            })
        );
        let ReceiverConfig::Http(http) = &config.endpoints[1].receiver else {
            panic!();
        };
        assert_eq!(
            http.retry_schedule,
            [Duration::from_secs(1), Duration::from_millis(250)]
        );
        assert_eq!(http.timeout, Duration::from_millis(700));
        assert!(http.allow_private);
    }

    #[test]
    fn refusals_name_the_key_and_the_endpoint() {
        let dir = with_secrets(SECRET);
        let endpoint = |body: &str| format!("[[endpoint]]\nname = \"e1\"\n{body}\n");
        let url = "url = \"https://r.example/\"\nsecrets_file = \"s.secrets\"";
        let cases = [
            (
                endpoint("events = [\"Bounce\"]\nstream = \"s\""),
                "notify.endpoint.events",
            ),
            (
                endpoint("events = []\nstream = \"s\""),
                "notify.endpoint.events",
            ),
            (endpoint("events = [\"Open\"]"), "notify.endpoint.url"),
            (
                endpoint(&format!("events = [\"Open\"]\n{url}\nstream = \"s\"")),
                "notify.endpoint.url",
            ),
            (
                endpoint("events = [\"Open\"]\nurl = \"ftp://r.example/\""),
                "notify.endpoint.url",
            ),
            (
                endpoint("events = [\"Open\"]\nurl = \"https://r.example/\""),
                "notify.endpoint.secrets_file",
            ),
            (
                endpoint(&format!("events = [\"Open\"]\n{url}\nformat = \"xml\"")),
                "notify.endpoint.format",
            ),
            (
                endpoint(&format!(
                    "events = [\"Open\"]\n{url}\nformat = \"sns\"\nbatch_size = 10"
                )),
                "notify.endpoint.batch_size",
            ),
            (
                endpoint(&format!(
                    "events = [\"Open\"]\n{url}\nretry_schedule = [\"soon\"]"
                )),
                "notify.endpoint.retry_schedule",
            ),
            (
                endpoint(&format!("events = [\"Open\"]\n{url}\nrate_per_second = 0")),
                "notify.endpoint.rate_per_second",
            ),
            (
                endpoint("events = [\"Open\"]\nstream = \"s\"\ntimeout_ms = 5"),
                "notify.endpoint.stream",
            ),
            (
                endpoint("events = [\"Open\"]\ntags = { c = [] }\nstream = \"s\""),
                "notify.endpoint.tags",
            ),
            (
                format!(
                    "{}{}",
                    endpoint("events = [\"Open\"]\nstream = \"s\""),
                    endpoint("events = [\"Open\"]\nstream = \"t\"")
                ),
                "notify.endpoint.name",
            ),
            (
                "[[endpoint]]\nname = \"a b\"\nevents = [\"Open\"]\nstream = \"s\"".to_owned(),
                "notify.endpoint.name",
            ),
        ];
        for (text, key) in cases {
            let (refused, message) = parse(&text, dir.path()).unwrap_err();
            assert_eq!(refused, key, "{text}: {message}");
            assert!(
                message.contains("\"e1\"") || message.contains("\"a b\""),
                "{message}"
            );
        }
    }

    #[test]
    fn claim_idle_defaults_to_a_minute_and_must_outlast_timeout_and_linger() {
        let dir = with_secrets(SECRET);
        let endpoint = "[[endpoint]]\nname = \"e1\"\nevents = [\"Open\"]\n\
                        url = \"https://r.example/\"\nsecrets_file = \"s.secrets\"\n\
                        timeout_ms = 1000\nlinger_ms = 100\n";
        let config = parse(endpoint, dir.path()).unwrap();
        assert_eq!(config.claim_idle, DEFAULT_CLAIM_IDLE);
        let config = parse(&format!("claim_idle_ms = 2100\n{endpoint}"), dir.path()).unwrap();
        assert_eq!(config.claim_idle, Duration::from_millis(2100));
        let (key, message) =
            parse(&format!("claim_idle_ms = 2099\n{endpoint}"), dir.path()).unwrap_err();
        assert_eq!(key, "notify.claim_idle_ms");
        assert!(
            message.contains("\"e1\"") && message.contains("2100"),
            "{message}"
        );
    }

    #[test]
    fn an_sns_endpoint_has_a_topic_and_needs_no_secret() {
        let dir = with_secrets(SECRET);
        let text = "admin_listen = \"127.0.0.1:0\"\npublic_url = \"https://notify.example/\"\n\
                    [[endpoint]]\nname = \"ses\"\nevents = [\"Open\"]\n\
                    url = \"https://r.example/sns\"\nformat = \"sns\"\n";
        let config = parse(text, dir.path()).unwrap();
        assert_eq!(config.admin_listen.port(), 0);
        assert_eq!(
            config.public_url.unwrap().as_str(),
            "https://notify.example/"
        );
        let ReceiverConfig::Http(http) = &config.endpoints[0].receiver else {
            panic!();
        };
        assert_eq!(http.batch_size, 1);
        assert!(http.secrets.is_empty());
        let sns = http.sns.as_ref().unwrap();
        assert_eq!(sns.topic_arn, "arn:aws:sns:mailtrack:000000000000:ses");
        assert_eq!(
            NotifyConfig::default().admin_listen.to_string(),
            DEFAULT_NOTIFY_ADMIN_LISTEN
        );

        let endpoint = |extra: &str| {
            format!(
                "[[endpoint]]\nname = \"e1\"\nevents = [\"Open\"]\n\
                 url = \"https://r.example/\"\nsecrets_file = \"s.secrets\"\n{extra}\n"
            )
        };
        let cases = [
            (
                "topic_arn = \"arn:aws:sns:r:1:t\"",
                "notify.endpoint.format",
            ),
            (
                "format = \"sns\"\ntopic_arn = \"topic\"",
                "notify.endpoint.topic_arn",
            ),
            (
                "format = \"sns\"\ntopic_arn = \"arn:aws:sqs:r:1:t\"",
                "notify.endpoint.topic_arn",
            ),
            (
                "format = \"sns\"\npublic_url = \"https://n.example/?a=b\"",
                "notify.endpoint.public_url",
            ),
        ];
        for (extra, key) in cases {
            let (refused, message) = parse(&endpoint(extra), dir.path()).unwrap_err();
            assert_eq!(refused, key, "{extra}: {message}");
        }
        let (refused, _) = parse("admin_listen = \"nowhere\"", dir.path()).unwrap_err();
        assert_eq!(refused, "notify.admin_listen");
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_enough_bytes() {
        assert!(WebhookSecret::parse(SECRET).is_ok());
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_!!!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
        let dir = with_secrets(&format!("{SECRET}\nwhsec_c2hvcnQ=\n"));
        let text =
            "[[endpoint]]\nname = \"e\"\nevents = [\"Open\"]\nurl = \"https://r.example/\"\n\
                    secrets_file = \"s.secrets\"\n";
        let (key, message) = parse(text, dir.path()).unwrap_err();
        assert_eq!(key, "notify.endpoint.secrets_file");
        assert!(message.contains("s.secrets line 2:"), "{message}");
        assert!(
            !message.contains("c2hvcnQ"),
            "the secret is not echoed: {message}"
        );
    }
}
