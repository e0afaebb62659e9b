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
    !target.is_empty() && target.iter().all(|&b| (0x21..=0x7e).contains(&b))
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
///
/// Copies the runs between escapes whole: on the decoder's hot path this is several times
/// faster than decoding byte by byte.
pub fn decode_once(input: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        decoded.extend_from_slice(&rest[..at]);
        let escape = rest.get(at + 1..at + 3).and_then(|hex| {
            let digits = std::str::from_utf8(hex).ok()?;
            u8::from_str_radix(digits, 16)
                .ok()
                .filter(|_| hex.iter().all(u8::is_ascii_hexdigit))
        });
        match escape {
            Some(byte) => {
                decoded.push(byte);
                rest = &rest[at + 3..];
            }
            None => {
                decoded.push(b'%');
                rest = &rest[at + 1..];
            }
        }
    }
    decoded.extend_from_slice(rest);
    decoded
}

/// Upper-cases the hex digits of every `%xx` escape, and nothing else.
pub fn upper_case_escapes(input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for i in 0..out.len().saturating_sub(2) {
        if out[i] == b'%' && out[i + 1].is_ascii_hexdigit() && out[i + 2].is_ascii_hexdigit() {
            out[i + 1].make_ascii_uppercase();
            out[i + 2].make_ascii_uppercase();
        }
    }
    out
}

/// Whether `input` has a `%xx` escape with a lower-case hex digit.
pub fn has_lower_case_escape(input: &[u8]) -> bool {
    input.windows(3).any(|w| {
        w[0] == b'%'
            && w[1].is_ascii_hexdigit()
            && w[2].is_ascii_hexdigit()
            && (w[1].is_ascii_lowercase() || w[2].is_ascii_lowercase())
    })
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
}
