//! An endpoint's rule: the conditions an event must meet, all of them, to be delivered there.
//!
//! A rule is a list of [`Condition`]s, each a variant of its own, so that a new kind of
//! condition (the machine verdict, the send time) is one more variant and one more arm in
//! [`Condition::holds`], and no existing rule changes meaning.
//!
//! A rule reads an event through [`EventFacts`], borrowed from the event's JSON as it sits in
//! the log: the JSON is parsed once, and what is delivered is the original text, never a
//! re-serialisation (receivers verify their signature over the exact bytes).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::config::notify::{MachineFilter, RuleConfig};

/// Which events an endpoint wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    conditions: Vec<Condition>,
}

/// One thing an event must be.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// Its `eventType` is one of these.
    EventType(BTreeSet<String>),
    /// It carries `tag` with one of `values`: a click's `linkTags`, or the message's own tags
    /// (`mail.tags`) where the link carried them.
    Tag {
        /// The tag's name.
        tag: String,
        /// The values wanted.
        values: BTreeSet<String>,
    },
    /// The classifier's verdict is a machine's (`Only`), or is not (`Exclude`). `Include`
    /// makes no condition. An unsubscribe always meets it: RFC 8058's `POST` is sent by the
    /// mail provider's servers for its user, so a machine's verdict there is still the
    /// person's wish, and an endpoint that wants unsubscribes must not lose one to it.
    Machines(MachineFilter),
}

/// What a rule reads of an event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFacts {
    /// `Open`, `Click`, …
    pub event_type: String,
    /// SES's `mail`.
    #[serde(default)]
    pub mail: MailFacts,
    /// SES's `click`, for a click.
    #[serde(default)]
    pub click: Option<ClickFacts>,
    /// mailtrack's own fields.
    pub mailtrack: ExtraFacts,
}

/// What a rule reads of `mail`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailFacts {
    /// The message id.
    #[serde(default)]
    pub message_id: String,
    /// The message's tags, SES-style (a map of arrays), where its links carried them.
    #[serde(default)]
    pub tags: BTreeMap<String, Vec<String>>,
}

/// What a rule reads of `click`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClickFacts {
    /// The link's tags.
    #[serde(default)]
    pub link_tags: BTreeMap<String, Vec<String>>,
}

/// What a rule reads of `mailtrack`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtraFacts {
    /// The event's unique id.
    pub event_id: String,
    /// The classifier's verdict, when the event has one.
    #[serde(default)]
    pub verdict: Option<VerdictFacts>,
}

/// What a rule reads of `mailtrack.verdict`.
#[derive(Debug, Deserialize)]
pub struct VerdictFacts {
    /// `person`, `proxy_open`, `machine_open` or `machine_click`.
    pub class: String,
}

impl EventFacts {
    /// Reads the facts from an event's JSON.
    pub fn parse(json: &str) -> Result<EventFacts, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Whether the classifier judged it a machine's; an event with no verdict (made before
    /// the classifier, or by another producer) is not.
    fn is_machine(&self) -> bool {
        let class = self.mailtrack.verdict.as_ref().map(|v| v.class.as_str());
        matches!(class, Some("machine_open" | "machine_click"))
    }

    /// The values of `tag`, from the link's tags and the message's.
    fn tag_values(&self, tag: &str) -> impl Iterator<Item = &str> {
        let link = self.click.as_ref().and_then(|c| c.link_tags.get(tag));
        let mail = self.mail.tags.get(tag);
        link.into_iter().chain(mail).flatten().map(String::as_str)
    }
}

impl Condition {
    /// Whether `event` meets it.
    pub fn holds(&self, event: &EventFacts) -> bool {
        match self {
            Condition::EventType(types) => types.contains(&event.event_type),
            Condition::Tag { tag, values } => event.tag_values(tag).any(|v| values.contains(v)),
            Condition::Machines(MachineFilter::Include) => true,
            Condition::Machines(_) if event.event_type == "Subscription" => true,
            Condition::Machines(MachineFilter::Exclude) => !event.is_machine(),
            Condition::Machines(MachineFilter::Only) => event.is_machine(),
        }
    }
}

