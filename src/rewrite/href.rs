//! Deciding whether one `href` is a trackable link, and if not, why.
//!
//! The decision is made on the URL a browser would follow: the attribute value with its HTML
//! entities decoded (`&amp;` → `&`) and the ASCII whitespace around it stripped, as HTML's
//! "valid URL potentially surrounded by spaces" allows.

use std::borrow::Cow;

use super::report::SkipReason;
use super::UrlSyntax;
use crate::link::target::{self, TargetError};

/// Template placeholders: an opening and a closing delimiter. A sending platform fills them in
/// after we run, so a link holding one is not its final URL and must be left for it to fill.
const PLACEHOLDERS: [(&str, &str); 5] = [
    ("{{", "}}"),
    ("{%", "%}"),
    ("*|", "|*"),
    ("%%", "%%"),
    ("[[", "]]"),
];

/// An href that will be tracked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trackable {
    /// The destination normalised as a browser would; what the click redirects to.
    pub(crate) target: String,
}

/// Decodes the HTML entities of a raw attribute value, as a browser does before it uses it.
///
/// lol_html hands attribute values over raw, entities and all. The decoding uses htmlize
/// rather than a table of our own: HTML's entity list has over 2,000 names, and attribute
/// values have their own rule for entities without a `;` (`&copy=` stays as it is), which
/// htmlize implements from the WHATWG spec.
pub(crate) fn decode_entities(raw: &str) -> Cow<'_, str> {
    if raw.contains('&') {
        htmlize::unescape_attribute(raw)
    } else {
        Cow::Borrowed(raw)
    }
}

/// Classifies a decoded href: trackable, or the reason it is left as it is.
pub(crate) fn classify(href: &str, syntax: UrlSyntax) -> Result<Trackable, SkipReason> {
    let href = href.trim_matches(|c: char| c.is_ascii_whitespace());
    if href.is_empty() {
        return Err(SkipReason::Empty);
    }
    if let Some(placeholder) = find_placeholder(href) {
        return Err(SkipReason::Placeholder(placeholder.to_owned()));
    }
    if href.starts_with('#') {
        return Err(SkipReason::Fragment);
    }
    // WHATWG parsing, as the signer does it, says what a browser would do with the link:
    // where it goes, or that it is relative, or which scheme it has.
    let target = target::normalize(href).map_err(|e| match e {
        TargetError::Unparsable(url::ParseError::RelativeUrlWithoutBase) => SkipReason::Relative,
        TargetError::NotHttp(scheme) => SkipReason::NotHttp(scheme),
        other => SkipReason::Untrackable(other.to_string()),
    })?;
    if syntax == UrlSyntax::Rfc3986 {
        check_rfc3986(href)?;
    }
    Ok(Trackable { target })
}

/// The first template placeholder in `href`, opening to closing delimiter.
pub(crate) fn find_placeholder(href: &str) -> Option<&str> {
    // Most hrefs have none of the delimiters' first characters; one pass says so.
    if !href.contains(['{', '*', '%', '[']) {
        return None;
    }
    PLACEHOLDERS.iter().find_map(|&(open, close)| {
        let start = href.find(open)?;
        let after_open = start + open.len();
        let end = after_open + href[after_open..].find(close)? + close.len();
        Some(&href[start..end])
    })
}

