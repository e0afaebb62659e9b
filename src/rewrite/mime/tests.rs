//! The MIME rewriter on small messages made here; the corpus of real-shaped messages is in
//! `tests/rewrite_mime.rs`.

use super::*;
use crate::link::{MessageId, SendTime};
use crate::rewrite::{rewrite_str, RewriteOptions};

/// Options with a fixed send time, so that two rewrites of one message are the same.
fn options() -> RewriteOptions {
    let mut options = RewriteOptions::new(
        crate::testing::fixed_signer(),
        MessageId::new("m-1").unwrap(),
    );
    options.send_time = SendTime::from_unix_seconds(1_796_227_200).unwrap();
    options
}

const ALTERNATIVE: &str = "From: a@example.com\r\n\
    Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
    preamble\r\n\
    --b\r\nContent-Type: text/plain\r\n\r\nhttps://example.com/\r\n\
    --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
    <body><a href=\"https://example.com/\">Go</a></body>\r\n\
    --b--\r\nepilogue\r\n";

#[test]
fn the_html_part_is_rewritten_and_the_rest_kept() {
    let rewritten = rewrite_mime(ALTERNATIVE.as_bytes(), &options()).unwrap();
    let html = "<body><a href=\"https://example.com/\">Go</a></body>";
    let expected = rewrite_str(html, &options()).unwrap();
    let output = String::from_utf8(rewritten.message).unwrap();
    assert_eq!(output, ALTERNATIVE.replace(html, &expected.html));
    assert_eq!(rewritten.report.html_parts.len(), 1);
    assert_eq!(rewritten.report.html_parts[0].part.number(), "2");
    assert_eq!(rewritten.report.pixel_part.as_ref().unwrap().number(), "2");
}

#[test]
fn only_one_part_gets_the_pixel() {
    let message = ALTERNATIVE.replace(
        "--b--",
        "--b\r\nContent-Type: text/html\r\n\r\n<body>{{ses:openTracker}}<a href=\"https://b.example/\">B</a></body>\r\n--b--",
    );
    let rewritten = rewrite_mime(message.as_bytes(), &options()).unwrap();
    let output = String::from_utf8(rewritten.message).unwrap();
    assert_eq!(output.matches("/CI0/").count(), 1, "{output}");
    assert!(!output.contains("{{ses:openTracker}}"), "{output}");
    assert_eq!(rewritten.report.tracked(), 2);
    assert_eq!(rewritten.report.pixel_part.unwrap().number(), "3");
}

#[test]
fn a_signed_message_is_refused() {
    let message = format!("DKIM-Signature: v=1; d=example.com\r\n{ALTERNATIVE}");
    let error = rewrite_mime(message.as_bytes(), &options()).unwrap_err();
    assert!(matches!(error, MimeError::DkimSigned), "{error}");
    assert!(error
        .to_string()
        .contains("rewrite the message first, then sign it"));
}

#[test]
fn malformed_structure_names_the_part() {
    let unclosed = ALTERNATIVE.replace("--b--", "--c--");
    let error = rewrite_mime(unclosed.as_bytes(), &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the message: multipart/alternative: the closing delimiter `--b--` is missing"
    );
    let nested = "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
        Content-Type: multipart/related\r\n\r\nx\r\n--o--\r\n";
    let error = rewrite_mime(nested.as_bytes(), &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "MIME part 1: multipart/related has no boundary parameter"
    );
    assert_eq!(error.part().unwrap().number(), "1");
    let error = rewrite_mime(b"<html>not mail</html>", &options()).unwrap_err();
    assert!(matches!(error, MimeError::Malformed { .. }), "{error}");
}

#[test]
fn deep_nesting_is_bounded() {
    let mut message = "Content-Type: text/plain\r\n\r\nx".to_owned();
    for depth in 0..=DEFAULT_MAX_MIME_DEPTH {
        message = format!(
            "Content-Type: multipart/mixed; boundary=b{depth}\r\n\r\n--b{depth}\r\n{message}\r\n--b{depth}--\r\n"
        );
    }
    let error = rewrite_mime(message.as_bytes(), &options()).unwrap_err();
    assert!(error.to_string().contains("nest deeper than 32"), "{error}");
}

#[test]
fn parts_it_cannot_write_are_passed_through_and_reported() {
    let message: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/html; charset=utf-16\r\n\r\n<a href=\"https://a.example/\">a</a>\r\n\
        --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\xff<a href=\"https://a.example/\">a</a>\r\n\
        --b\r\nContent-Type: text/html; charset=x-unknown\r\n\r\n<a href=\"https://a.example/\">a</a>\r\n\
        --b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n\
        --b--\r\n";
    let rewritten = rewrite_mime(message, &options()).unwrap();
    assert_eq!(rewritten.message, message);
    let reasons: Vec<String> = rewritten
        .report
        .html_parts
        .iter()
        .map(|part| match &part.outcome {
            PartOutcome::Untouched { reason } => reason.to_string(),
            PartOutcome::Rewritten { .. } => "rewritten".to_owned(),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "charset UTF-16LE is not ASCII-compatible, so it is not rewritten",
            "its bytes are not valid UTF-8",
            "unknown charset \"x-unknown\"",
            "its base64 does not decode: Invalid symbol 33, offset 0.",
        ]
    );
    assert_eq!(rewritten.report.pixel_part, None);
}

