//! The rewriter's rules, one test each, over small documents.

use super::*;
use crate::link::SendTime;
use crate::link::{decode, Decoded, LinkTags, MessageId};
use crate::testing::{fixed_ring, fixed_signer, request_target, stamp_v2, FIXED_SEND_TIME};

fn options() -> RewriteOptions {
    let mut options = RewriteOptions::new(fixed_signer(), MessageId::new("msg-1").unwrap());
    options.send_time = SendTime::from_unix_seconds(FIXED_SEND_TIME).unwrap();
    options
}

fn rewrite(html: &str) -> Rewritten<String> {
    rewrite_str(html, &options()).unwrap()
}

fn pixel() -> String {
    pixel_html(&fixed_signer().open_url(&stamp_v2("msg-1", "")))
}

/// The target a tracked link verifies to, with its tags.
fn verified(link: &str) -> (String, LinkTags) {
    match decode(request_target(link), &fixed_ring()) {
        Decoded::Verified(v) => (v.target, v.tags),
        other => panic!("{link}: {other:?}"),
    }
}

#[test]
fn tracks_absolute_http_links_and_keeps_everything_else() {
    let html = "<body>\n<p class='x'>Hé &amp; <A  title=t HREF=\"https://a.example/p\" id=a>x</A></p>\n</body>";
    let out = rewrite(html);
    let [link] = &out.report.tracked[..] else {
        panic!("{:?}", out.report)
    };
    assert_eq!(link.url, "https://a.example/p");
    assert_eq!(verified(&link.tracked_url).0, "https://a.example/p");
    let tag = format!("<A title=t HREF=\"{}\" id=a>", link.tracked_url);
    let expected = html
        .replace("<A  title=t HREF=\"https://a.example/p\" id=a>", &tag)
        .replace("</body>", &format!("{}</body>", pixel()));
    assert_eq!(out.html, expected);
    assert_eq!(
        &html[link.source.clone()],
        "<A  title=t HREF=\"https://a.example/p\" id=a>"
    );
}

