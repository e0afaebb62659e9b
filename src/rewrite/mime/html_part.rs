//! Rewriting one HTML part where it stands: out of its transfer encoding, out of its
//! charset, through the HTML rewriter, and back into both.

use super::charset::Charset;
use super::error::MimeError;
use super::part::Part;
use super::report::Untouched;
use super::transfer::TransferEncoding;
use crate::rewrite::{rewrite_str, RewriteOptions, RewriteReport};

/// An HTML part decoded, ready to rewrite.
pub(crate) struct DecodedPart<'a> {
    /// The part.
    pub(crate) part: &'a Part,
    /// Its charset.
    charset: Charset,
    /// Its HTML as text.
    html: String,
}

/// A part rewritten: its new body, in its own charset and transfer encoding (or in
/// quoted-printable, when its own would carry a line longer than SMTP does).
pub(crate) struct RewrittenPart {
    /// The body that replaces the old one.
    pub(crate) body: Vec<u8>,
    /// The encoding `body` is written in.
    pub(crate) encoding: TransferEncoding,
    /// The HTML rewriter's report.
    pub(crate) report: RewriteReport,
}

/// Takes `part` of `message` out of its transfer encoding and charset, or says why it is to
/// be passed through.
pub(crate) fn decode<'a>(part: &'a Part, message: &[u8]) -> Result<DecodedPart<'a>, Untouched> {
    if part.attachment {
        return Err(Untouched::Attachment);
    }
    let charset = Charset::for_label(part.charset.as_deref())?;
    let bytes = part
        .encoding
        .decode(&message[part.body.clone()])
        .map_err(Untouched::TransferEncoding)?;
    let html = charset.decode(&bytes)?.into_owned();
    Ok(DecodedPart {
        part,
        charset,
        html,
    })
}

impl DecodedPart<'_> {
    /// Rewrites the part with `options`: `Ok(Err(_))` when the result cannot be written back
    /// in its charset, so it is passed through; `Err(_)` when its markup cannot be rewritten
    /// safely.
    pub(crate) fn rewrite(
        &self,
        message: &[u8],
        options: &RewriteOptions,
    ) -> Result<Result<RewrittenPart, Untouched>, MimeError> {
        let rewritten = rewrite_str(&self.html, options).map_err(|source| MimeError::Html {
            part: self.part.path.clone(),
            source,
        })?;
        let encoded = match self.charset.encode(&rewritten.html) {
            Ok(encoded) => encoded,
            Err(untouched) => return Ok(Err(untouched)),
        };
        let original = &message[self.part.body.clone()];
        let encoding = self.part.encoding.for_rewritten(&encoded);
        Ok(Ok(RewrittenPart {
            body: encoding.encode(&encoded, original),
            encoding,
            report: rewritten.report,
        }))
    }
}
