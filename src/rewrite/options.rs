//! What the rewriter is told: which message, which signer, and the choices a sender can make.

use crate::config::{Config, ConfigError, DEFAULT_MAX_LINKS};
use crate::link::{LinkSigner, LinkTags, MessageId, MessageStamp, SendTime};

/// How the rewriter is to rewrite one message.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    /// Signs the click links and the open pixel.
    pub signer: LinkSigner,
    /// The message every link records.
    pub message_id: MessageId,
    /// When the message is sent, signed into every link and the pixel (version 2 links).
    /// The time [`RewriteOptions::new`] was called unless set.
    pub send_time: SendTime,
    /// The message's tags (SES's `mail.tags`), signed into every link and the pixel. None
    /// unless set.
    pub message_tags: LinkTags,
    /// The most links tracked; later trackable links are left as they are and reported.
    /// [`DEFAULT_MAX_LINKS`] unless set.
    pub max_links: usize,
    /// Which hrefs count as valid URLs. [`UrlSyntax::Rfc3986`] unless set.
    pub url_syntax: UrlSyntax,
    /// Where the open pixel goes when the message has no `{{ses:openTracker}}`.
    /// [`PixelPlacement::BodyEnd`] unless set.
    pub pixel: PixelPlacement,
    /// Whether the message gets a one-click unsubscribe link ([`Self::unsubscribe_url`]):
    /// hrefs that are [`UNSUBSCRIBE_PLACEHOLDERS`] become it, and a MIME message gets
    /// `List-Unsubscribe` and `List-Unsubscribe-Post` (RFC 8058). Off unless set: then the
    /// placeholders are left for the sending platform, and reported as placeholders.
    pub unsubscribe: bool,
}

/// The hrefs that [`RewriteOptions::unsubscribe`] fills with the message's unsubscribe link:
/// ours, and SES's, so that templates written for SES work unchanged.
pub const UNSUBSCRIBE_PLACEHOLDERS: [&str; 2] = ["{{unsubscribe}}", "{{amazonSESUnsubscribeUrl}}"];

impl RewriteOptions {
    /// Options for `message_id` with every default: sent now, with no message tags.
    pub fn new(signer: LinkSigner, message_id: MessageId) -> RewriteOptions {
        RewriteOptions {
            signer,
            message_id,
            send_time: SendTime::now(),
            message_tags: LinkTags::new(),
            max_links: DEFAULT_MAX_LINKS,
            url_syntax: UrlSyntax::default(),
            pixel: PixelPlacement::default(),
            unsubscribe: false,
        }
    }

    /// Options for `message_id` from the configuration: its signer (which loads the key ring)
    /// and its `tracking.max_links`.
    pub fn from_config(config: &Config, message_id: MessageId) -> Result<Self, ConfigError> {
        let mut options = RewriteOptions::new(config.signer()?, message_id);
        options.max_links = config.tracking.max_links;
        Ok(options)
    }

    /// The message's one-click unsubscribe link (`/US0/…`), signed like its other links.
    pub fn unsubscribe_url(&self) -> String {
        self.signer
            .unsubscribe_url(&self.stamp())
            // `stamp` always has a send time, so it is always version 2's.
            .expect("a rewrite's stamp is version 2")
    }

    /// What every link and the pixel of the message carry: its id, send time and tags.
    pub fn stamp(&self) -> MessageStamp {
        MessageStamp::new(
            self.message_id.clone(),
            self.send_time,
            self.message_tags.clone(),
        )
    }
}

/// Which hrefs are tracked, by their syntax.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UrlSyntax {
    /// Only hrefs that are valid RFC 3986 URIs (after entity decoding and trimming the
    /// surrounding whitespace). The others are left as they are and reported, as SES does:
    /// the sender sees the broken link in the report and fixes it at the source.
    #[default]
    Rfc3986,
    /// Also hrefs that only a browser's (WHATWG) parser accepts, such as one with a space or a
    /// non-ASCII character. The click redirects to the URL the browser would have requested
    /// anyway, so the recipient lands in the same place.
    Browser,
}

/// Where the open pixel goes when the message has no `{{ses:openTracker}}` before it.
///
/// Whatever comes first wins: a marker in the text before `<body>` (or before `</body>`)
/// takes the pixel, and any later marker is removed, so a message has exactly one pixel.
/// A message with neither a marker nor the body tag gets it at the very end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PixelPlacement {
    /// Just before `</body>`, where it does not move the layout.
    #[default]
    BodyEnd,
    /// Just after `<body>`: Gmail clips messages over 102 KB and does not load what it
    /// clipped, so a long message's bottom pixel would never be fetched there.
    BodyStart,
    /// No pixel at all, and any `{{ses:openTracker}}` removed: for the other HTML parts of a
    /// MIME message, which gets one pixel, in the part its reader sees.
    Omitted,
}
