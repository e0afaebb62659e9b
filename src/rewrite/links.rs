//! What happens to one `<a>` or `<area>` start tag: its `ses:` attributes are removed, and its
//! href is either replaced by a tracked link or left as it is, and reported either way.

use lol_html::html_content::Element;

use super::href::{classify, decode_entities, Trackable};
use super::report::{SkipReason, SkippedLink, TrackedLink};
use super::{RewriteOptions, UrlSyntax};
use crate::link::{LinkSigner, LinkTags, MessageId};

/// Marks a link the sender does not want tracked, as in SES.
const NO_TRACK: &str = "ses:no-track";

/// The link's tags, `k:v;k2:v2`, as in SES.
const TAGS: &str = "ses:tags";

/// Rewrites the links of one message, counting them against the limit, and keeps the record.
#[derive(Debug)]
pub(crate) struct LinkTracker {
    signer: LinkSigner,
    message_id: MessageId,
    max_links: usize,
    syntax: UrlSyntax,
    /// How many links (`<a>` and `<area>` with an href) have been seen so far.
    seen: usize,
    /// The links tracked so far, in document order.
    pub(crate) tracked: Vec<TrackedLink>,
    /// The links left alone so far, in document order.
    pub(crate) skipped: Vec<SkippedLink>,
}

impl LinkTracker {
    /// A tracker for the message and limits in `options`.
    pub(crate) fn new(options: &RewriteOptions) -> LinkTracker {
        LinkTracker {
            signer: options.signer.clone(),
            message_id: options.message_id.clone(),
            max_links: options.max_links,
            syntax: options.url_syntax,
            seen: 0,
            tracked: Vec::new(),
            skipped: Vec::new(),
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
        match self.decide(&url, no_track, tags.as_deref()) {
            Ok((target, tags)) => {
                let tracked_url =
                    self.signer
                        .click_url_for_normalized(&target, &self.message_id, &tags);
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
