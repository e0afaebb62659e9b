//! One open, click or unsubscribe, in the shape of Amazon SES event publishing, so that
//! consumers written for SES read it unchanged. Everything of ours sits under one namespaced
//! object, `mailtrack`.
//!
//! ```json
//! {"eventType":"Click",
//!  "mail":{"messageId":"msg-1","timestamp":"2026-11-23T04:00:00.000Z","tags":{"campaign":["spring"]}},
//!  "click":{"ipAddress":"192.0.2.1","timestamp":"2026-11-23T04:19:05.123Z",
//!           "userAgent":"Mozilla/5.0 …","link":"https://example.com/","linkTags":{"k":["v"]}},
//!  "mailtrack":{"eventId":"019a…","trackingDomain":"track.example.com","method":"GET",
//!               "repair":"as_received",
//!               "verdict":{"class":"person","certainty":"probable","signals":[]}}}
//! ```
//!
//! An unsubscribe is SES's `Subscription` event, with no `contactList` (mailtrack keeps no
//! contact lists: `mail.tags` says which list the message was sent to):
//!
//! ```json
//! {"eventType":"Subscription",
//!  "mail":{"messageId":"msg-1","timestamp":"2026-11-23T04:00:00.000Z","tags":{"list":["news"]}},
//!  "subscription":{"timestamp":"2026-11-23T05:02:00.000Z","source":"UnsubscribeHeader",
//!                  "newTopicPreferences":{"unsubscribeAll":true},
//!                  "oldTopicPreferences":{"unsubscribeAll":false}},
//!  "mailtrack":{"eventId":"019a…","trackingDomain":"track.example.com","method":"POST",
//!               "repair":"as_received","verdict":{…},"secondsSinceSend":3720}}
//! ```
//!
//! `mailtrack.verdict` is the classifier's (`crate::classify`); `mailtrack.secondsSinceSend`
//! is there when the link carries its send time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use std::io::Write;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::stamp;
use crate::link::{LinkKind, LinkTags, VerifiedLink};

/// An open, a click or an unsubscribe, ready for the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `Open`, `Click` or `Subscription`.
    pub event_type: EventType,
    /// The message the link was sent in.
    pub mail: Mail,
    /// Present for an open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<Open>,
    /// Present for a click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click: Option<Click>,
    /// Present for an unsubscribe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Subscription>,
    /// mailtrack's own fields.
    pub mailtrack: Extras,
}

/// SES's `eventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// The pixel was fetched.
    Open,
    /// A link was followed.
    Click,
    /// The recipient unsubscribed, with the one-click `POST` (RFC 8058) or the button of the
    /// unsubscribe page.
    Subscription,
}

impl EventType {
    /// The name as in JSON: `Open`, `Click`, `Subscription`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Open => "Open",
            EventType::Click => "Click",
            EventType::Subscription => "Subscription",
        }
    }
}

/// SES's `mail` object, of what the link carries: the message id, and from version 2 links
/// the send time and the message tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    /// The message id signed into the link.
    pub message_id: String,
    /// When the message was sent, as signed into a version 2 link: RFC 3339, UTC,
    /// milliseconds (always `.000`: links carry whole seconds), `Z`. Absent for version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The message's tags, as signed into a version 2 link; SES writes each value as an
    /// array. Absent for version 1, which does not carry them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Vec<String>>>,
}

/// SES's `open` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Open {
    /// The client's address (see `server::client_ip`).
    pub ip_address: String,
    /// When the request arrived: RFC 3339, UTC, milliseconds, `Z`.
    pub timestamp: String,
    /// The `User-Agent` header, or empty.
    pub user_agent: String,
}

/// SES's `click` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Click {
    /// The client's address (see `server::client_ip`).
    pub ip_address: String,
    /// When the request arrived: RFC 3339, UTC, milliseconds, `Z`.
    pub timestamp: String,
    /// The `User-Agent` header, or empty.
    pub user_agent: String,
    /// The destination, as redirected to.
    pub link: String,
    /// The link's tags; SES writes each value as an array.
    pub link_tags: BTreeMap<String, Vec<String>>,
}