/// Checks `href` against RFC 3986's `URI` rule, as SES does before it tracks a link.
///
/// fluent-uri implements the RFC's grammar as written, and is fuzzed against other parsers;
/// the `url` crate cannot do this check, since WHATWG parsing repairs what RFC 3986 refuses.
fn check_rfc3986(href: &str) -> Result<(), SkipReason> {
    use fluent_uri::ParseErrorKind;

    let Err(error) = fluent_uri::Uri::parse(href) else {
        return Ok(());
    };
    let at = error.index();
    let what = match error.kind() {
        ParseErrorKind::InvalidPctEncodedOctet => "a malformed percent-escape".to_owned(),
        ParseErrorKind::InvalidIpv6Addr => "an invalid IPv6 address".to_owned(),
        // The index points at the first byte of a character, so the slice is on a boundary;
        // `get` keeps this total anyway.
        _ => match href.get(at..).and_then(|rest| rest.chars().next()) {
            Some(c) => format!("{c:?}, which must be percent-encoded"),
            None => "an unexpected end".to_owned(),
        },
    };
    Err(SkipReason::NotRfc3986(format!("{what} at byte {at}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(href: &str) -> Result<String, SkipReason> {
        classify(href, UrlSyntax::Rfc3986).map(|t| t.target)
    }

    #[test]
    fn absolute_http_links_are_trackable_and_normalised() {
        assert_eq!(
            strict("https://a.example/p?q=1").unwrap(),
            "https://a.example/p?q=1"
        );
        assert_eq!(strict("HTTP://A.example").unwrap(), "http://a.example/");
        assert_eq!(
            strict("  https://a.example/\n").unwrap(),
            "https://a.example/"
        );
    }

    #[test]
    fn other_schemes_relative_fragment_and_empty_are_skipped() {
        for (href, scheme) in [
            ("mailto:a@b.example", "mailto"),
            ("tel:+15551234", "tel"),
            ("sms:+15551234", "sms"),
            ("javascript:alert(1)", "javascript"),
            ("data:text/html,hi", "data"),
            ("ftp://a.example/", "ftp"),
        ] {
            assert_eq!(strict(href), Err(SkipReason::NotHttp(scheme.to_owned())));
        }
        assert_eq!(strict("/path"), Err(SkipReason::Relative));
        assert_eq!(strict("//a.example/x"), Err(SkipReason::Relative));
        assert_eq!(strict("page.html"), Err(SkipReason::Relative));
        assert_eq!(strict("#top"), Err(SkipReason::Fragment));
        assert_eq!(strict(""), Err(SkipReason::Empty));
        assert_eq!(strict(" \t"), Err(SkipReason::Empty));
        assert!(matches!(
            strict("https://"),
            Err(SkipReason::Untrackable(_))
        ));
    }

    #[test]
    fn placeholders_anywhere_are_skipped() {
        for (href, found) in [
            ("{{unsubscribe_url}}", "{{unsubscribe_url}}"),
            ("https://a.example/?u={{ user.id }}&x=1", "{{ user.id }}"),
            ("https://a.example/{% url 'x' %}", "{% url 'x' %}"),
            ("*|ARCHIVE|*", "*|ARCHIVE|*"),
            ("https://a.example/?e=*|EMAIL|*", "*|EMAIL|*"),
            ("%%unsub_center_url%%", "%%unsub_center_url%%"),
            ("https://a.example/[[id]]", "[[id]]"),
        ] {
            assert_eq!(strict(href), Err(SkipReason::Placeholder(found.to_owned())));
        }
        // An opening delimiter alone is not a placeholder.
        assert_eq!(find_placeholder("https://a.example/?a={{"), None);
    }

    #[test]
    fn strict_mode_skips_what_rfc_3986_refuses_and_browser_mode_tracks_it() {
        let invalid = [
            ("https://a.example/a b", "' '"),
            ("https://a.example/ä", "'ä'"),
            ("https://a.example/?q=%zz", "percent-escape"),
            ("https://a.example/x|y", "'|'"),
            ("https://a.example/\"q\"", "'\"'"),
        ];
        for (href, detail) in invalid {
            match strict(href) {
                Err(SkipReason::NotRfc3986(why)) => assert!(why.contains(detail), "{href}: {why}"),
                other => panic!("{href}: {other:?}"),
            }
            let browser = classify(href, UrlSyntax::Browser).unwrap().target;
            assert_eq!(browser, target::normalize(href).unwrap());
        }
        assert_eq!(
            classify("https://a.example/a b", UrlSyntax::Browser)
                .unwrap()
                .target,
            "https://a.example/a%20b"
        );
    }

    #[test]
    fn entities_decode_with_the_attribute_rules() {
        assert_eq!(decode_entities("a?x=1&amp;y=2"), "a?x=1&y=2");
        assert_eq!(decode_entities("a?x=1&#38;y=2&#x26;z"), "a?x=1&y=2&z");
        // In an attribute, a legacy entity without `;` before `=` or a letter stays as it is.
        assert_eq!(decode_entities("a?x=1&copy=2"), "a?x=1&copy=2");
        assert_eq!(decode_entities("a?x=1&amp=2"), "a?x=1&amp=2");
        assert!(matches!(decode_entities("plain"), Cow::Borrowed("plain")));
    }
}
