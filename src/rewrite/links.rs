//! What happens to one `<a>` or `<area>` start tag: its `ses:` attributes are removed, and its
//! href is either replaced by a tracked link or left as it is, and reported either way.

use lol_html::html_content::{Comment, Element};

use super::href::{classify, decode_entities, Trackable};
use super::report::{SkipReason, SkippedLink, TrackedLink, UnsubscribeLink};
use super::{RewriteOptions, UrlSyntax, UNSUBSCRIBE_PLACEHOLDERS};
use crate::link::{LinkSigner, LinkTags, MessageStamp};

/// Marks a link the sender does not want tracked, as in SES.
const NO_TRACK: &str = "ses:no-track";

/// The link's tags, `k:v;k2:v2`, as in SES.
const TAGS: &str = "ses:tags";

/// Rewrites the links of one message, counting them against the limit, and keeps the record.
#[derive(Debug)]
pub(crate) struct LinkTracker {
    signer: LinkSigner,
    /// What every link of the message carries: its id, send time and message tags.
    stamp: MessageStamp,
    max_links: usize,
    syntax: UrlSyntax,
    /// How many links (`<a>` and `<area>` with an href) have been seen so far.
    seen: usize,
    /// The links tracked so far, in document order.
    pub(crate) tracked: Vec<TrackedLink>,
    /// The links left alone so far, in document order.
    pub(crate) skipped: Vec<SkippedLink>,
    /// The message's unsubscribe link, when the options ask for one.
    unsubscribe_url: Option<String>,
    /// The unsubscribe placeholders filled so far, in document order.
    pub(crate) unsubscribe: Vec<UnsubscribeLink>,
}

impl LinkTracker {
    /// A tracker for the message and limits in `options`.
    pub(crate) fn new(options: &RewriteOptions) -> LinkTracker {
        LinkTracker {
            signer: options.signer.clone(),
            stamp: options.stamp(),
            max_links: options.max_links,
            syntax: options.url_syntax,
            seen: 0,
            tracked: Vec::new(),
            skipped: Vec::new(),
            unsubscribe_url: options.unsubscribe.then(|| options.unsubscribe_url()),
            unsubscribe: Vec::new(),
        }
    }

    /// Handles one `<a>` or `<area>` start tag.
    ///
    /// The tag is only modified when it has `ses:` attributes or its href is tracked, so every
    /// other tag is written out byte for byte as it came in.
    pub(crate) fn rewrite(&mut self, element: &mut Element<'_, '_>) {
        let no_track = element.has_attribute(NO_TRACK);
        if no_track {
            element.remove_attribute(NO_TRACK);
        }
        let tags = element.get_attribute(TAGS);
        if tags.is_some() {
            element.remove_attribute(TAGS);
        }
        let Some(raw_href) = element.get_attribute("href") else {
            return;
        };
        let index = self.seen;
        self.seen += 1;
        let url = decode_entities(&raw_href).into_owned();
        let source = element.source_location().bytes();
        if let Some(unsubscribe_url) = &self.unsubscribe_url {
            let placeholder = url.trim();
            if UNSUBSCRIBE_PLACEHOLDERS.contains(&placeholder) {
                // `href` is a valid attribute name, the only thing set_attribute checks.
                let _ = element.set_attribute("href", &htmlize::escape_attribute(unsubscribe_url));
                self.unsubscribe.push(UnsubscribeLink {
                    index,
                    placeholder: placeholder.to_owned(),
                    url: unsubscribe_url.clone(),
                    source,
                });
                return;
            }
        }
        match self.decide(&url, no_track, tags.as_deref()) {
            Ok((target, tags)) => {
                let tracked_url = self
                    .signer
                    .click_url_for_normalized(&target, &self.stamp, &tags);
                // `href` is a valid attribute name, the only thing set_attribute checks.
                let _ = element.set_attribute("href", &htmlize::escape_attribute(&tracked_url));
                self.tracked.push(TrackedLink {
                    index,
                    url,
                    target,
                    tags,
                    tracked_url,
                    source,
                });
            }
            Err(reason) => self.skipped.push(SkippedLink {
                index,
                url,
                reason,
                source,
            }),
        }
    }

