//! The target: the destination of a click, normalised as a browser would and encoded into
//! one path segment.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use url::Url;

/// Everything but `A–Z a–z 0–9 - . _ ~ : =` is percent-encoded in a link's target segment.
///
/// `/ ? & # % +` must be encoded so the target stays one segment and survives a proxy's
/// decoding; `:` and `=` are safe in a path and keep `https:` readable.
pub const TARGET_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'=');

/// Why a destination cannot be tracked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The URL does not parse (WHATWG).
    #[error("not a valid URL: {0}")]
    Unparsable(url::ParseError),
    /// The scheme is not http or https.
    #[error("scheme {0:?} is not tracked; only http and https are")]
    NotHttp(String),
    /// The URL has no host.
    #[error("URL has no host")]
    NoHost,
}

/// Normalises `raw` the way a browser would before following it (WHATWG URL parsing), and
/// checks that it is an http(s) URL with a host.
///
/// The result is exactly what a browser would have requested for the original link, so it is
/// what goes into `Location`. Tabs, CR and LF are removed by the parser and every other control
/// or non-ASCII character is percent-encoded, so the result is printable ASCII.
pub fn normalize(raw: &str) -> Result<String, TargetError> {
    let url = Url::parse(raw).map_err(TargetError::Unparsable)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::NotHttp(url.scheme().to_owned()));
    }
    if url.host().is_none() {
        return Err(TargetError::NoHost);
    }
    let normalized: String = url.into();
    debug_assert!(is_safe_location(normalized.as_bytes()));
    Ok(normalized)
}

/// Whether `target` may be written into a `Location` header: printable ASCII only, so no
/// control character, CR or LF can ever reach a response.
pub fn is_safe_location(target: &[u8]) -> bool {
    // A chunk at a time with no early exit inside it, so the compiler checks many bytes per
    // instruction: the decoder runs this over every candidate, up to 8 KiB each.
    !target.is_empty()
        && target.chunks(256).all(|chunk| {
            chunk
                .iter()
                .fold(true, |safe, &b| safe & (0x21..=0x7e).contains(&b))
        })
}

