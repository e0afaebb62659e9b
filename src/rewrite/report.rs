//! The rewriter's report: which links were tracked, and which were left as they were and why.
//!
//! The report is what the sender reads before sending: every link a recipient can click is
//! either in `tracked` or in `skipped`, in document order, so nothing is dropped silently.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::{Serialize, Serializer};

use crate::link::LinkTags;

/// What the rewriter did with the links of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RewriteReport {
    /// The links now going through the tracking domain, in document order.
    pub tracked: Vec<TrackedLink>,
    /// The links left as they were, in document order, each with the reason.
    pub skipped: Vec<SkippedLink>,
    /// Where the open pixel went.
    pub pixel: Option<PixelPosition>,
    /// The unsubscribe placeholders filled with the message's unsubscribe link, in document
    /// order (with [`RewriteOptions::unsubscribe`](super::RewriteOptions::unsubscribe) only;
    /// absent from the JSON when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsubscribe: Vec<UnsubscribeLink>,
}

/// An href that was an unsubscribe placeholder and is now the message's unsubscribe link.
/// It is not click-tracked on top: the link records the unsubscribe itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnsubscribeLink {
    /// The link's position among the message's `<a href>` and `<area href>`, from 0.
    pub index: usize,
    /// The placeholder it was (`{{unsubscribe}}`, `{{amazonSESUnsubscribeUrl}}`).
    pub placeholder: String,
    /// The unsubscribe link written into the href (before HTML escaping).
    pub url: String,
    /// The byte range of the link's start tag in the input.
    pub source: Range<usize>,
}

/// A link that is now tracked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackedLink {
    /// The link's position among the message's `<a href>` and `<area href>`, from 0.
    pub index: usize,
    /// The href as a browser would have followed it: entities decoded, nothing else changed.
    pub url: String,
    /// The destination the click redirects to: `url` normalised as a browser would.
    pub target: String,
    /// The link's tags from `ses:tags`, covered by the link's MAC.
    #[serde(serialize_with = "tags_as_map")]
    pub tags: LinkTags,
    /// The tracked link written into the href (before HTML escaping).
    pub tracked_url: String,
    /// The byte range of the link's start tag in the input.
    pub source: Range<usize>,
}

/// A link left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedLink {
    /// The link's position among the message's `<a href>` and `<area href>` (and the
    /// hrefs inside Outlook conditional comments), from 0.
    pub index: usize,
    /// The href with its entities decoded.
    pub url: String,
    /// Why it is not tracked.
    #[serde(flatten)]
    pub reason: SkipReason,
    /// The byte range of the link's start tag in the input (for a link in a conditional
    /// comment, of the whole comment).
    pub source: Range<usize>,
}

/// Why a link was left as it was.
///
/// Serialised as `{"reason": "snake_case_name", "detail": …}`; `detail` is there for the
/// reasons that carry one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// The href is empty or only whitespace.
    Empty,
    /// A `#fragment` link: it stays on the page, so there is nothing to redirect.
    Fragment,
    /// A relative link: a mail client has no base URL to resolve it against.
    Relative,
    /// A scheme other than http(s): `mailto:`, `tel:`, `javascript:` and the like.
    NotHttp(String),
    /// A template placeholder (the one found is the detail): the sending platform fills it in
    /// later, so this is not the final URL.
    Placeholder(String),
    /// Not a valid RFC 3986 URI (the detail says where). Left as it is, as SES does; fix the
    /// link, or turn on [`UrlSyntax::Browser`](super::UrlSyntax::Browser).
    NotRfc3986(String),
    /// An http(s) URL that a browser could not follow either, such as one with no host.
    Untrackable(String),
    /// The link has `ses:no-track`.
    NoTrack,
    /// The link's `ses:tags` are malformed (the detail says how). Tracking it without them
    /// would lose the sender's attribution, so it is left alone for the sender to fix.
    InvalidTags(String),
    /// The message already has the most tracked links allowed (the limit is the detail).
    OverLimit(usize),
    /// Inside an Outlook conditional comment (`<!--[if mso]>…<![endif]-->`), such as a VML
    /// button: only Outlook renders it, and the rewriter does not rewrite inside comments.
    /// Give the button an ordinary link for the others, or track it by hand.
    ConditionalComment,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Empty => write!(f, "the href is empty"),
            SkipReason::Fragment => write!(f, "a #fragment link on the same page"),
            SkipReason::Relative => write!(f, "a relative link; only absolute URLs are tracked"),
            SkipReason::NotHttp(scheme) => {
                write!(
                    f,
                    "scheme {scheme:?} is not tracked; only http and https are"
                )
            }
            SkipReason::Placeholder(p) => write!(f, "template placeholder {p:?}"),
            SkipReason::NotRfc3986(why) => write!(f, "not a valid RFC 3986 URI: {why}"),
            SkipReason::Untrackable(why) => write!(f, "not a URL a browser can follow: {why}"),
            SkipReason::NoTrack => write!(f, "marked ses:no-track"),
            SkipReason::InvalidTags(why) => write!(f, "invalid ses:tags: {why}"),
            SkipReason::OverLimit(limit) => {
                write!(f, "over the limit of {limit} tracked links per message")
            }
            SkipReason::ConditionalComment => write!(
                f,
                "inside an Outlook conditional comment, which is not rewritten"
            ),
        }
    }
}

/// Where the open pixel was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelPosition {
    /// In place of the first `{{ses:openTracker}}`.
    Marker,
    /// Right after `<body>`.
    BodyStart,
    /// Right before `</body>`.
    BodyEnd,
    /// At the end of the document, which has no `</body>`.
    DocumentEnd,
}

/// Writes tags as SES writes `linkTags`: each key maps to its values.
fn tags_as_map<S: Serializer>(tags: &LinkTags, serializer: S) -> Result<S::Ok, S::Error> {
    let map: BTreeMap<String, Vec<String>> = tags.to_map();
    map.serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_serialises_reasons_with_their_detail() {
        let report = RewriteReport {
            tracked: vec![TrackedLink {
                index: 0,
                url: "https://a.example/?a=1&b=2".to_owned(),
                target: "https://a.example/?a=1&b=2".to_owned(),
                tags: LinkTags::parse("campaign:spring").unwrap(),
                tracked_url: "https://t.example/CL0/x".to_owned(),
                source: 10..40,
            }],
            skipped: vec![
                SkippedLink {
                    index: 1,
                    url: "mailto:a@b.example".to_owned(),
                    reason: SkipReason::NotHttp("mailto".to_owned()),
                    source: 50..80,
                },
                SkippedLink {
                    index: 2,
                    url: "#top".to_owned(),
                    reason: SkipReason::Fragment,
                    source: 90..100,
                },
            ],
            pixel: Some(PixelPosition::BodyEnd),
            unsubscribe: Vec::new(),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["tracked"][0]["tags"]["campaign"][0], "spring");
        assert_eq!(json["tracked"][0]["source"]["start"], 10);
        assert_eq!(json["skipped"][0]["reason"], "not_http");
        assert_eq!(json["skipped"][0]["detail"], "mailto");
        assert_eq!(json["skipped"][1]["reason"], "fragment");
        assert!(json["skipped"][1].get("detail").is_none());
        assert_eq!(json["pixel"], "body_end");
        assert!(json.get("unsubscribe").is_none(), "{json}");
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            SkipReason::OverLimit(250).to_string(),
            "over the limit of 250 tracked links per message"
        );
        assert_eq!(
            SkipReason::NotHttp("tel".to_owned()).to_string(),
            "scheme \"tel\" is not tracked; only http and https are"
        );
    }
}