impl Rule {
    /// The rule an endpoint's config describes.
    pub fn new(config: &RuleConfig) -> Rule {
        let mut conditions = vec![Condition::EventType(config.event_types.clone())];
        conditions.extend(config.tags.iter().map(|(tag, values)| Condition::Tag {
            tag: tag.clone(),
            values: values.clone(),
        }));
        if config.machines != MachineFilter::Include {
            conditions.push(Condition::Machines(config.machines));
        }
        Rule { conditions }
    }

    /// The event types, when they are the rule's only condition: an entry that names its
    /// type beside its JSON (the Redis stream's `type` field) is then matched without the
    /// JSON being parsed at all, which was the largest share of notify's CPU once Redis's
    /// replies were cheap to read.
    pub fn by_type_alone(&self) -> Option<&BTreeSet<String>> {
        match self.conditions.as_slice() {
            [Condition::EventType(types)] => Some(types),
            _ => None,
        }
    }

    /// Whether `event` meets every condition.
    pub fn matches(&self, event: &EventFacts) -> bool {
        self.conditions
            .iter()
            .all(|condition| condition.holds(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(types: &[&str], tags: &[(&str, &[&str])]) -> Rule {
        Rule::new(&RuleConfig {
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            tags: tags
                .iter()
                .map(|(tag, values)| {
                    let values = values.iter().map(|v| (*v).to_owned()).collect();
                    ((*tag).to_owned(), values)
                })
                .collect(),
            machines: MachineFilter::Include,
        })
    }

    fn click(tags: &str) -> EventFacts {
        let json = format!(
            r#"{{"eventType":"Click","mail":{{"messageId":"m"}},"click":{{"ipAddress":"192.0.2.1",
            "timestamp":"2026-12-02T06:00:00.000Z","userAgent":"","link":"https://e.example/",
            "linkTags":{tags}}},"mailtrack":{{"eventId":"e1","trackingDomain":"t","method":"GET",
            "repair":"as_received"}}}}"#
        );
        EventFacts::parse(&json).unwrap()
    }

    fn open() -> EventFacts {
        let json = r#"{"eventType":"Open","mail":{"messageId":"m"},"open":{"ipAddress":"192.0.2.1",
            "timestamp":"2026-12-02T06:00:00.000Z","userAgent":""},"mailtrack":{"eventId":"e2",
            "trackingDomain":"t","method":"GET","repair":"as_received"}}"#;
        EventFacts::parse(json).unwrap()
    }

    #[test]
    fn only_a_rule_of_types_alone_is_decided_by_the_type() {
        let clicks = rule(&["Click"], &[]);
        assert_eq!(
            clicks.by_type_alone(),
            Some(&BTreeSet::from(["Click".to_owned()]))
        );
        assert_eq!(
            rule(&["Click"], &[("campaign", &["spring"])]).by_type_alone(),
            None
        );
        let people = Rule::new(&RuleConfig {
            event_types: BTreeSet::from(["Click".to_owned()]),
            machines: MachineFilter::Exclude,
            ..RuleConfig::default()
        });
        assert_eq!(people.by_type_alone(), None);
    }

    #[test]
    fn event_types_and_tags_must_all_hold() {
        let spring_clicks = rule(&["Click"], &[("campaign", &["spring", "summer"])]);
        assert!(spring_clicks.matches(&click(r#"{"campaign":["spring"]}"#)));
        assert!(spring_clicks.matches(&click(r#"{"campaign":["autumn","summer"]}"#)));
        assert!(!spring_clicks.matches(&click(r#"{"campaign":["autumn"]}"#)));
        assert!(!spring_clicks.matches(&click("{}")));
        assert!(!spring_clicks.matches(&open()), "an open has no link tags");

        let everything = rule(&["Open", "Click"], &[]);
        assert!(everything.matches(&open()));
        assert!(everything.matches(&click("{}")));
        assert!(!rule(&["Click"], &[]).matches(&open()));

        let two_tags = rule(
            &["Click"],
            &[("campaign", &["spring"]), ("variant", &["b"])],
        );
        assert!(two_tags.matches(&click(r#"{"campaign":["spring"],"variant":["b"]}"#)));
        assert!(!two_tags.matches(&click(r#"{"campaign":["spring"],"variant":["a"]}"#)));
    }

    #[test]
    fn message_tags_count_too() {
        let json = r#"{"eventType":"Open","mail":{"messageId":"m","tags":{"campaign":["spring"]}},
            "mailtrack":{"eventId":"e3"}}"#;
        let spring = rule(&["Open"], &[("campaign", &["spring"])]);
        assert!(spring.matches(&EventFacts::parse(json).unwrap()));
    }

    fn with_verdict(class: &str) -> EventFacts {
        let json = format!(
            r#"{{"eventType":"Click","mailtrack":{{"eventId":"e4","verdict":{{"class":"{class}",
            "certainty":"certain","signals":["ua:curl"]}}}}}}"#
        );
        EventFacts::parse(&json).unwrap()
    }

    #[test]
    fn machines_include_exclude_only() {
        let with = |machines| {
            Rule::new(&RuleConfig {
                event_types: BTreeSet::from(["Click".to_owned(), "Open".to_owned()]),
                machines,
                ..RuleConfig::default()
            })
        };
        let (include, exclude, only) = (
            with(MachineFilter::Include),
            with(MachineFilter::Exclude),
            with(MachineFilter::Only),
        );
        for class in ["machine_click", "machine_open"] {
            let event = with_verdict(class);
            assert!(include.matches(&event) && only.matches(&event), "{class}");
            assert!(!exclude.matches(&event), "{class}");
        }
        for class in ["person", "proxy_open"] {
            let event = with_verdict(class);
            assert!(
                include.matches(&event) && exclude.matches(&event),
                "{class}"
            );
            assert!(!only.matches(&event), "{class}");
        }
        // No verdict: a person's.
        assert!(exclude.matches(&open()) && !only.matches(&open()));
    }

    #[test]
    fn unsubscribes_are_selected_by_type_and_message_tags() {
        let json = r#"{"eventType":"Subscription","mail":{"messageId":"m","timestamp":
            "2026-12-02T06:00:00.000Z","tags":{"list":["news"]}},"subscription":{"timestamp":
            "2026-12-02T07:00:00.000Z","source":"UnsubscribeHeader","newTopicPreferences":
            {"unsubscribeAll":true},"oldTopicPreferences":{"unsubscribeAll":false}},
            "mailtrack":{"eventId":"e5","trackingDomain":"t","method":"POST","repair":"as_received"}}"#;
        let unsubscribe = EventFacts::parse(json).unwrap();
        assert!(rule(&["Subscription"], &[]).matches(&unsubscribe));
        assert!(rule(&["Subscription"], &[("list", &["news"])]).matches(&unsubscribe));
        assert!(!rule(&["Subscription"], &[("list", &["offers"])]).matches(&unsubscribe));
        assert!(!rule(&["Open", "Click"], &[]).matches(&unsubscribe));
        assert!(!rule(&["Subscription"], &[]).matches(&open()));
        // The machine filter does not drop an unsubscribe, whatever its verdict.
        let machine = json.replace(
            r#""repair":"as_received"}"#,
            r#""repair":"as_received","verdict":{"class":"machine_click"}}"#,
        );
        let machine = EventFacts::parse(&machine).unwrap();
        assert!(machine.is_machine());
        for machines in [MachineFilter::Exclude, MachineFilter::Only] {
            let wanted = Rule::new(&RuleConfig {
                event_types: BTreeSet::from(["Subscription".to_owned()]),
                machines,
                ..RuleConfig::default()
            });
            assert!(wanted.matches(&machine) && wanted.matches(&unsubscribe));
        }
    }

    #[test]
    fn an_event_that_is_not_ours_does_not_parse() {
        assert!(EventFacts::parse("{\"eventType\":\"Click\"}").is_err());
        assert!(EventFacts::parse("not json").is_err());
    }
}