#[test]
fn amp_in_a_query_is_an_ampersand_in_the_target_and_escaped_in_the_output() {
    // Postal once sent `&amp;` as part of the target and broke password resets.
    let out = rewrite(r#"<a href="https://a.example/reset?id=1&amp;token=a%26b">Reset</a>"#);
    let link = &out.report.tracked[0];
    assert_eq!(link.url, "https://a.example/reset?id=1&token=a%26b");
    assert_eq!(
        verified(&link.tracked_url).0,
        "https://a.example/reset?id=1&token=a%26b"
    );
    let escaped = htmlize::escape_attribute(&link.tracked_url);
    assert!(
        out.html.contains(&format!("href=\"{escaped}\"")),
        "{}",
        out.html
    );
    assert!(!out.html.contains("&amp;token"), "{}", out.html);
}

#[test]
fn entities_in_single_quoted_and_unquoted_attributes_are_decoded() {
    let html = "<a href='https://a.example/?a=1&amp;b=2'>1</a><a href=https://a.example/?c=3&#38;d=4>2</a>";
    let out = rewrite(html);
    let targets: Vec<_> = out
        .report
        .tracked
        .iter()
        .map(|l| verified(&l.tracked_url).0)
        .collect();
    assert_eq!(
        targets,
        ["https://a.example/?a=1&b=2", "https://a.example/?c=3&d=4"]
    );
    // Written back double-quoted, whatever the input's quoting.
    assert_eq!(
        out.html
            .matches("href=\"https://track.example.com/CL0/")
            .count(),
        2
    );
}

#[test]
fn area_and_upper_case_tags_are_links() {
    let out = rewrite(
        r#"<map><AREA SHAPE=rect HREF="https://a.example/1"><area href="https://a.example/2"></map>"#,
    );
    assert_eq!(out.report.tracked.len(), 2);
    assert!(out
        .html
        .starts_with("<map><AREA SHAPE=rect HREF=\"https://track.example.com/CL0/"));
}

#[test]
fn untrackable_links_are_untouched_and_reported_with_their_reason() {
    let links = [
        ("mailto:a@b.example", SkipReason::NotHttp("mailto".into())),
        ("tel:+1555", SkipReason::NotHttp("tel".into())),
        (
            "javascript:void(0)",
            SkipReason::NotHttp("javascript".into()),
        ),
        ("/relative", SkipReason::Relative),
        ("#top", SkipReason::Fragment),
        ("", SkipReason::Empty),
        (
            "{{unsubscribe}}",
            SkipReason::Placeholder("{{unsubscribe}}".into()),
        ),
        ("*|UNSUB|*", SkipReason::Placeholder("*|UNSUB|*".into())),
    ];
    let html: String = links
        .iter()
        .map(|(h, _)| format!("<a href=\"{h}\">x</a>\n"))
        .collect();
    let out = rewrite(&html);
    assert!(out.report.tracked.is_empty());
    let reasons: Vec<_> = out
        .report
        .skipped
        .iter()
        .map(|s| s.reason.clone())
        .collect();
    let expected: Vec<_> = links.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(reasons, expected);
    assert_eq!(out.html, format!("{html}{}", pixel()));
}

#[test]
fn invalid_rfc_3986_links_are_skipped_unless_browser_syntax_is_on() {
    let html = r#"<a href="https://a.example/a b">x</a>"#;
    let strict = rewrite(html);
    assert!(matches!(
        strict.report.skipped[0].reason,
        SkipReason::NotRfc3986(_)
    ));
    assert!(strict.html.starts_with(html));

    let mut browser = options();
    browser.url_syntax = UrlSyntax::Browser;
    let out = rewrite_str(html, &browser).unwrap();
    assert_eq!(
        verified(&out.report.tracked[0].tracked_url).0,
        "https://a.example/a%20b"
    );
}

#[test]
fn no_track_with_or_without_a_value_skips_the_link_and_is_removed() {
    let html = r#"<a ses:no-track href="https://a.example/1">1</a><a href="https://a.example/2" SES:NO-TRACK="true">2</a>"#;
    let out = rewrite(html);
    assert!(out.report.tracked.is_empty());
    assert!(out
        .report
        .skipped
        .iter()
        .all(|s| s.reason == SkipReason::NoTrack));
    assert!(
        out.html.starts_with(
            r#"<a href="https://a.example/1">1</a><a href="https://a.example/2">2</a>"#
        ),
        "{}",
        out.html
    );
}

#[test]
fn tags_are_carried_under_the_mac_and_removed() {
    let out = rewrite(r#"<a ses:tags="campaign:spring;variant:b" href="https://a.example/">x</a>"#);
    let link = &out.report.tracked[0];
    let (target, tags) = verified(&link.tracked_url);
    assert_eq!(target, "https://a.example/");
    assert_eq!(tags, LinkTags::parse("campaign:spring;variant:b").unwrap());
    assert_eq!(link.tags, tags);
    assert!(!out.html.contains("ses:tags"), "{}", out.html);

    let bad = rewrite(r#"<a ses:tags="campaign spring" href="https://a.example/">x</a>"#);
    assert!(bad.report.tracked.is_empty());
    assert!(matches!(
        bad.report.skipped[0].reason,
        SkipReason::InvalidTags(_)
    ));
    assert!(
        bad.html
            .starts_with(r#"<a href="https://a.example/">x</a>"#),
        "{}",
        bad.html
    );
}

#[test]
fn only_the_first_max_links_trackable_links_are_tracked() {
    let mut html = String::from("<a href=\"mailto:x@y.example\">m</a>");
    for i in 0..300 {
        html.push_str(&format!("<a href=\"https://a.example/{i}\">{i}</a>\n"));
    }
    let out = rewrite(&html);
    assert_eq!(out.report.tracked.len(), 250);
    assert_eq!(
        verified(&out.report.tracked[249].tracked_url).0,
        "https://a.example/249"
    );
    let over: Vec<_> = out
        .report
        .skipped
        .iter()
        .filter(|s| s.reason == SkipReason::OverLimit(250))
        .collect();
    assert_eq!(over.len(), 50);
    assert_eq!(over[0].url, "https://a.example/250");
    assert!(out
        .html
        .contains("<a href=\"https://a.example/299\">299</a>"));
    assert_eq!(out.html.matches("/CL0/").count(), 250);
}

#[test]
fn script_style_textarea_title_and_comments_are_untouched() {
    let inner = [
        "<script>var s = '<a href=\"https://a.example/s\">{{ses:openTracker}}</a>';</script>",
        "<style>/* <a href=\"https://a.example/c\"> */ a{color:red}</style>",
        "<textarea><a href=\"https://a.example/t\">{{ses:openTracker}}</a></textarea>",
        "<title><a href=\"https://a.example/ti\"></title>",
        "<!-- <a href=\"https://a.example/x\">{{ses:openTracker}}</a> -->",
        "<!--[if mso]><a href=\"https://a.example/mso\">x</a><![endif]-->",
    ];
    let html = format!("<html><head></head><body>{}</body></html>", inner.concat());
    let out = rewrite(&html);
    assert_eq!(out.report.tracked, []);
    // Only the link in Outlook's conditional comment is reported: Outlook shows it.
    let [mso] = &out.report.skipped[..] else {
        panic!("{:?}", out.report.skipped)
    };
    assert_eq!(mso.url, "https://a.example/mso");
    assert_eq!(mso.reason, SkipReason::ConditionalComment);
    assert_eq!(&html[mso.source.clone()], inner[5]);
    assert_eq!(
        out.html,
        html.replace("</body>", &format!("{}</body>", pixel()))
    );
}

#[test]
fn an_outlook_vml_button_is_reported_and_its_html_twin_tracked() {
    // The "bulletproof button": VML for Outlook, an ordinary link for everyone else.
    let vml = "<!--[if mso]><v:roundrect xmlns:v=\"urn:schemas-microsoft-com:vml\" \
               href=\"https://a.example/buy?a=1&amp;b=2\" style=\"height:40px\"><w:anchorlock/>\
               <center>Buy</center></v:roundrect><![endif]-->";
    let html = format!(
        "<body>{vml}<!--[if !mso]><!--><a href=\"https://a.example/buy\">Buy</a><!--<![endif]--></body>"
    );
    let out = rewrite(&html);
    let [button] = &out.report.skipped[..] else {
        panic!("{:?}", out.report)
    };
    assert_eq!(
        (button.index, button.url.as_str()),
        (0, "https://a.example/buy?a=1&b=2")
    );
    assert_eq!(
        button.reason.to_string(),
        "inside an Outlook conditional comment, which is not rewritten"
    );
    let [link] = &out.report.tracked[..] else {
        panic!("{:?}", out.report)
    };
    assert_eq!(
        (link.index, link.url.as_str()),
        (1, "https://a.example/buy")
    );
    assert!(
        out.html.starts_with(&format!("<body>{vml}")),
        "the comment is unchanged"
    );
}

#[test]
fn pixel_goes_before_body_end_or_at_the_end() {
    let out = rewrite("<html><body><p>Hi</p></body></html>\n");
    assert_eq!(
        out.html,
        format!("<html><body><p>Hi</p>{}</body></html>\n", pixel())
    );
    assert_eq!(out.report.pixel, Some(PixelPosition::BodyEnd));

    let out = rewrite("<p>No body</p>");
    assert_eq!(out.html, format!("<p>No body</p>{}", pixel()));
    assert_eq!(out.report.pixel, Some(PixelPosition::DocumentEnd));

    let out = rewrite("<body><p>No end tag");
    assert_eq!(out.html, format!("<body><p>No end tag{}", pixel()));
    assert_eq!(out.report.pixel, Some(PixelPosition::DocumentEnd));
}

#[test]
fn pixel_goes_at_the_marker_even_when_split_across_writes() {
    let html = "<body><p>a {{ses:openTracker}} b</p><p>{{ses:openTracker}}</p></body>";
    let expected = format!("<body><p>a {} b</p><p></p></body>", pixel());
    assert_eq!(rewrite(html).html, expected);
    assert_eq!(rewrite(html).report.pixel, Some(PixelPosition::Marker));
    for split in 1..html.len() {
        let mut rewriter = Rewriter::new(Vec::new(), &options());
        rewriter.write(&html.as_bytes()[..split]).unwrap();
        rewriter.write(&html.as_bytes()[split..]).unwrap();
        let (out, _) = rewriter.end().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            expected,
            "split at {split}"
        );
    }
}

#[test]
fn pixel_can_go_at_the_top_of_the_body() {
    let mut top = options();
    top.pixel = PixelPlacement::BodyStart;
    let out = rewrite_str("<body class=\"x\">\n<p>Long…</p></body>", &top).unwrap();
    assert_eq!(
        out.html,
        format!("<body class=\"x\">{}\n<p>Long…</p></body>", pixel())
    );
    assert_eq!(out.report.pixel, Some(PixelPosition::BodyStart));
}

#[test]
fn streaming_gives_the_same_result_in_any_pieces() {
    let html =
        "<body><a href=\"https://a.example/?a=1&amp;b=2\">x</a> ü {{ses:openTracker}}</body>";
    let whole = rewrite(html);
    let mut out = Vec::new();
    let report = rewrite_stream(OneByteReader(html.as_bytes()), &mut out, &options()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), whole.html);
    assert_eq!(report, whole.report);
}

#[test]
fn write_errors_are_returned_and_stop_the_rewriter() {
    let err = rewrite_stream(&b"<p>x</p>"[..], FailingWriter, &options()).unwrap_err();
    assert!(matches!(err, RewriteError::Write(_)), "{err}");

    let mut rewriter = Rewriter::new(FailingWriter, &options());
    assert!(matches!(
        rewriter.write(b"<p>x</p>"),
        Err(RewriteError::Write(_))
    ));
    assert!(matches!(
        rewriter.write(b"<p>y</p>"),
        Err(RewriteError::AlreadyFailed)
    ));
    assert!(matches!(rewriter.end(), Err(RewriteError::AlreadyFailed)));
}

#[test]
fn markup_lol_html_cannot_parse_safely_is_an_error() {
    // lol_html's own example of markup whose parse needs the tree it does not keep.
    let html = "<select><xmp><script>\"use strict\";</script></select>";
    let err = rewrite_str(html, &options()).unwrap_err();
    assert!(matches!(err, RewriteError::Html(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("the HTML cannot be rewritten safely: "),
        "{err}"
    );
}

/// Reads one byte at a time, the worst case for split tokens.
struct OneByteReader<'a>(&'a [u8]);

impl std::io::Read for OneByteReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some((&first, rest)) = self.0.split_first() else {
            return Ok(0);
        };
        buf[0] = first;
        self.0 = rest;
        Ok(1)
    }
}

struct FailingWriter;

impl std::io::Write for FailingWriter {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk full"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn unsubscribe_placeholders_become_the_signed_unsubscribe_link_only_when_asked() {
    let html = "<body><a href=\"{{unsubscribe}}\">Unsubscribe</a> \
                <a href=\" {{amazonSESUnsubscribeUrl}} \">SES's</a> \
                <a href=\"{{other}}\">other</a></body>";
    let off = rewrite(html);
    assert!(off.report.unsubscribe.is_empty());
    assert_eq!(off.report.skipped.len(), 3);
    assert!(off.html.contains("href=\"{{unsubscribe}}\""));

    let mut with = options();
    with.unsubscribe = true;
    let on = rewrite_str(html, &with).unwrap();
    let url = with.unsubscribe_url();
    assert!(
        url.starts_with("https://track.example.com/US0/2~tpfds0/msg-1/"),
        "{url}"
    );
    assert_eq!(on.report.unsubscribe.len(), 2);
    assert_eq!(on.report.unsubscribe[0].placeholder, "{{unsubscribe}}");
    assert_eq!(
        on.report.unsubscribe[1].placeholder,
        "{{amazonSESUnsubscribeUrl}}"
    );
    assert_eq!(on.report.unsubscribe[1].index, 1);
    assert_eq!(
        on.html.matches(&format!("href=\"{url}\"")).count(),
        2,
        "{}",
        on.html
    );
    // Not click-tracked on top; the other placeholder is still one.
    assert!(on.report.tracked.is_empty());
    assert_eq!(on.report.skipped.len(), 1);
    match decode(request_target(&url), &fixed_ring()) {
        Decoded::Verified(link) => assert_eq!(link.kind, crate::link::LinkKind::Unsubscribe),
        other => panic!("{other:?}"),
    }
    let json = serde_json::to_value(&on.report).unwrap();
    assert_eq!(json["unsubscribe"][0]["url"], url);
}