/// SES's `subscription` object, for an unsubscribe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// SES's contact list. mailtrack keeps none, so it writes none; read for events from
    /// SES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_list: Option<String>,
    /// When the request arrived: RFC 3339, UTC, milliseconds, `Z`.
    pub timestamp: String,
    /// How the recipient unsubscribed.
    pub source: SubscriptionSource,
    /// After: unsubscribed from everything.
    pub new_topic_preferences: TopicPreferences,
    /// Before, as far as the link knows: subscribed.
    pub old_topic_preferences: TopicPreferences,
}

/// SES's `subscription.source`: how the recipient unsubscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionSource {
    /// The mail client's one-click `POST` to the `List-Unsubscribe` URL (RFC 8058).
    UnsubscribeHeader,
    /// The button of the page the unsubscribe link shows when it is opened in a browser.
    UnsubscribeLink,
}

impl SubscriptionSource {
    /// The name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionSource::UnsubscribeHeader => "UnsubscribeHeader",
            SubscriptionSource::UnsubscribeLink => "UnsubscribeLink",
        }
    }
}

/// SES's topic preferences, of which mailtrack knows only the one: unsubscribed from all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicPreferences {
    /// Whether the recipient is unsubscribed from everything on the list.
    pub unsubscribe_all: bool,
}

/// The `mailtrack` object: our fields, kept apart from SES's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extras {
    /// Unique and sortable by time (UUIDv7); consumers dedupe on it.
    pub event_id: String,
    /// The host the request was sent to (`Host` or `:authority`), without the port.
    pub tracking_domain: String,
    /// `GET` or `HEAD`; `POST` for an unsubscribe.
    pub method: String,
    /// Which repair recovered the link (see `VerifiedLink::repair_label`).
    pub repair: String,
    /// Who made the request, as the classifier judged it when the event was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<EventVerdict>,
    /// Seconds from the send time to the request, when the link carries the send time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_since_send: Option<u64>,
}

/// `mailtrack.verdict`: who made the request (see `crate::classify::verdict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventVerdict {
    /// `person`, `proxy_open`, `machine_open` or `machine_click`.
    pub class: String,
    /// `certain` or `probable`.
    pub certainty: String,
    /// The signals behind it, such as `ua:curl` or `list:microsoft_eop`.
    pub signals: Vec<String>,
}

/// A verdict as the request handler hands it to the event, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct VerdictFacts<'a> {
    /// The class's name.
    pub class: &'a str,
    /// The certainty's name.
    pub certainty: &'a str,
    /// The signals' names.
    pub signals: &'a [&'a str],
}

/// What the proxy knows about the request, besides the link.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// The client's address.
    pub client_ip: IpAddr,
    /// The `User-Agent` header, or empty.
    pub user_agent: &'a str,
    /// The host the request was sent to.
    pub tracking_domain: &'a str,
    /// The request method.
    pub method: &'a str,
    /// When the request arrived.
    pub received: SystemTime,
    /// The classifier's verdict; `None` where nothing classified the request.
    pub verdict: Option<VerdictFacts<'a>>,
    /// Seconds from the send time to the request, when known.
    pub seconds_since_send: Option<u64>,
}

impl Event {
    /// The event for a verified link followed by the request `facts` describe; for an
    /// unsubscribe link see [`EncodedEvent::new`].
    ///
    /// The server does not build this struct: it writes [`EncodedEvent`]s, which hold the
    /// same JSON. This reads one back, so that both always agree.
    pub fn new(link: &VerifiedLink, facts: &RequestFacts<'_>) -> Event {
        EncodedEvent::new(link, facts).to_event()
    }

    /// The client address the event records; empty for an unsubscribe, whose SES shape has
    /// none.
    pub fn ip_address(&self) -> &str {
        match (&self.open, &self.click) {
            (Some(open), _) => &open.ip_address,
            (_, Some(click)) => &click.ip_address,
            (None, None) => "",
        }
    }
}

