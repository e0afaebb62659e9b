//! The one-click unsubscribe headers (RFC 8058) that
//! [`RewriteOptions::unsubscribe`](crate::rewrite::RewriteOptions::unsubscribe) adds to a
//! message's top-level header block:
//!
//! ```text
//! List-Unsubscribe: <https://{tracking domain}/US0/…>
//! List-Unsubscribe-Post: List-Unsubscribe=One-Click
//! ```
//!
//! They go at the end of the block, in the message's own line ending. A message that already
//! has a `List-Unsubscribe` is refused ([`MimeError::HasListUnsubscribe`]) rather than given a
//! second one: a mail client would pick one of the two, and the sender's own would no longer
//! be sure to be it. RFC 8058 also asks for both headers to be under the DKIM signature,
//! which they are when the message is signed after rewriting, as it must be anyway.

use super::error::MimeError;

/// The value of `List-Unsubscribe-Post`, as RFC 8058 fixes it.
pub const ONE_CLICK_POST: &str = "List-Unsubscribe=One-Click";

/// Where the headers go in `message`, whose top-level body starts at `body_start`: just
/// before the blank line that ends the header block (or at the end of a message that is all
/// headers).
pub(crate) fn insertion_point(message: &[u8], body_start: usize) -> usize {
    let head = &message[..body_start];
    if head.ends_with(b"\r\n\r\n") {
        body_start - 2
    } else if head.ends_with(b"\n\n") {
        body_start - 1
    } else {
        body_start
    }
}

/// Appends the two header lines for `url` to `out`, which holds the message up to the
/// insertion point, in the line ending the message's first line has.
pub(crate) fn push_headers(message: &[u8], url: &str, out: &mut Vec<u8>) {
    let newline: &[u8] = match memchr::memchr(b'\n', message) {
        Some(at) if at > 0 && message[at - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    };
    // A last header line with no line ending (a message of headers only) is ended first.
    if out.last().is_some_and(|&b| b != b'\n') {
        out.extend_from_slice(newline);
    }
    out.extend_from_slice(b"List-Unsubscribe: <");
    out.extend_from_slice(url.as_bytes());
    out.push(b'>');
    out.extend_from_slice(newline);
    out.extend_from_slice(b"List-Unsubscribe-Post: ");
    out.extend_from_slice(ONE_CLICK_POST.as_bytes());
    out.extend_from_slice(newline);
}

/// Refuses a message that has a `List-Unsubscribe` of its own.
pub(crate) fn check_none_yet(has_list_unsubscribe: bool) -> Result<(), MimeError> {
    match has_list_unsubscribe {
        true => Err(MimeError::HasListUnsubscribe),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(message: &str, body_start: usize) -> String {
        let at = insertion_point(message.as_bytes(), body_start);
        let mut out = message.as_bytes()[..at].to_vec();
        push_headers(message.as_bytes(), "https://t.example/US0/x", &mut out);
        out.extend_from_slice(&message.as_bytes()[at..]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn headers_go_at_the_end_of_the_block_in_its_line_ending() {
        let crlf = "Subject: a\r\nTo: b\r\n\r\nbody\r\n";
        assert_eq!(
            added(crlf, 21),
            "Subject: a\r\nTo: b\r\nList-Unsubscribe: <https://t.example/US0/x>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n"
        );
        let lf = "Subject: a\n\nbody\n";
        assert_eq!(
            added(lf, 12),
            "Subject: a\nList-Unsubscribe: <https://t.example/US0/x>\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\n\nbody\n"
        );
        let headers_only = "Subject: a";
        assert_eq!(
            added(headers_only, 10),
            "Subject: a\r\nList-Unsubscribe: <https://t.example/US0/x>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        );
    }
}