#[test]
fn the_unsubscribe_option_adds_both_headers_and_fills_the_placeholders() {
    let message = ALTERNATIVE.replace(
        "<a href=\"https://example.com/\">Go</a></body>",
        "<a href=\"https://example.com/\">Go</a><a href=\"{{unsubscribe}}\">Unsubscribe</a></body>",
    );
    let mut with = options();
    with.unsubscribe = true;
    let url = with.unsubscribe_url();
    let rewritten = rewrite_mime(message.as_bytes(), &with).unwrap();
    let output = String::from_utf8(rewritten.message).unwrap();
    let headers = format!(
        "From: a@example.com\r\n\
         Content-Type: multipart/alternative; boundary=\"b\"\r\n\
         List-Unsubscribe: <{url}>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\npreamble\r\n"
    );
    assert!(output.starts_with(&headers), "{output}");
    assert_eq!(rewritten.report.list_unsubscribe.as_deref(), Some(&url[..]));
    let part = rewritten.report.rewritten().next().unwrap();
    assert_eq!(part.unsubscribe.len(), 1);
    assert!(output.contains(&format!("href=\"{url}\"")), "{output}");

    // Without the option: nothing added.
    let plain = rewrite_mime(message.as_bytes(), &options()).unwrap();
    assert!(!String::from_utf8(plain.message)
        .unwrap()
        .contains("List-Unsubscribe"));
    assert_eq!(plain.report.list_unsubscribe, None);

    // A message with its own List-Unsubscribe is refused, not given a second.
    let own = format!("List-Unsubscribe: <mailto:u@example.com>\r\n{message}");
    assert!(matches!(
        rewrite_mime(own.as_bytes(), &with),
        Err(MimeError::HasListUnsubscribe)
    ));
    assert!(rewrite_mime(own.as_bytes(), &options()).is_ok());
}

/// A 7bit HTML part with one line of 20 links, 733 octets: within SMTP's 998 as sent, past
/// it once each link is tracked.
fn long_line_html() -> String {
    let links: String = (0..20)
        .map(|i| format!("<a href=\"https://e.example/{i}\">{i}</a>"))
        .collect::<Vec<_>>()
        .join("");
    let html = format!("<body>{links}</body>");
    assert!(html.len() <= transfer::MAX_LINE_OCTETS);
    html
}

#[test]
fn a_7bit_part_whose_lines_would_pass_998_octets_is_written_in_quoted_printable() {
    let html = long_line_html();
    let message = format!(
        "From: a@example.com\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
         --b\r\nContent-Type: text/html; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\
         X-Kept: yes\r\n\r\n{html}\r\n--b--\r\n"
    );
    let rewritten = rewrite_mime(message.as_bytes(), &options()).unwrap();
    let output = String::from_utf8(rewritten.message).unwrap();
    let (head, rest) = output.split_once("X-Kept: yes\r\n\r\n").unwrap();
    assert!(
        head.ends_with("Content-Transfer-Encoding: quoted-printable\r\n"),
        "{head}"
    );
    assert!(!head.contains("7bit"), "the old header is gone: {head}");
    let body = rest.strip_suffix("\r\n--b--\r\n").unwrap();
    assert!(body.lines().all(|line| line.len() <= 76), "{body}");
    let decoded = quoted_printable::decode(body, quoted_printable::ParseMode::Strict).unwrap();
    let expected = rewrite_str(&html, &options()).unwrap().html;
    assert!(expected.len() > transfer::MAX_LINE_OCTETS);
    assert_eq!(String::from_utf8(decoded).unwrap(), expected);
    // Everything before the part's headers is as it was.
    let before = message.split("Content-Type: text/html").next().unwrap();
    assert!(output.starts_with(before));
    let part = &rewritten.report.html_parts[0];
    assert_eq!(part.transfer_encoding, TransferEncoding::QuotedPrintable);
    assert_eq!(part.reencoded_from, Some(TransferEncoding::SevenBit));
}

#[test]
fn a_message_that_is_one_long_html_part_gets_the_header_among_its_own() {
    let html = long_line_html();
    // No Content-Transfer-Encoding (7bit by default), and unsubscribe headers going in.
    let message =
        format!("From: a@example.com\r\nContent-Type: text/html\r\nSubject: s\r\n\r\n{html}\r\n");
    let mut options = options();
    options.unsubscribe = true;
    let rewritten = rewrite_mime(message.as_bytes(), &options).unwrap();
    let output = String::from_utf8(rewritten.message).unwrap();
    let (head, body) = output.split_once("\r\n\r\n").unwrap();
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(
        &lines[..3],
        [
            "From: a@example.com",
            "Content-Type: text/html",
            "Subject: s"
        ]
    );
    assert!(lines[3].starts_with("List-Unsubscribe: <"), "{head}");
    assert_eq!(
        lines.last(),
        Some(&"Content-Transfer-Encoding: quoted-printable")
    );
    assert!(body.lines().all(|line| line.len() <= 76));
    let decoded = quoted_printable::decode(body, quoted_printable::ParseMode::Robust).unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap().trim_end(),
        rewrite_str(&html, &options).unwrap().html
    );
}

#[test]
fn a_7bit_part_within_998_octets_keeps_its_encoding() {
    let rewritten = rewrite_mime(ALTERNATIVE.as_bytes(), &options()).unwrap();
    let part = &rewritten.report.html_parts[0];
    assert_eq!(part.transfer_encoding, TransferEncoding::SevenBit);
    assert_eq!(part.reencoded_from, None);
}