/// An event serialised to JSON where it happens, with the two fields a stream entry repeats.
///
/// A request handler writes its event straight from the link and the request, into one
/// allocation: building an [`Event`] first took a dozen small strings, each allocated in the
/// handler and freed by the batcher, which was most of what recording an event cost a click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    /// The event's JSON, then its message id.
    bytes: Vec<u8>,
    /// Where the JSON ends in `bytes`.
    json_len: usize,
    /// `Open`, `Click` or `Subscription`.
    event_type: EventType,
}

impl EncodedEvent {
    /// The event for a verified link followed by the request `facts` describe, with a new
    /// `eventId`. An unsubscribe link's event is recorded as the one-click `POST`'s
    /// ([`SubscriptionSource::UnsubscribeHeader`]); [`EncodedEvent::subscription`] names
    /// the source.
    pub fn new(link: &VerifiedLink, facts: &RequestFacts<'_>) -> EncodedEvent {
        EncodedEvent::subscription(link, facts, SubscriptionSource::UnsubscribeHeader)
    }

    /// [`EncodedEvent::new`], with the `source` an unsubscribe link's event records (an
    /// open's or a click's has none, and ignores it).
    pub fn subscription(
        link: &VerifiedLink,
        facts: &RequestFacts<'_>,
        source: SubscriptionSource,
    ) -> EncodedEvent {
        let mut bytes = Vec::with_capacity(ENCODED_EVENT_BYTES + link.target.len());
        let event_id = stamp::event_id(facts.received);
        let event_type = write_event(&mut bytes, link, facts, event_id, source);
        let json_len = bytes.len();
        bytes.extend_from_slice(link.message_id.as_str().as_bytes());
        EncodedEvent {
            bytes,
            json_len,
            event_type,
        }
    }

    /// The event as JSON, on one line.
    pub fn json(&self) -> &[u8] {
        &self.bytes[..self.json_len]
    }

    /// `Open`, `Click` or `Subscription`.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The message id, as in the JSON.
    pub fn message_id(&self) -> &str {
        // Written from a `str` in `new` and `From<&Event>`; a message id is ASCII.
        std::str::from_utf8(&self.bytes[self.json_len..]).unwrap_or("")
    }

    /// The event, read back from its JSON.
    pub fn to_event(&self) -> Event {
        serde_json::from_slice(self.json()).expect("an encoded event reads back")
    }
}

impl From<&Event> for EncodedEvent {
    fn from(event: &Event) -> EncodedEvent {
        let mut bytes = serde_json::to_vec(event).expect("an event serialises");
        let json_len = bytes.len();
        bytes.extend_from_slice(event.mail.message_id.as_bytes());
        EncodedEvent {
            bytes,
            json_len,
            event_type: event.event_type,
        }
    }
}

impl From<Event> for EncodedEvent {
    fn from(event: Event) -> EncodedEvent {
        EncodedEvent::from(&event)
    }
}

/// Room for an event's JSON besides its link: a click with a browser's `User-Agent` and a
/// verdict is about 520 bytes, so most events are written without the buffer growing.
const ENCODED_EVENT_BYTES: usize = 640;

