//! Finding a multipart body's delimiter lines (RFC 2046, section 5.1.1).
//!
//! A delimiter is a line that starts with `--` and the boundary, then `--` for the closing
//! one, then optional white space, then the line ending. The line ending before it belongs
//! to the delimiter, not to the part above, so a part's bytes end where that line ending
//! begins. Everything between delimiters is kept to the byte; only where it lies is found
//! here.

use std::ops::Range;

use memchr::memmem;

/// The pieces of one multipart body, as ranges into the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delimited {
    /// Each body part, from just after its delimiter line to the line ending before the next.
    pub(crate) parts: Vec<Range<usize>>,
    /// Whether the closing delimiter (`--boundary--`) was found.
    pub(crate) closed: bool,
}

/// Finds the body parts of the multipart body `message[body]` with `boundary`.
///
/// Returns `None` when no delimiter line is found at all.
pub(crate) fn delimit(message: &[u8], body: Range<usize>, boundary: &str) -> Option<Delimited> {
    let mut dash_boundary = Vec::with_capacity(boundary.len() + 2);
    dash_boundary.extend_from_slice(b"--");
    dash_boundary.extend_from_slice(boundary.as_bytes());
    let finder = memmem::Finder::new(&dash_boundary);

    let mut parts = Vec::new();
    // Where the current part began, once the first delimiter is found.
    let mut open: Option<usize> = None;
    let mut from = body.start;
    while let Some(found) = finder.find(&message[from..body.end]) {
        let at = from + found;
        from = at + dash_boundary.len();
        let Some(line) = delimiter_line(message, body.clone(), at, dash_boundary.len()) else {
            continue;
        };
        if let Some(start) = open {
            parts.push(start..line.part_end.max(start));
        }
        if line.closing {
            return Some(Delimited {
                parts,
                closed: true,
            });
        }
        open = Some(line.next_part);
        from = line.next_part;
    }
    let start = open?;
    parts.push(start..body.end);
    Some(Delimited {
        parts,
        closed: false,
    })
}

/// A delimiter line found at a candidate position.
struct DelimiterLine {
    /// Where the part before it ends: before the line ending that precedes the delimiter.
    part_end: usize,
    /// Where the next part begins: after the delimiter line's own line ending.
    next_part: usize,
    /// Whether it is the closing delimiter.
    closing: bool,
}

/// Whether `--boundary` found at `at` (of length `len`) begins a delimiter line: at the
/// start of a line, followed by `--` or not, white space, and the end of the line.
fn delimiter_line(
    message: &[u8],
    body: Range<usize>,
    at: usize,
    len: usize,
) -> Option<DelimiterLine> {
    let starts_line = at == body.start || message[at - 1] == b'\n';
    if !starts_line {
        return None;
    }
    let mut end = at + len;
    let closing = message[end..body.end].starts_with(b"--");
    if closing {
        end += 2;
    }
    while end < body.end && matches!(message[end], b' ' | b'\t') {
        end += 1;
    }
    let next_part = match &message[end..body.end] {
        [] => body.end,
        [b'\n', ..] => end + 1,
        [b'\r', b'\n', ..] => end + 2,
        // Text after the boundary on the same line: a longer boundary, or content.
        _ => return None,
    };
    let mut part_end = at;
    if part_end > body.start && message[part_end - 1] == b'\n' {
        part_end -= 1;
        if part_end > body.start && message[part_end - 1] == b'\r' {
            part_end -= 1;
        }
    }
    Some(DelimiterLine {
        part_end,
        next_part,
        closing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces<'a>(message: &'a str, boundary: &str) -> Option<(Vec<&'a str>, bool)> {
        let delimited = delimit(message.as_bytes(), 0..message.len(), boundary)?;
        let parts = delimited
            .parts
            .iter()
            .map(|r| &message[r.clone()])
            .collect();
        Some((parts, delimited.closed))
    }

    #[test]
    fn parts_lie_between_delimiter_lines_without_their_line_endings() {
        let body = "preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b  \r\n\r\ntwo\r\n--b--\r\nepilogue";
        assert_eq!(
            pieces(body, "b"),
            Some((vec!["A: 1\r\n\r\none", "\r\ntwo"], true))
        );
        assert_eq!(pieces("--b\nx\n--b--", "b"), Some((vec!["x"], true)));
    }

    #[test]
    fn a_longer_boundary_or_one_inside_a_line_is_not_a_delimiter() {
        let body = "--b\r\nsee --b here\r\n--bb\r\nstill one\r\n--b--\r\n";
        assert_eq!(
            pieces(body, "b"),
            Some((vec!["see --b here\r\n--bb\r\nstill one"], true))
        );
    }

    #[test]
    fn a_missing_close_or_no_delimiter_at_all_is_told() {
        assert_eq!(pieces("--b\r\nx\r\n", "b"), Some((vec!["x\r\n"], false)));
        assert_eq!(pieces("no delimiters", "b"), None);
    }
}