    /// Reports the hrefs inside an Outlook conditional comment (`<!--[if mso]>…<![endif]-->`),
    /// left as they are: only Outlook shows them, and the comment is written out unchanged.
    pub(crate) fn conditional_comment(&mut self, comment: &Comment<'_>) {
        let text = comment.text();
        if !is_conditional(&text) {
            return;
        }
        let source = comment.source_location().bytes();
        for raw_href in hrefs_in(&text) {
            self.skipped.push(SkippedLink {
                index: self.seen,
                url: decode_entities(raw_href).into_owned(),
                reason: SkipReason::ConditionalComment,
                source: source.clone(),
            });
            self.seen += 1;
        }
    }

    /// Whether a link is tracked: its target and tags, or why not.
    ///
    /// `ses:no-track` is checked first, so a sender's explicit choice is reported as such. The
    /// limit is checked last, so it counts only links that would otherwise be tracked.
    fn decide(
        &self,
        url: &str,
        no_track: bool,
        tags: Option<&str>,
    ) -> Result<(String, LinkTags), SkipReason> {
        if no_track {
            return Err(SkipReason::NoTrack);
        }
        let Trackable { target } = classify(url, self.syntax)?;
        let tags = match tags {
            Some(list) => LinkTags::parse(&decode_entities(list))
                .map_err(|e| SkipReason::InvalidTags(e.to_string()))?,
            None => LinkTags::new(),
        };
        if self.tracked.len() >= self.max_links {
            return Err(SkipReason::OverLimit(self.max_links));
        }
        Ok((target, tags))
    }
}

/// Whether a comment's text opens an Outlook conditional block: `[if mso]>…`, `[if gte mso
/// 9]>…`. (The `<!--[if !mso]><!-->` form hides nothing: its links are ordinary markup.)
fn is_conditional(text: &str) -> bool {
    let text = text.trim_start();
    text.len() >= 3 && text.as_bytes()[..3].eq_ignore_ascii_case(b"[if") && text.contains('>')
}

/// The raw values of the `href` attributes in a fragment of markup: quoted with `"` or `'`,
/// or unquoted up to whitespace or `>`. A name only counts as `href` where an attribute name
/// can start (after whitespace), so `data-href` does not.
fn hrefs_in(markup: &str) -> Vec<&str> {
    let bytes = markup.as_bytes();
    let mut hrefs = Vec::new();
    let mut at = 0;
    while let Some(found) = find_ignoring_case(&bytes[at..], b"href") {
        let start = at + found;
        at = start + 4;
        if start == 0 || !bytes[start - 1].is_ascii_whitespace() {
            continue;
        }
        let mut i = at;
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let (value_start, value_end) = match bytes.get(i) {
            Some(&quote @ (b'"' | b'\'')) => {
                let Some(len) = bytes[i + 1..].iter().position(|&b| b == quote) else {
                    break;
                };
                (i + 1, i + 1 + len)
            }
            Some(_) => {
                let len = bytes[i..]
                    .iter()
                    .position(|&b| b.is_ascii_whitespace() || b == b'>')
                    .unwrap_or(bytes.len() - i);
                (i, i + len)
            }
            None => break,
        };
        // Both ends are at ASCII bytes (or the end), so they are character boundaries.
        hrefs.push(&markup[value_start..value_end]);
        at = value_end;
    }
    hrefs
}

fn find_ignoring_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_are_found_in_any_quoting_and_only_as_attribute_names() {
        let markup = r#"<v:roundrect HREF="https://a.example/1" data-href="x"><a href = 'https://a.example/2'>
            <area href=https://a.example/3>href=nothing <a href>"#;
        assert_eq!(
            hrefs_in(markup),
            [
                "https://a.example/1",
                "https://a.example/2",
                "https://a.example/3"
            ]
        );
        assert!(is_conditional(" [if gte mso 9]><v:rect/><![endif]"));
        assert!(is_conditional("[IF mso]>"));
        assert!(!is_conditional(" a note about [if mso] "));
    }
}
