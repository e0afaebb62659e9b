//! Content-Transfer-Encoding: taking an HTML part's body out of it, and putting the
//! rewritten HTML back into the same one, with the crates that do it (`quoted_printable`,
//! `base64`), never by hand.
//!
//! The part keeps its look: its line ending (CRLF, or LF in a message written with LF),
//! base64's line length, and quoted-printable's 76-character limit (RFC 2045, section 6.7).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

/// How a part's body is written in the message; in JSON, as its header writes it (`7bit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// `7bit`, the default when there is no header.
    SevenBit,
    /// `8bit`.
    EightBit,
    /// `binary`.
    Binary,
    /// `quoted-printable`.
    QuotedPrintable,
    /// `base64`.
    Base64,
    /// Anything else (such as `x-uuencode`): the part is passed through untouched.
    Other,
}

impl Serialize for TransferEncoding {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The longest line SMTP carries, in octets before its CRLF (RFC 5321, section 4.5.3.1.6;
/// RFC 5322, section 2.1.1). Tracked links are longer than the links they replace, so a
/// 7bit or 8bit part whose lines were near this may pass it once rewritten; such a part is
/// written in quoted-printable instead (see [`TransferEncoding::for_rewritten`]), since a
/// relay may otherwise cut the line anywhere, a link's MAC included.
pub const MAX_LINE_OCTETS: usize = 998;

/// The longest line base64 may write (RFC 2045, section 6.8), and the length used when the
/// part's own cannot be told (a body of one short line).
const BASE64_LINE: usize = 76;

impl TransferEncoding {
    /// The encoding a `Content-Transfer-Encoding` value names (any case, with white space).
    pub(crate) fn from_header(value: Option<&str>) -> TransferEncoding {
        let Some(value) = value else {
            return TransferEncoding::SevenBit;
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "7bit" | "" => TransferEncoding::SevenBit,
            "8bit" => TransferEncoding::EightBit,
            "binary" => TransferEncoding::Binary,
            "quoted-printable" => TransferEncoding::QuotedPrintable,
            "base64" => TransferEncoding::Base64,
            _ => TransferEncoding::Other,
        }
    }

    /// The body's content: `None` when it is not valid in its encoding (`why` in the error).
    pub(crate) fn decode(self, body: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            TransferEncoding::SevenBit | TransferEncoding::EightBit | TransferEncoding::Binary => {
                Ok(body.to_vec())
            }
            TransferEncoding::QuotedPrintable => {
                quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
                    .map_err(|e| format!("its quoted-printable does not decode: {e}"))
            }
            TransferEncoding::Base64 => {
                let compact: Vec<u8> = body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                STANDARD
                    .decode(compact)
                    .map_err(|e| format!("its base64 does not decode: {e}"))
            }
            TransferEncoding::Other => {
                Err("its transfer encoding is not one the rewriter writes".to_owned())
            }
        }
    }

    /// `content` written in this encoding, in the look of `original` (the body it replaces).
    pub(crate) fn encode(self, content: &[u8], original: &[u8]) -> Vec<u8> {
        let lf_only = uses_lf_only(original);
        let ends_with_newline = original.ends_with(b"\n");
        let mut encoded = match self {
            // The HTML's own line endings are its content; nothing to add.
            TransferEncoding::SevenBit
            | TransferEncoding::EightBit
            | TransferEncoding::Binary
            | TransferEncoding::Other => return content.to_vec(),
            TransferEncoding::QuotedPrintable => {
                // Text mode turns each CRLF into a hard line break, so line breaks of either
                // kind become CRLF first (a lone LF would otherwise be written `=0A`).
                let text = to_crlf(content);
                quoted_printable::encode(text)
            }
            TransferEncoding::Base64 => {
                let line = base64_line_length(original);
                let flat = STANDARD.encode(content);
                let mut wrapped = Vec::with_capacity(flat.len() + flat.len() / line * 2 + 2);
                for (i, chunk) in flat.as_bytes().chunks(line).enumerate() {
                    if i > 0 {
                        wrapped.extend_from_slice(b"\r\n");
                    }
                    wrapped.extend_from_slice(chunk);
                }
                wrapped
            }
        };
        if ends_with_newline && !encoded.ends_with(b"\n") {
            encoded.extend_from_slice(b"\r\n");
        }
        if lf_only {
            encoded = crlf_to_lf(&encoded);
        }
        encoded
    }

    /// The encoding a part that came in this one is written in once rewritten as `content`:
    /// the same, but for a 7bit or 8bit part with a line past [`MAX_LINE_OCTETS`], which is
    /// written in quoted-printable. (`binary` has no line limit: it needs SMTP's BINARYMIME.)
    pub(crate) fn for_rewritten(self, content: &[u8]) -> TransferEncoding {
        let limited = matches!(
            self,
            TransferEncoding::SevenBit | TransferEncoding::EightBit
        );
        match limited && longest_line(content) > MAX_LINE_OCTETS {
            true => TransferEncoding::QuotedPrintable,
            false => self,
        }
    }

    /// Its name in a `Content-Transfer-Encoding` header.
    pub fn name(self) -> &'static str {
        match self {
            TransferEncoding::SevenBit => "7bit",
            TransferEncoding::EightBit => "8bit",
            TransferEncoding::Binary => "binary",
            TransferEncoding::QuotedPrintable => "quoted-printable",
            TransferEncoding::Base64 => "base64",
            TransferEncoding::Other => "other",
        }
    }
}