/// Appends `target` to `out`, encoded as a link's target segment.
///
/// Byte by byte into one buffer: the same output as `utf8_percent_encode` with
/// [`TARGET_ENCODE_SET`], without an iterator yielding a slice per escape, which showed in the
/// rewriter's profile.
pub fn encode_into(target: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(target.len() + target.len() / 2);
    for &byte in target.as_bytes() {
        if stays_literal(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

/// Whether `byte` stays literal in a target segment: outside [`TARGET_ENCODE_SET`].
fn stays_literal(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':' | b'=')
}

/// Whether `candidate` could be a target we signed: [`normalize`] only ever produces
/// printable ASCII starting with `http://` or `https://`. Anything else is refused before its
/// MAC is computed.
pub fn could_be_signed(candidate: &[u8]) -> bool {
    (candidate.starts_with(b"https://") || candidate.starts_with(b"http://"))
        && is_safe_location(candidate)
}

/// Decodes every `%XX` escape in `input` once. Malformed escapes are kept as they are.
pub fn decode_once(input: &[u8]) -> Vec<u8> {
    decode_once_noting_case(input).0
}

/// [`decode_once`], and whether any escape it decoded has a lower-case hex digit, as
/// [`has_lower_case_escape`] tells: the decoder needs both for every link, in one pass.
///
/// Byte by byte: escapes in a link come every few bytes, where copying the runs between them
/// costs a `memcpy` call each, and a hostile path has thousands of them. The output overwrites
/// a copy of the input from the front, as a copy is cheaper to get than a zeroed buffer.
pub(crate) fn decode_once_noting_case(input: &[u8]) -> (Vec<u8>, bool) {
    let mut decoded = input.to_vec();
    let mut len = 0;
    let mut lower_case = false;
    let mut at = 0;
    while let Some(&byte) = input.get(at) {
        let (value, width) = match escaped_byte(input, at) {
            Some(value) => {
                lower_case |=
                    input[at + 1].is_ascii_lowercase() | input[at + 2].is_ascii_lowercase();
                (value, 3)
            }
            None => (byte, 1),
        };
        // Every step reads at least the byte it writes, so `len <= at < decoded.len()`.
        decoded[len] = value;
        len += 1;
        at += width;
    }
    decoded.truncate(len);
    (decoded, lower_case)
}

/// Upper-cases the hex digits of every `%xx` escape, and nothing else.
pub fn upper_case_escapes(input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for at in escapes(input) {
        out[at + 1].make_ascii_uppercase();
        out[at + 2].make_ascii_uppercase();
    }
    out
}

/// Whether `input` has a `%xx` escape with a lower-case hex digit.
pub fn has_lower_case_escape(input: &[u8]) -> bool {
    escapes(input)
        .any(|at| input[at + 1].is_ascii_lowercase() || input[at + 2].is_ascii_lowercase())
}

/// Where each well-formed `%XX` escape in `input` starts.
///
/// A plain scan rather than `memchr`: escapes in a link come every few bytes, where each
/// `memchr` call costs more than it skips.
fn escapes(input: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || loop {
        let at = from + input.get(from..)?.iter().position(|&b| b == b'%')?;
        if escaped_byte(input, at).is_some() {
            from = at + 3;
            return Some(at);
        }
        from = at + 1;
    })
}

/// The byte that the escape at `at` stands for, if a `%` and two hex digits are there.
fn escaped_byte(input: &[u8], at: usize) -> Option<u8> {
    if input.get(at) != Some(&b'%') {
        return None;
    }
    let high = hex_value(*input.get(at + 1)?)?;
    let low = hex_value(*input.get(at + 2)?)?;
    Some(high << 4 | low)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(target: &str) -> String {
        let mut out = String::new();
        encode_into(target, &mut out);
        out
    }

    #[test]
    fn encodes_all_but_the_contract_set_with_upper_case_hex() {
        assert_eq!(
            encode("https://a.example/p?q=1&r=%2f#x+y"),
            "https:%2F%2Fa.example%2Fp%3Fq=1%26r=%252f%23x%2By"
        );
        assert_eq!(encode("AZaz09-._~:="), "AZaz09-._~:=");
        // The same as the percent-encoding crate with the contract's set, for every byte.
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '€', '😀'])
            .collect();
        let expected: String =
            percent_encoding::utf8_percent_encode(&all, TARGET_ENCODE_SET).collect();
        assert_eq!(encode(&all), expected);
    }

    #[test]
    fn normalizes_like_a_browser() {
        assert_eq!(
            normalize("HTTPS://Example.COM").unwrap(),
            "https://example.com/"
        );
        assert_eq!(
            normalize("https://a.example/a b/../c?x=\"y\"").unwrap(),
            "https://a.example/c?x=%22y%22"
        );
        assert_eq!(
            normalize("https://bücher.example/ä").unwrap(),
            "https://xn--bcher-kva.example/%C3%A4"
        );
        assert_eq!(
            normalize("https://a.example/x\r\n\tSet-Cookie: a=b").unwrap(),
            "https://a.example/xSet-Cookie:%20a=b"
        );
    }

    #[test]
    fn refuses_non_http_and_hostless_urls() {
        assert!(matches!(
            normalize("mailto:a@b.example"),
            Err(TargetError::NotHttp(s)) if s == "mailto"
        ));
        assert!(matches!(
            normalize("javascript:alert(1)"),
            Err(TargetError::NotHttp(_))
        ));
        assert!(matches!(
            normalize("/relative"),
            Err(TargetError::Unparsable(_))
        ));
        assert!(normalize("https://").is_err());
    }

    #[test]
    fn safe_location_is_printable_ascii() {
        assert!(is_safe_location(b"https://a.example/"));
        assert!(!is_safe_location(b"https://a.example/\r\nx"));
        assert!(!is_safe_location(b"https://a.example/ x"));
        assert!(!is_safe_location(b""));
        // Past the first chunk of 256 bytes.
        let long = format!("https://a.example/{}", "x".repeat(300));
        assert!(is_safe_location(long.as_bytes()));
        for bad in [b'\n', b' ', 0x7f, 0xc3] {
            let mut unsafe_at_end = long.clone().into_bytes();
            unsafe_at_end.push(bad);
            assert!(!is_safe_location(&unsafe_at_end), "{bad:#x}");
        }
    }

    #[test]
    fn hex_case_helpers() {
        assert_eq!(upper_case_escapes(b"%2f%3Fab%zz%e"), b"%2F%3Fab%zz%e");
        assert!(has_lower_case_escape(b"x%2f"));
        assert!(!has_lower_case_escape(b"x%2F%zz"));
        assert_eq!(decode_once(b"a%2Fb%zz%41"), b"a/b%zzA");
        assert_eq!(decode_once(b"%+1%%2f%4"), b"%+1%/%4");
        assert_eq!(decode_once(b"%C3%A4%25"), "ä%".as_bytes());
    }

    #[test]
    fn hex_helpers_agree_with_the_percent_encoding_crate_on_every_short_input() {
        const ALPHABET: &[u8] = b"%2fFg+a";
        let mut inputs = vec![Vec::new()];
        let mut last = inputs.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|shorter| {
                    ALPHABET.iter().map(move |&b| {
                        let mut longer = shorter.clone();
                        longer.push(b);
                        longer
                    })
                })
                .collect();
            inputs.extend(last.iter().cloned());
        }
        for input in &inputs {
            let expected: Vec<u8> = percent_encoding::percent_decode(input).collect();
            assert_eq!(decode_once(input), expected, "{input:?}");
            let upper = upper_case_escapes(input);
            assert_eq!(has_lower_case_escape(input), upper != *input, "{input:?}");
            assert_eq!(
                decode_once_noting_case(input),
                (expected.clone(), upper != *input),
                "{input:?}"
            );
            assert_eq!(decode_once(&upper), expected, "{input:?}");
        }
    }
}
