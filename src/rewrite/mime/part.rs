//! A MIME message's structure: its parts, each as ranges into the message's bytes, with what
//! the rewriter needs from its headers. Nothing is copied or decoded here; the bytes stay
//! where they are, so what is not rewritten is passed through exactly.
//!
//! Headers are read with `mailparse` (folded lines, encoded words, parameters with quotes);
//! multipart bodies are cut by [`delimit`], which gives the byte offsets that a tree of
//! decoded parts would not.

use std::fmt;
use std::ops::Range;

use mailparse::{parse_content_type, parse_headers, MailHeaderMap};
use serde::{Serialize, Serializer};

use super::boundary::delimit;
use super::error::MimeError;
use super::transfer::TransferEncoding;

/// The deepest nesting of multiparts read: real mail nests three or four deep (mixed ▸
/// alternative ▸ related); 32 leaves room for any sender, and bounds the work a hostile
/// message can ask for.
pub const DEFAULT_MAX_MIME_DEPTH: usize = 32;

/// Where a part is in a message, as IMAP numbers parts: `1.2` is the second part of the
/// first part. The empty path is the message itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PartPath(Vec<usize>);

impl PartPath {
    /// The path of this part's `index`th child (from 0; written from 1).
    fn child(&self, index: usize) -> PartPath {
        let mut numbers = self.0.clone();
        numbers.push(index + 1);
        PartPath(numbers)
    }

    /// The IMAP part number (`1.2`), or `""` for the message itself.
    pub fn number(&self) -> String {
        let numbers: Vec<String> = self.0.iter().map(usize::to_string).collect();
        numbers.join(".")
    }
}

impl fmt::Display for PartPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.is_empty() {
            true => write!(f, "the message"),
            false => write!(f, "MIME part {}", self.number()),
        }
    }
}

impl Serialize for PartPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.number())
    }
}

/// One part of a message: its place, its headers' meaning, where its body lies, and its
/// children when it is a multipart.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// Where it is.
    pub(crate) path: PartPath,
    /// Its media type, lower case (`text/html`); `text/plain` when it has no Content-Type.
    pub(crate) media_type: String,
    /// Its `charset` parameter as written, if any.
    pub(crate) charset: Option<String>,
    /// Its Content-Transfer-Encoding.
    pub(crate) encoding: TransferEncoding,
    /// `Content-Disposition: attachment`: a file, not what the reader reads.
    pub(crate) attachment: bool,
    /// Where its headers start in the whole message (they end where `body` starts).
    pub(crate) header_start: usize,
    /// Its body, as a range of the whole message.
    pub(crate) body: Range<usize>,
    /// Its parts, when it is a multipart.
    pub(crate) children: Vec<Part>,
}

/// What the top of the message says, besides its structure.
#[derive(Debug)]
pub(crate) struct Message {
    /// The top-level part (the message itself).
    pub(crate) root: Part,
    /// Whether the top-level headers have a `DKIM-Signature`.
    pub(crate) dkim_signed: bool,
    /// Whether the top-level headers have a `List-Unsubscribe`.
    pub(crate) list_unsubscribe: bool,
    /// Where the top-level body starts (after the blank line that ends the headers).
    pub(crate) body_start: usize,
}

/// Reads the structure of `message`.
pub(crate) fn parse(message: &[u8]) -> Result<Message, MimeError> {
    let path = PartPath::default();
    let (headers, body_start) = parse_headers(message).map_err(|e| MimeError::Malformed {
        part: path.clone(),
        reason: format!("its headers do not parse: {e}"),
    })?;
    if headers.is_empty() {
        return Err(MimeError::Malformed {
            part: path,
            reason: "it has no headers; a MIME message starts with them".to_owned(),
        });
    }
    let dkim_signed = headers.get_first_header("DKIM-Signature").is_some();
    let list_unsubscribe = headers.get_first_header("List-Unsubscribe").is_some();
    let root = part(message, 0..message.len(), path, 0)?;
    Ok(Message {
        root,
        dkim_signed,
        list_unsubscribe,
        body_start,
    })
}

/// Reads the part that is `message[range]`, at `depth` multiparts down.
fn part(
    message: &[u8],
    range: Range<usize>,
    path: PartPath,
    depth: usize,
) -> Result<Part, MimeError> {
    let malformed = |reason: String| MimeError::Malformed {
        part: path.clone(),
        reason,
    };
    let (headers, body_offset) = parse_headers(&message[range.clone()])
        .map_err(|e| malformed(format!("its headers do not parse: {e}")))?;
    if let Some(bad) = headers.iter().find(|h| !is_field_name(h.get_key_raw())) {
        let line = String::from_utf8_lossy(bad.get_key_raw());
        return Err(malformed(format!(
            "{:?} is not a header line (a field name, then a colon)",
            line.trim_end()
        )));
    }
    let content_type = headers
        .get_first_value("Content-Type")
        .map(|value| parse_content_type(&value));
    let (media_type, charset, boundary) = match content_type {
        Some(ct) => (
            ct.mimetype,
            ct.params.get("charset").cloned(),
            ct.params.get("boundary").cloned(),
        ),
        None => ("text/plain".to_owned(), None, None),
    };
    let encoding = TransferEncoding::from_header(
        headers
            .get_first_value("Content-Transfer-Encoding")
            .as_deref(),
    );
    let attachment = headers
        .get_first_value("Content-Disposition")
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("attachment")
        });
    let header_start = range.start;
    let body = range.start + body_offset..range.end;
    let mut children = Vec::new();
    if media_type.starts_with("multipart/") {
        if depth >= DEFAULT_MAX_MIME_DEPTH {
            return Err(malformed(format!(
                "multiparts nest deeper than {DEFAULT_MAX_MIME_DEPTH}"
            )));
        }
        let boundary = boundary
            .filter(|b| !b.is_empty())
            .ok_or_else(|| malformed(format!("{media_type} has no boundary parameter")))?;
        let delimited = delimit(message, body.clone(), &boundary).ok_or_else(|| {
            malformed(format!(
                "{media_type}: no delimiter line `--{boundary}` in its body"
            ))
        })?;
        if !delimited.closed {
            return Err(malformed(format!(
                "{media_type}: the closing delimiter `--{boundary}--` is missing"
            )));
        }
        for (index, child) in delimited.parts.into_iter().enumerate() {
            children.push(part(message, child, path.child(index), depth + 1)?);
        }
    }
    Ok(Part {
        path,
        media_type,
        charset,
        encoding,
        attachment,
        header_start,
        body,
        children,
    })
}

/// Whether `name` is a header field name (RFC 5322, section 2.2): printable ASCII but the
/// colon. `mailparse` takes a line with no colon as a name with no value; that is no header.
fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':')
}

impl Part {
    /// Every `text/html` part at or below this one, in document order. Parts inside an
    /// attached message (`message/rfc822`) are someone else's mail and are not looked in.
    pub(crate) fn html_parts(&self) -> Vec<&Part> {
        let mut found = Vec::new();
        self.collect_html(&mut found);
        found
    }

    fn collect_html<'a>(&'a self, found: &mut Vec<&'a Part>) {
        if self.media_type == "text/html" {
            found.push(self);
        }
        for child in &self.children {
            child.collect_html(found);
        }
    }
}