/// The length of the longest line of `content`, in octets, without its line ending.
fn longest_line(content: &[u8]) -> usize {
    content
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line).len())
        .max()
        .unwrap_or(0)
}

/// Whether `body` breaks its lines with LF alone (a message written on Unix, not yet on the
/// wire): it has an LF, and none after a CR.
fn uses_lf_only(body: &[u8]) -> bool {
    memchr::memchr(b'\n', body).is_some() && memchr::memmem::find(body, b"\r\n").is_none()
}

/// The length of the first line of a base64 body, if it is a sensible one; else 76.
fn base64_line_length(body: &[u8]) -> usize {
    let first = memchr::memchr2(b'\r', b'\n', body).unwrap_or(body.len());
    match first {
        4..=BASE64_LINE if first.is_multiple_of(4) && first < body.len() => first,
        _ => BASE64_LINE,
    }
}

/// `text` with every line ending (LF, or CRLF) as CRLF.
fn to_crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    let mut previous = 0u8;
    for &byte in text {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// `text` with every CRLF as LF.
fn crlf_to_lf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte == b'\r' && bytes.peek() == Some(&b'\n') {
            continue;
        }
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_in_any_case() {
        assert_eq!(
            TransferEncoding::from_header(Some(" Quoted-Printable ")),
            TransferEncoding::QuotedPrintable
        );
        assert_eq!(
            TransferEncoding::from_header(None),
            TransferEncoding::SevenBit
        );
        assert_eq!(
            TransferEncoding::from_header(Some("x-uuencode")),
            TransferEncoding::Other
        );
    }

    #[test]
    fn quoted_printable_keeps_lines_within_76_and_its_line_endings() {
        let html = format!("<p>{}</p>\n<a href=\"x\">é</a>\n", "long ".repeat(40));
        for original in [&b"a=\r\nb\r\n"[..], &b"a=\nb\n"[..]] {
            let encoded = TransferEncoding::QuotedPrintable.encode(html.as_bytes(), original);
            let text = String::from_utf8(encoded.clone()).unwrap();
            assert!(
                text.lines()
                    .all(|line| line.trim_end_matches('\r').len() <= 76),
                "{text}"
            );
            assert_eq!(text.contains('\r'), original.contains(&b'\r'));
            let decoded = TransferEncoding::QuotedPrintable.decode(&encoded).unwrap();
            assert_eq!(decoded, to_crlf(html.as_bytes()));
        }
    }

    #[test]
    fn base64_keeps_its_line_length() {
        let original = b"PGh0bWw+PGJvZHk+PHA+aGVsbG8gd29ybGQ8L3A+PC9i\r\nb2R5PjwvaHRtbD4=\r\n";
        let content = "<html>".repeat(40);
        let encoded = TransferEncoding::Base64.encode(content.as_bytes(), original);
        let text = String::from_utf8(encoded.clone()).unwrap();
        assert!(text.ends_with("\r\n"));
        assert!(text.lines().all(|line| line.len() <= 44), "{text}");
        assert_eq!(
            TransferEncoding::Base64.decode(&encoded).unwrap(),
            content.as_bytes()
        );
    }
}
