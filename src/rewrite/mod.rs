//! The HTML rewriter: every link a recipient can click goes through the tracking domain, an
//! open pixel is added, and nothing else in the message changes.
//!
//! Senders run it just before sending. What it promises:
//!
//! - **Tracked:** the `href` of every `<a>` and `<area>` (any case) whose value, with its HTML
//!   entities decoded, is an absolute http(s) URL valid under RFC 3986 (or any URL a browser
//!   accepts, with [`UrlSyntax::Browser`]). The click goes where the link went: `&amp;` in an
//!   href means `&` in the destination, as a browser reads it.
//! - **Left as it is, and reported with the reason:** other schemes (`mailto:`, `tel:`, …),
//!   relative and `#fragment` links, empty hrefs, template placeholders (`{{…}}`, `{%…%}`,
//!   `*|…|*`, `%%…%%`, `[[…]]`), links with `ses:no-track`, links with malformed `ses:tags`,
//!   and links past [`RewriteOptions::max_links`]. Links inside comments, `<script>`,
//!   `<style>` and `<textarea>` are not links to a browser and are not touched; but those in
//!   Outlook's conditional comments (`<!--[if mso]>…<![endif]-->`, where VML buttons live)
//!   are links to Outlook, and are reported ([`SkipReason::ConditionalComment`]).
//! - **Unsubscribe:** with [`RewriteOptions::unsubscribe`], an href that is
//!   `{{unsubscribe}}` or SES's `{{amazonSESUnsubscribeUrl}}` becomes the message's signed
//!   one-click unsubscribe link (`/US0/…`), not click-tracked on top, and is reported in
//!   [`RewriteReport::unsubscribe`]. Without it, they are placeholders like any other.
//! - **Unchanged:** every byte outside the rewritten start tags and the added pixel. lol_html
//!   writes every token it is not asked to modify exactly as it read it; the rewriter only
//!   modifies the start tags of links (to set the href or drop `ses:` attributes), the text
//!   holding a `{{ses:openTracker}}` marker, and adds the pixel.
//! - **Input is UTF-8.** HTML mail is nearly always UTF-8; convert anything else first. Bytes
//!   that are not UTF-8 pass through as they are, except in text when the rewriter looks for
//!   the marker there (see [`Rewriter`]).
//!
//! ```
//! use mailtrack::link::MessageId;
//! use mailtrack::rewrite::{rewrite_str, RewriteOptions};
//!
//! let options = RewriteOptions::new(mailtrack::testing::fixed_signer(), MessageId::new("m-1")?);
//! let html = r#"<body><a href="https://example.com/?a=1&amp;b=2">Go</a>
//! <a href="mailto:hi@example.com">Mail us</a></body>"#;
//! let rewritten = rewrite_str(html, &options)?;
//! assert_eq!(rewritten.report.tracked[0].target, "https://example.com/?a=1&b=2");
//! assert_eq!(rewritten.report.skipped[0].url, "mailto:hi@example.com");
//! assert!(rewritten.html.contains("<a href=\"mailto:hi@example.com\">"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - [`options`]: what a sender can choose ([`RewriteOptions`], [`UrlSyntax`],
//!   [`PixelPlacement`]).
//! - `href`: whether one href is trackable, and why not.
//! - `links`: what happens to one `<a>` or `<area>` start tag.
//! - [`pixel`]: the open pixel's markup and the `{{ses:openTracker}}` marker.
//! - [`report`]: what was tracked and what was not ([`RewriteReport`], [`SkipReason`]).
//! - [`rewriter`]: the streaming rewriter over lol_html ([`Rewriter`]).
//! - [`error`]: why a rewrite fails ([`RewriteError`]).
//! - [`mime`]: whole MIME messages, each HTML part rewritten in its own charset and
//!   transfer encoding ([`mime::rewrite_mime`]).

pub mod error;
mod href;
mod links;
pub mod mime;
pub mod options;
pub mod pixel;
pub mod report;
pub mod rewriter;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};

pub use error::RewriteError;
pub use options::{PixelPlacement, RewriteOptions, UrlSyntax, UNSUBSCRIBE_PLACEHOLDERS};
pub use pixel::{pixel_html, OPEN_TRACKER_MARKER};
pub use report::{
    PixelPosition, RewriteReport, SkipReason, SkippedLink, TrackedLink, UnsubscribeLink,
};
pub use rewriter::Rewriter;

/// How much of a stream is read at a time: large enough that per-call overhead vanishes,
/// small enough to stay in cache.
const READ_CHUNK: usize = 64 * 1024;

/// A rewritten message and its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten<T> {
    /// The rewritten HTML.
    pub html: T,
    /// What was tracked and what was left as it was.
    pub report: RewriteReport,
}

/// Rewrites a whole message held in a string.
pub fn rewrite_str(
    html: &str,
    options: &RewriteOptions,
) -> Result<Rewritten<String>, RewriteError> {
    let Rewritten { html, report } = rewrite_bytes(html.as_bytes(), options)?;
    // lol_html writes the input's own bytes, cut only at token boundaries, and what we add
    // is UTF-8, so UTF-8 input gives UTF-8 output.
    let html = String::from_utf8(html).expect("UTF-8 in, UTF-8 out");
    Ok(Rewritten { html, report })
}

/// Rewrites a whole message held in bytes (UTF-8).
pub fn rewrite_bytes(
    html: &[u8],
    options: &RewriteOptions,
) -> Result<Rewritten<Vec<u8>>, RewriteError> {
    let output = Vec::with_capacity(html.len() + 512 + html.len() / 8);
    // Looking for the marker in the text costs lol_html as much as all the rest; most messages
    // have none, and a byte search for it is nearly free.
    let mut rewriter = if memchr::memmem::find(html, OPEN_TRACKER_MARKER.as_bytes()).is_some() {
        Rewriter::new(output, options)
    } else {
        Rewriter::without_marker(output, options)
    };
    rewriter.write(html)?;
    let (html, report) = rewriter.end()?;
    Ok(Rewritten { html, report })
}

/// Rewrites a message read from `reader` into `writer`, a piece at a time, and returns the
/// report. `writer` is flushed at the end.
pub fn rewrite_stream<R: Read, W: Write>(
    mut reader: R,
    writer: W,
    options: &RewriteOptions,
) -> Result<RewriteReport, RewriteError> {
    let mut rewriter = Rewriter::new(writer, options);
    let mut buffer = vec![0; READ_CHUNK];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RewriteError::Read(e)),
        };
        rewriter.write(&buffer[..read])?;
    }
    let (_writer, report) = rewriter.end()?;
    Ok(report)
}
