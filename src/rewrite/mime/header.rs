//! Rewriting one header of a part in place: its `Content-Transfer-Encoding`, when the
//! rewriter has to write the part in another encoding than it came in (see
//! [`super::transfer::MAX_LINE_OCTETS`]). Every other header line stays as it was.

/// The field rewritten.
const FIELD: &[u8] = b"Content-Transfer-Encoding";

/// Sets the `Content-Transfer-Encoding` of the header block `block`, which runs to its end
/// (the blank line that ends a part's headers, included), to `encoding`: the field's line,
/// with its folded continuation lines, becomes one line; a block without the field gets it
/// before its blank line. The new line ends as the block's lines do (CRLF, or LF alone).
pub(crate) fn set_transfer_encoding(block: &mut Vec<u8>, start: usize, encoding: &str) {
    let eol: &[u8] = match block[start..].windows(2).any(|w| w == b"\r\n") {
        true => b"\r\n",
        false => b"\n",
    };
    let mut line = Vec::with_capacity(FIELD.len() + encoding.len() + 4);
    line.extend_from_slice(FIELD);
    line.extend_from_slice(b": ");
    line.extend_from_slice(encoding.as_bytes());
    line.extend_from_slice(eol);
    let (at, old) = match field_lines(&block[start..]) {
        Some(range) => (start + range.start, range.len()),
        None => (start + blank_line(&block[start..]), 0),
    };
    block.splice(at..at + old, line);
}

/// Where the field's lines are in `headers`: its first line and every continuation line
/// (one starting with a space or a tab) after it, each with its line ending.
fn field_lines(headers: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    let mut found: Option<std::ops::Range<usize>> = None;
    for line in headers.split_inclusive(|&b| b == b'\n') {
        let next = offset + line.len();
        let continued = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        match &mut found {
            Some(range) if continued => range.end = next,
            Some(_) => break,
            None if is_field(line) => found = Some(offset..next),
            None => {}
        }
        offset = next;
    }
    found
}

/// Whether `line` starts the field, its name in any case followed by a colon (white space
/// before the colon is obsolete syntax, RFC 5322 section 4.5.3, and still read).
fn is_field(line: &[u8]) -> bool {
    line.len() > FIELD.len()
        && line[..FIELD.len()].eq_ignore_ascii_case(FIELD)
        && line[FIELD.len()..]
            .iter()
            .find(|&&b| b != b' ' && b != b'\t')
            .is_some_and(|&b| b == b':')
}

/// Where the blank line that ends `headers` starts: after the last line that has text.
fn blank_line(headers: &[u8]) -> usize {
    let trimmed = headers.strip_suffix(b"\n").unwrap_or(headers);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    trimmed
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(block: &str) -> String {
        let mut bytes = b"preamble".to_vec();
        bytes.extend_from_slice(block.as_bytes());
        set_transfer_encoding(&mut bytes, 8, "quoted-printable");
        String::from_utf8(bytes[8..].to_vec()).unwrap()
    }

    #[test]
    fn the_field_is_replaced_with_its_folded_lines() {
        assert_eq!(
            set("Content-Type: text/html\r\ncontent-transfer-encoding:\r\n 7bit\r\nX-A: b\r\n\r\n"),
            "Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\nX-A: b\r\n\r\n"
        );
        assert_eq!(
            set("Content-Transfer-Encoding : 8bit\n\n"),
            "Content-Transfer-Encoding: quoted-printable\n\n"
        );
    }

    #[test]
    fn a_block_without_it_gets_it_before_its_blank_line() {
        assert_eq!(
            set("Content-Type: text/html; charset=utf-8\r\n\r\n"),
            "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
        assert_eq!(
            set("Content-Type: text/html\n\n"),
            "Content-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n\n"
        );
    }

    #[test]
    fn a_field_that_only_starts_alike_is_not_it() {
        assert_eq!(
            set("Content-Transfer-Encoding-X: 7bit\r\n\r\n"),
            "Content-Transfer-Encoding-X: 7bit\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
    }
}
