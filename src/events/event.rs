//! One open or click, in the shape of Amazon SES event publishing, so that consumers written
//! for SES read it unchanged. Everything of ours sits under one namespaced object, `mailtrack`.
//!
//! ```json
//! {"eventType":"Click",
//!  "mail":{"messageId":"msg-1"},
//!  "click":{"ipAddress":"192.0.2.1","timestamp":"2026-11-23T04:19:05.123Z",
//!           "userAgent":"Mozilla/5.0 …","link":"https://example.com/","linkTags":{"k":["v"]}},
//!  "mailtrack":{"eventId":"019a…","trackingDomain":"track.example.com","method":"GET",
//!               "repair":"as_received"}}
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::link::{LinkKind, VerifiedLink};

/// An open or a click, ready for the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `Open` or `Click`.
    pub event_type: EventType,
    /// The message the link was sent in.
    pub mail: Mail,
    /// Present for an open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<Open>,
    /// Present for a click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click: Option<Click>,
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
}

/// SES's `mail` object, of which only the message id is known to the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    /// The message id signed into the link.
    pub message_id: String,
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

/// The `mailtrack` object: our fields, kept apart from SES's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extras {
    /// Unique and sortable by time (UUIDv7); consumers dedupe on it.
    pub event_id: String,
    /// The host the request was sent to (`Host` or `:authority`), without the port.
    pub tracking_domain: String,
    /// `GET` or `HEAD`.
    pub method: String,
    /// Which repair recovered the link (see `VerifiedLink::repair_label`).
    pub repair: String,
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
}

impl Event {
    /// The event for a verified link followed by the request `facts` describe.
    pub fn new(link: &VerifiedLink, facts: &RequestFacts<'_>) -> Event {
        let ip_address = facts.client_ip.to_string();
        let timestamp = rfc3339_millis(facts.received);
        let user_agent = facts.user_agent.to_owned();
        let (event_type, open, click) = match link.kind {
            LinkKind::Open => {
                let open = Open {
                    ip_address,
                    timestamp,
                    user_agent,
                };
                (EventType::Open, Some(open), None)
            }
            LinkKind::Click => {
                let click = Click {
                    ip_address,
                    timestamp,
                    user_agent,
                    link: link.target.clone(),
                    link_tags: link.tags.to_map(),
                };
                (EventType::Click, None, Some(click))
            }
        };
        Event {
            event_type,
            mail: Mail {
                message_id: link.message_id.as_str().to_owned(),
            },
            open,
            click,
            mailtrack: Extras {
                event_id: Uuid::now_v7().to_string(),
                tracking_domain: facts.tracking_domain.to_owned(),
                method: facts.method.to_owned(),
                repair: link.repair_label().to_owned(),
            },
        }
    }

    /// The client address the event records.
    pub fn ip_address(&self) -> &str {
        match (&self.open, &self.click) {
            (Some(open), _) => &open.ip_address,
            (_, Some(click)) => &click.ip_address,
            (None, None) => "",
        }
    }
}

/// `2026-11-23T04:19:05.123Z`: SES's timestamp format.
fn rfc3339_millis(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{decode, Decoded, LinkTags, MessageId};
    use crate::testing::{fixed_ring, fixed_signer, request_target};

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
        }
    }

    #[test]
    fn click_has_the_ses_shape() {
        let id = MessageId::new("msg-1").unwrap();
        let tags = LinkTags::parse("campaign:fall").unwrap();
        let url = fixed_signer()
            .click_url("https://example.com/a?b=c", &id, &tags)
            .unwrap();
        let event = Event::new(&verified(&url), &facts());
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["eventType"], "Click");
        assert_eq!(json["mail"]["messageId"], "msg-1");
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
        let id = MessageId::new("msg-2").unwrap();
        let url = fixed_signer().open_url(&id);
        let first = Event::new(&verified(&url), &facts());
        let second = Event::new(&verified(&url), &facts());
        let json = serde_json::to_value(&first).unwrap();
        assert_eq!(json["eventType"], "Open");
        assert_eq!(json["open"]["userAgent"], "Mozilla/5.0");
        assert!(json.get("click").is_none());
        assert!(first.mailtrack.event_id < second.mailtrack.event_id);
    }
}
