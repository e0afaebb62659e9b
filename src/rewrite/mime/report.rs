//! What the MIME rewriter did: for each HTML part, where it is, how it is written, and
//! either the HTML rewriter's report or why it was passed through untouched.

use std::fmt;

use serde::Serialize;

use super::part::PartPath;
use super::transfer::TransferEncoding;
use crate::rewrite::{PixelPosition, RewriteReport};

/// What was done with one message's HTML parts, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MimeReport {
    /// Every `text/html` part, rewritten or not.
    pub html_parts: Vec<HtmlPartReport>,
    /// The part the open pixel went into (IMAP part number), if any.
    pub pixel_part: Option<PartPath>,
    /// The unsubscribe link put in `List-Unsubscribe`, with the unsubscribe option (absent
    /// from the JSON without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_unsubscribe: Option<String>,
}

impl MimeReport {
    /// How many links were tracked, over every part.
    pub fn tracked(&self) -> usize {
        self.rewritten().map(|r| r.tracked.len()).sum()
    }

    /// How many links were left as they were, over every rewritten part.
    pub fn skipped(&self) -> usize {
        self.rewritten().map(|r| r.skipped.len()).sum()
    }

    /// The HTML rewriter's report of each rewritten part.
    pub fn rewritten(&self) -> impl Iterator<Item = &RewriteReport> {
        self.html_parts
            .iter()
            .filter_map(|part| match &part.outcome {
                PartOutcome::Rewritten { report } => Some(report),
                PartOutcome::Untouched { .. } => None,
            })
    }

    /// Where the pixel went in its part, if it went anywhere.
    pub fn pixel(&self) -> Option<PixelPosition> {
        self.rewritten().find_map(|report| report.pixel)
    }
}

/// One HTML part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HtmlPartReport {
    /// Where it is, as an IMAP part number (`1.2`; `""` for a message that is one HTML part).
    pub part: PartPath,
    /// Its `charset` parameter as written, if it has one.
    pub charset: Option<String>,
    /// Its Content-Transfer-Encoding, as written in the output.
    pub transfer_encoding: TransferEncoding,
    /// The part's own encoding, when it was written in another: a 7bit or 8bit part whose
    /// rewritten lines passed SMTP's 998 octets is written in quoted-printable, and its
    /// `Content-Transfer-Encoding` header says so (the one header the rewriter changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reencoded_from: Option<TransferEncoding>,
    /// What was done with it.
    #[serde(flatten)]
    pub outcome: PartOutcome,
}

/// Whether a part was rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PartOutcome {
    /// Rewritten, in its own charset and transfer encoding.
    Rewritten {
        /// The HTML rewriter's report on it, as `mailtrack rewrite` writes it.
        report: RewriteReport,
    },
    /// Passed through byte for byte.
    Untouched {
        /// Why.
        reason: Untouched,
    },
}

/// Why an HTML part was passed through as it was. Its links are then not tracked: send it as
/// it is, or convert it (to UTF-8, say) and rewrite again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Untouched {
    /// A charset whose bytes are not ASCII's for ASCII text, such as ISO-2022-JP or UTF-16
    /// (the detail): its markup cannot be rewritten in place.
    NotAsciiCompatible(String),
    /// A charset label the Encoding Standard does not know (the detail).
    UnknownCharset(String),
    /// Bytes that are not valid in the part's charset (the detail): decoding would replace
    /// them, and the part would not come back the same.
    InvalidInCharset(String),
    /// The rewritten text has a character the charset cannot write (the detail).
    Unmappable(String),
    /// The body is not valid in its transfer encoding, or the encoding is not one the
    /// rewriter writes (the detail says which).
    TransferEncoding(String),
    /// `Content-Disposition: attachment`: an HTML file the recipient saves, not the message
    /// they read.
    Attachment,
}

impl fmt::Display for Untouched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untouched::NotAsciiCompatible(name) => {
                write!(
                    f,
                    "charset {name} is not ASCII-compatible, so it is not rewritten"
                )
            }
            Untouched::UnknownCharset(label) => write!(f, "unknown charset {label:?}"),
            Untouched::InvalidInCharset(name) => write!(f, "its bytes are not valid {name}"),
            Untouched::Unmappable(name) => {
                write!(f, "the rewritten HTML has a character {name} cannot write")
            }
            Untouched::TransferEncoding(why) => write!(f, "{why}"),
            Untouched::Attachment => write!(f, "an attachment, not the message's body"),
        }
    }
}
