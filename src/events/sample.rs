//! Made-up events for tests, benchmarks and examples: realistic in shape and size, with a
//! fresh `eventId` each, and no key ring needed.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::event::{
    Click, EventVerdict, Extras, Mail, Open, Subscription, SubscriptionSource, TopicPreferences,
};
use super::{Event, EventType};

/// An open of `message_id`, as a desktop mail client sends it.
pub fn sample_event(message_id: &str) -> Event {
    Event {
        event_type: EventType::Open,
        mail: Mail {
            message_id: message_id.to_owned(),
            timestamp: None,
            tags: None,
        },
        open: Some(Open {
            ip_address: "192.0.2.1".to_owned(),
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36".to_owned(),
        }),
        click: None,
        subscription: None,
        mailtrack: extras(),
    }
}

/// A click on a tagged link in `message_id`.
pub fn sample_click(message_id: &str) -> Event {
    let mut link_tags = BTreeMap::new();
    link_tags.insert("campaign".to_owned(), vec!["fall".to_owned()]);
    Event {
        event_type: EventType::Click,
        mail: Mail {
            message_id: message_id.to_owned(),
            timestamp: None,
            tags: None,
        },
        open: None,
        click: Some(Click {
            ip_address: "2001:db8::1".to_owned(),
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".to_owned(),
            link: "https://example.com/offer?utm_source=mail&id=42".to_owned(),
            link_tags,
        }),
        subscription: None,
        mailtrack: extras(),
    }
}

/// A one-click unsubscribe (RFC 8058) from `message_id`, as a mail client posts it.
pub fn sample_subscription(message_id: &str) -> Event {
    Event {
        event_type: EventType::Subscription,
        mail: Mail {
            message_id: message_id.to_owned(),
            timestamp: None,
            tags: None,
        },
        open: None,
        click: None,
        subscription: Some(Subscription {
            contact_list: None,
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            source: SubscriptionSource::UnsubscribeHeader,
            new_topic_preferences: TopicPreferences {
                unsubscribe_all: true,
            },
            old_topic_preferences: TopicPreferences {
                unsubscribe_all: false,
            },
        }),
        mailtrack: Extras {
            method: "POST".to_owned(),
            ..extras()
        },
    }
}

fn extras() -> Extras {
    Extras {
        event_id: Uuid::now_v7().to_string(),
        tracking_domain: "track.example.com".to_owned(),
        method: "GET".to_owned(),
        repair: "as_received".to_owned(),
        verdict: Some(EventVerdict {
            class: "person".to_owned(),
            certainty: "probable".to_owned(),
            signals: Vec::new(),
        }),
        seconds_since_send: None,
    }
}
