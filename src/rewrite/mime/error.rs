//! Why a MIME message could not be rewritten.
//!
//! An HTML part that cannot be rewritten in its own charset is not an error: it is passed
//! through as it is and reported ([`Untouched`](super::Untouched)). An error means the
//! message as a whole is refused, and nothing of it should be sent as rewritten.

use super::part::PartPath;
use crate::rewrite::RewriteError;

/// Why the message could not be rewritten.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MimeError {
    /// The message already carries a `DKIM-Signature`. Rewriting its HTML would break the
    /// signature, so receivers would see a failed DKIM check: rewrite first, then sign.
    #[error(
        "the message carries a DKIM-Signature, which rewriting would break: \
         rewrite the message first, then sign it"
    )]
    DkimSigned,
    /// The message's structure cannot be read: a header that does not parse, a multipart
    /// with no boundary, a missing closing delimiter, nesting deeper than the limit.
    #[error("{part}: {reason}")]
    Malformed {
        /// Which part (`the message`, `part 1.2`).
        part: PartPath,
        /// What is wrong with it.
        reason: String,
    },
    /// The message was to get the one-click unsubscribe headers, but already has a
    /// `List-Unsubscribe` of its own: a second one would leave mail clients to pick one.
    #[error(
        "the message already has a List-Unsubscribe header: remove it to use mailtrack's \
         unsubscribe link, or rewrite without the unsubscribe option"
    )]
    HasListUnsubscribe,
    /// The rewriter refused one HTML part's markup (see [`RewriteError::Html`]).
    #[error("{part}: {source}")]
    Html {
        /// Which part.
        part: PartPath,
        /// What the HTML rewriter said.
        #[source]
        source: RewriteError,
    },
}

impl MimeError {
    /// The part the error is about, when it is about one part.
    pub fn part(&self) -> Option<&PartPath> {
        match self {
            MimeError::DkimSigned | MimeError::HasListUnsubscribe => None,
            MimeError::Malformed { part, .. } | MimeError::Html { part, .. } => Some(part),
        }
    }
}
