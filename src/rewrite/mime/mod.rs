//! Whole MIME messages: every `text/html` part rewritten where it stands, and every other
//! byte of the message passed through as it was.
//!
//! What it promises:
//!
//! - **Every HTML part**, at any depth of `multipart/*`, is rewritten in its own charset and
//!   transfer encoding (quoted-printable, base64, 7bit, 8bit); quoted-printable lines stay
//!   within 76 characters. Its headers are not touched, so they still say what it is.
//! - **Byte for byte** outside the rewritten bodies: headers, the other parts, boundaries,
//!   preambles and epilogues. The structure is read as ranges of the input
//!   ([`part`]), and the output is the input with those bodies replaced.
//! - **One pixel per message**, in the HTML part the reader sees ([`reader`]): the last HTML
//!   alternative of a `multipart/alternative`, the root of a `multipart/related`. The other
//!   HTML parts get their links tracked and no pixel.
//! - **ASCII-compatible charsets** (UTF-8, GB18030/GBK/GB2312, Big5, Shift_JIS, EUC-*,
//!   ISO-8859-*, Windows-125x) are rewritten in their own encoding. Others (ISO-2022-JP,
//!   UTF-16), unknown labels, bytes not valid in their charset and HTML attachments are
//!   passed through untouched and reported ([`Untouched`]).
//! - **Signed mail is refused:** a message with a `DKIM-Signature` gets
//!   [`MimeError::DkimSigned`]. Rewrite first, then sign.
//! - **One-click unsubscribe**, with [`RewriteOptions::unsubscribe`]: `List-Unsubscribe` and
//!   `List-Unsubscribe-Post` (RFC 8058) at the end of the top-level headers, and the HTML
//!   parts' unsubscribe placeholders filled, all with the one link ([`unsubscribe`]). A
//!   message with a `List-Unsubscribe` of its own is refused
//!   ([`MimeError::HasListUnsubscribe`]).
//!
//! ```
//! use mailtrack::link::MessageId;
//! use mailtrack::rewrite::mime::rewrite_mime;
//! use mailtrack::rewrite::RewriteOptions;
//!
//! let options = RewriteOptions::new(mailtrack::testing::fixed_signer(), MessageId::new("m-1")?);
//! let message = "Content-Type: multipart/alternative; boundary=b\r\n\r\n\
//!     --b\r\nContent-Type: text/plain\r\n\r\nhttps://example.com/\r\n\
//!     --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
//!     <a href=\"https://example.com/\">Go</a>\r\n--b--\r\n";
//! let rewritten = rewrite_mime(message.as_bytes(), &options)?;
//! assert_eq!(rewritten.report.tracked(), 1);
//! assert_eq!(rewritten.report.pixel_part.unwrap().number(), "2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - [`part`]: the message's structure, as ranges of its bytes; headers read by `mailparse`.
//! - `boundary`: a multipart body's delimiter lines.
//! - [`transfer`]: Content-Transfer-Encoding, out and back in ([`TransferEncoding`]).
//! - `charset`: a part's charset, out and back in (`encoding_rs`).
//! - `html_part`: one HTML part, decoded, rewritten, encoded.
//! - `header`: a part's `Content-Transfer-Encoding` set in place, for a 7bit or 8bit part
//!   whose rewritten lines would pass SMTP's 998 octets (then written in quoted-printable).
//! - [`reader`]: which part the reader sees, for the pixel.
//! - [`report`]: what was done with each HTML part ([`MimeReport`]).
//! - [`unsubscribe`]: the one-click unsubscribe headers.
//! - [`error`]: why a message is refused ([`MimeError`]).

mod boundary;
mod charset;
pub mod error;
mod header;
mod html_part;
pub mod part;
pub mod reader;
pub mod report;
#[cfg(test)]
mod tests;
pub mod transfer;
pub mod unsubscribe;

pub use error::MimeError;
pub use part::{PartPath, DEFAULT_MAX_MIME_DEPTH};
pub use report::{HtmlPartReport, MimeReport, PartOutcome, Untouched};
pub use transfer::TransferEncoding;

use super::{PixelPlacement, RewriteOptions};
use part::Part;

/// A rewritten MIME message and its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenMime {
    /// The whole message, rewritten.
    pub message: Vec<u8>,
    /// What was done with each HTML part.
    pub report: MimeReport,
}

/// Rewrites every HTML part of the MIME message `message`, the open pixel going into the one
/// the reader sees.
pub fn rewrite_mime(message: &[u8], options: &RewriteOptions) -> Result<RewrittenMime, MimeError> {
    let parsed = part::parse(message)?;
    if parsed.dkim_signed {
        return Err(MimeError::DkimSigned);
    }
    let html_parts = parsed.root.html_parts();
    let decoded: Vec<_> = html_parts
        .iter()
        .map(|part| html_part::decode(part, message))
        .collect();
    let rewritable = |candidate: &Part| {
        decoded
            .iter()
            .any(|d| d.as_ref().is_ok_and(|d| d.part.path == candidate.path))
    };
    let pixel_part = reader::reader_html(&parsed.root, &rewritable).map(|p| p.path.clone());
    let mut without_pixel = options.clone();
    without_pixel.pixel = PixelPlacement::Omitted;

    let mut output = Vec::with_capacity(message.len() + message.len() / 4 + 1024);
    let mut copied = 0;
    let mut report = MimeReport::default();
    if options.unsubscribe {
        unsubscribe::check_none_yet(parsed.list_unsubscribe)?;
        // Every part's body starts after the top-level headers, so the bodies below are
        // copied and replaced after this as before.
        copied = unsubscribe::insertion_point(message, parsed.body_start);
        output.extend_from_slice(&message[..copied]);
        let url = options.unsubscribe_url();
        unsubscribe::push_headers(message, &url, &mut output);
        report.list_unsubscribe = Some(url);
    }
    for (part, decoded) in html_parts.iter().zip(decoded) {
        let rewritten = match decoded {
            Ok(decoded) => {
                let options = match pixel_part.as_ref() == Some(&part.path) {
                    true => options,
                    false => &without_pixel,
                };
                decoded.rewrite(message, options)?
            }
            Err(untouched) => Err(untouched),
        };
        // The encoding the part is written in: its own, unless its lines grew too long.
        let mut written = part.encoding;
        let outcome = match rewritten {
            Ok(rewritten) => {
                // Where the part's headers are in `output` once copied: only the message's
                // own headers can start before `copied` (when unsubscribe headers went in
                // among them), and `output` starts with them.
                let headers_at = match part.header_start.checked_sub(copied) {
                    Some(ahead) => output.len() + ahead,
                    None => part.header_start,
                };
                output.extend_from_slice(&message[copied..part.body.start]);
                if rewritten.encoding != part.encoding {
                    header::set_transfer_encoding(
                        &mut output,
                        headers_at,
                        rewritten.encoding.name(),
                    );
                    written = rewritten.encoding;
                }
                output.extend_from_slice(&rewritten.body);
                copied = part.body.end;
                if rewritten.report.pixel.is_some() {
                    report.pixel_part = Some(part.path.clone());
                }
                PartOutcome::Rewritten {
                    report: rewritten.report,
                }
            }
            Err(reason) => PartOutcome::Untouched { reason },
        };
        report.html_parts.push(HtmlPartReport {
            part: part.path.clone(),
            charset: part.charset.clone(),
            transfer_encoding: written,
            reencoded_from: (written != part.encoding).then_some(part.encoding),
            outcome,
        });
    }
    output.extend_from_slice(&message[copied..]);
    Ok(RewrittenMime {
        message: output,
        report,
    })
}