/// Writes the JSON of the event for `link` and `facts` into `out`, in the shape and field
/// order of [`Event`]'s `Serialize`, and returns its type.
///
/// By hand rather than through serde: most of these strings are known to need no escaping,
/// and the rest rarely do, so almost all of the event is copied as it is. Through serde,
/// writing the event cost as many instructions as hyper spends on a whole request.
/// `tests::encoded_and_owned_events_agree` checks that the bytes are the same as serde's.
fn write_event(
    out: &mut Vec<u8>,
    link: &VerifiedLink,
    facts: &RequestFacts<'_>,
    event_id: Uuid,
    source: SubscriptionSource,
) -> EventType {
    let event_type = match link.kind {
        LinkKind::Open => EventType::Open,
        LinkKind::Click => EventType::Click,
        LinkKind::Unsubscribe => EventType::Subscription,
    };
    out.extend_from_slice(match event_type {
        EventType::Open => br#"{"eventType":"Open","mail":{"messageId":"#,
        EventType::Click => br#"{"eventType":"Click","mail":{"messageId":"#,
        EventType::Subscription => br#"{"eventType":"Subscription","mail":{"messageId":"#,
    });
    // A message id is `[A-Za-z0-9._-]`: nothing to escape.
    out.push(b'"');
    out.extend_from_slice(link.message_id.as_str().as_bytes());
    out.push(b'"');
    if let Some(send_time) = link.send_time {
        out.extend_from_slice(br#","timestamp":""#);
        // Not through `stamp::write_timestamp`, whose one-second cache holds the time the
        // request arrived, written just after: a send time would evict it on every click.
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{}",
            humantime::format_rfc3339_millis(send_time.to_system_time())
        );
        out.extend_from_slice(br#"","tags":"#);
        write_tags(out, &link.message_tags);
    }
    out.push(b'}');
    match event_type {
        EventType::Open | EventType::Click => write_open_or_click(out, link, facts),
        EventType::Subscription => write_subscription(out, facts, source),
    }
    out.extend_from_slice(br#"},"mailtrack":{"eventId":""#);
    out.extend_from_slice(
        event_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(br#"","trackingDomain":"#);
    write_string(out, facts.tracking_domain);
    out.extend_from_slice(br#","method":"#);
    write_string(out, facts.method);
    out.extend_from_slice(br#","repair":""#);
    // Repair labels are fixed lower-case words.
    out.extend_from_slice(link.repair_label().as_bytes());
    out.push(b'"');
    if let Some(verdict) = &facts.verdict {
        out.extend_from_slice(br#","verdict":{"class":"#);
        write_string(out, verdict.class);
        out.extend_from_slice(br#","certainty":"#);
        write_string(out, verdict.certainty);
        out.extend_from_slice(br#","signals":["#);
        for (i, signal) in verdict.signals.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(out, signal);
        }
        out.extend_from_slice(b"]}");
    }
    if let Some(seconds) = facts.seconds_since_send {
        out.extend_from_slice(br#","secondsSinceSend":"#);
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{seconds}");
    }
    out.extend_from_slice(b"}}");
    event_type
}

/// `,"open":{…` or `,"click":{…`, without the closing brace.
fn write_open_or_click(out: &mut Vec<u8>, link: &VerifiedLink, facts: &RequestFacts<'_>) {
    out.extend_from_slice(match link.kind {
        LinkKind::Click => br#","click":{"ipAddress":""#,
        _ => br#","open":{"ipAddress":""#,
    });
    write_ip(out, facts.client_ip);
    out.extend_from_slice(br#"","timestamp":""#);
    stamp::write_timestamp(out, facts.received);
    out.extend_from_slice(br#"","userAgent":"#);
    write_string(out, facts.user_agent);
    if link.kind == LinkKind::Click {
        out.extend_from_slice(br#","link":"#);
        write_string(out, &link.target);
        out.extend_from_slice(br#","linkTags":"#);
        write_tags(out, &link.tags);
    }
}

/// `,"subscription":{…`, without the closing brace: unsubscribed from all, from subscribed.
fn write_subscription(out: &mut Vec<u8>, facts: &RequestFacts<'_>, source: SubscriptionSource) {
    out.extend_from_slice(br#","subscription":{"timestamp":""#);
    stamp::write_timestamp(out, facts.received);
    out.extend_from_slice(br#"","source":""#);
    // A fixed word: nothing to escape.
    out.extend_from_slice(source.as_str().as_bytes());
    out.extend_from_slice(
        br#"","newTopicPreferences":{"unsubscribeAll":true},"oldTopicPreferences":{"unsubscribeAll":false}"#,
    );
}

/// A JSON string: copied as it is when nothing in it needs escaping (serde_json escapes only
/// `"`, `\` and control characters), else escaped by serde_json.
fn write_string(out: &mut Vec<u8>, text: &str) {
    // A fold rather than `any`: with no early exit the check runs many bytes at a time.
    let escape = text.bytes().fold(false, |escape, b| {
        escape | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escape {
        // Serialising a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// An address as `Display` writes it; IPv4, by far the most common, without `fmt`.
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A link's tags as SES's `linkTags`, as [`LinkTags::to_map`] makes them: keys in order,
/// each with its values in the order they were written.
fn write_tags(out: &mut Vec<u8>, tags: &LinkTags) {
    let mut keys: Vec<&str> = tags.iter().map(|(key, _)| key).collect();
    keys.sort_unstable();
    keys.dedup();
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.extend_from_slice(b":[");
        let values = tags.iter().filter(|&(k, _)| k == key);
        for (j, (_, value)) in values.enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_string(out, value);
        }
        out.push(b']');
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{decode, Decoded};
    use crate::testing::{fixed_ring, fixed_signer, request_target, stamp_v1, stamp_v2};

    fn verified(link: &str) -> VerifiedLink {
        match decode(request_target(link), &fixed_ring()) {
            Decoded::Verified(link) => link,
            other => panic!("{other:?}"),
        }
    }

    fn facts() -> RequestFacts<'static> {
        RequestFacts {
            client_ip: "192.0.2.1".parse().unwrap(),
            user_agent: "Mozilla/5.0",
            tracking_domain: "track.example.com",
            method: "GET",
            received: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            verdict: None,
            seconds_since_send: None,
        }
    }

    #[test]
    fn click_has_the_ses_shape() {
        let id = stamp_v2("msg-1", "list:news;campaign:spring");
        let tags = LinkTags::parse("campaign:fall").unwrap();
        let url = fixed_signer()
            .click_url("https://example.com/a?b=c", &id, &tags)
            .unwrap();
        let event = Event::new(&verified(&url), &facts());
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["eventType"], "Click");
        assert_eq!(json["mail"]["messageId"], "msg-1");
        assert_eq!(json["mail"]["timestamp"], "2026-12-02T16:00:00.000Z");
        assert_eq!(
            json["mail"]["tags"],
            serde_json::json!({"campaign": ["spring"], "list": ["news"]})
        );
        assert_eq!(json["click"]["link"], "https://example.com/a?b=c");
        assert_eq!(json["click"]["linkTags"]["campaign"][0], "fall");
        assert_eq!(json["click"]["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["click"]["ipAddress"], "192.0.2.1");
        assert_eq!(json["mailtrack"]["repair"], "as_received");
        assert!(json.get("open").is_none());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn open_has_the_ses_shape_and_ids_sort_by_time() {
        let id = stamp_v2("msg-2", "campaign:spring");
        let url = fixed_signer().open_url(&id);
        let first = Event::new(&verified(&url), &facts());
        let second = Event::new(&verified(&url), &facts());
        let json = serde_json::to_value(&first).unwrap();
        assert_eq!(json["eventType"], "Open");
        assert_eq!(json["open"]["userAgent"], "Mozilla/5.0");
        assert_eq!(json["mail"]["timestamp"], "2026-12-02T16:00:00.000Z");
        assert_eq!(json["mail"]["tags"]["campaign"][0], "spring");
        assert!(json.get("click").is_none());
        assert!(first.mailtrack.event_id < second.mailtrack.event_id);
    }

    #[test]
    fn version_1_events_have_only_the_message_id_in_mail() {
        let id = stamp_v1("msg-1");
        let url = fixed_signer()
            .click_url("https://example.com/", &id, &LinkTags::new())
            .unwrap();
        for url in [url, fixed_signer().open_url(&id)] {
            let encoded = EncodedEvent::new(&verified(&url), &facts());
            let json: serde_json::Value = serde_json::from_slice(encoded.json()).unwrap();
            assert_eq!(
                json["mail"],
                serde_json::json!({"messageId": "msg-1"}),
                "{url}"
            );
            assert_eq!(
                serde_json::to_vec(&encoded.to_event()).unwrap(),
                encoded.json()
            );
        }
    }

    #[test]
    fn encoded_and_owned_events_agree() {
        let id = stamp_v2("msg-3", "list:b;list:a;campaign:fall");
        // Repeated and unsorted keys, and a user agent that needs escaping.
        let tags = LinkTags::parse("lang:en;campaign:fall;lang:fr").unwrap();
        let url = fixed_signer()
            .click_url("https://example.com/a?b=c", &id, &tags)
            .unwrap();
        let link = verified(&url);
        let mail_client = RequestFacts {
            client_ip: "2001:db8::7".parse().unwrap(),
            user_agent: "Mail \"Client\"\t/ 1.0 \u{e9}",
            verdict: Some(VerdictFacts {
                class: "machine_click",
                certainty: "certain",
                signals: &["ua:curl", "list:my \"list\""],
            }),
            seconds_since_send: Some(42),
            ..facts()
        };
        let encoded = EncodedEvent::new(&link, &mail_client);
        let owned = encoded.to_event();
        assert_eq!(serde_json::to_vec(&owned).unwrap(), encoded.json());
        assert_eq!(EncodedEvent::from(&owned), encoded);
        assert_eq!(encoded.message_id(), "msg-3");
        assert_eq!(encoded.event_type(), EventType::Click);
        let click = owned.click.unwrap();
        assert_eq!(click.user_agent, mail_client.user_agent);
        assert_eq!(click.ip_address, "2001:db8::7");
        assert_eq!(click.link_tags, tags.to_map());
        assert_eq!(click.link_tags["lang"], ["en", "fr"]);
        let verdict = owned.mailtrack.verdict.unwrap();
        assert_eq!(verdict.class, "machine_click");
        assert_eq!(verdict.signals, ["ua:curl", "list:my \"list\""]);
        assert_eq!(owned.mailtrack.seconds_since_send, Some(42));

        // An open, from an address with every width of octet.
        let open = verified(&fixed_signer().open_url(&id));
        for ip in ["10.0.100.255", "0.0.0.0", "192.0.2.1", "::1"] {
            let from_ip = RequestFacts {
                client_ip: ip.parse().unwrap(),
                ..facts()
            };
            let encoded = EncodedEvent::new(&open, &from_ip);
            let owned = encoded.to_event();
            assert_eq!(serde_json::to_vec(&owned).unwrap(), encoded.json());
            assert_eq!(owned.ip_address(), ip);
            assert_eq!(encoded.event_type(), EventType::Open);
        }
    }

    #[test]
    fn subscription_has_the_ses_shape() {
        let id = stamp_v2("msg-4", "list:news");
        let url = fixed_signer().unsubscribe_url(&id).unwrap();
        let link = verified(&url);
        let post = RequestFacts {
            method: "POST",
            ..facts()
        };
        for source in [
            SubscriptionSource::UnsubscribeHeader,
            SubscriptionSource::UnsubscribeLink,
        ] {
            let encoded = EncodedEvent::subscription(&link, &post, source);
            assert_eq!(encoded.event_type(), EventType::Subscription);
            let owned = encoded.to_event();
            assert_eq!(serde_json::to_vec(&owned).unwrap(), encoded.json());
            let json: serde_json::Value = serde_json::from_slice(encoded.json()).unwrap();
            assert_eq!(json["eventType"], "Subscription");
            assert_eq!(json["mail"]["messageId"], "msg-4");
            assert_eq!(json["mail"]["tags"]["list"][0], "news");
            assert_eq!(
                json["subscription"],
                serde_json::json!({
                    "timestamp": "2023-11-14T22:13:20.123Z",
                    "source": source.as_str(),
                    "newTopicPreferences": {"unsubscribeAll": true},
                    "oldTopicPreferences": {"unsubscribeAll": false},
                })
            );
            assert_eq!(json["mailtrack"]["method"], "POST");
            assert!(json.get("open").is_none() && json.get("click").is_none());
        }
        // `new` records an unsubscribe link's event as the one-click POST's.
        let json: serde_json::Value =
            serde_json::from_slice(EncodedEvent::new(&link, &post).json()).unwrap();
        assert_eq!(json["subscription"]["source"], "UnsubscribeHeader");
    }
}
