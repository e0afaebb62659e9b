//! The MIME rewriter on a corpus of real-shaped messages (tests/corpus/mime/), checked with
//! parsers that are not its own: `mailparse`'s whole-message parser finds the HTML parts in
//! the input and the output, Python's `email` package reads every rewritten message, and
//! headless Chromium renders a rewritten GBK part.
//!
//! For each message: every byte outside the HTML parts is unchanged; each rewritten part
//! decodes, in its own charset, to exactly what `rewrite_str` makes of the decoded original;
//! quoted-printable lines stay within 76 characters; one pixel per message.

use crate::common;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mailtrack::link::{LinkTags, MessageId, SendTime};
use mailtrack::rewrite::mime::{rewrite_mime, MimeError, PartOutcome, RewrittenMime};
use mailtrack::rewrite::{rewrite_str, PixelPlacement, RewriteOptions};

/// Each corpus message, the part the pixel goes in, and the HTML parts passed through.
const CORPUS: &[(&str, Option<&str>, &[&str])] = &[
    ("alternative-qp.eml", Some("2"), &[]),
    ("alternative-base64.eml", Some("2"), &[]),
    ("related-cid.eml", Some("1"), &[]),
    ("mixed-pdf.eml", Some("1.2"), &[]),
    ("nested.eml", Some("1.2.1"), &["2"]),
    ("gbk.eml", Some("2"), &[]),
    ("iso-2022-jp.eml", Some("1"), &["2"]),
    ("single-lf.eml", Some(""), &[]),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/mime")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(name)).unwrap()
}

/// Options with a fixed send time and message tags, so that two rewrites are the same.
fn options() -> RewriteOptions {
    let mut options = RewriteOptions::new(
        mailtrack::testing::fixed_signer(),
        MessageId::new("m-2026-12-02.1").unwrap(),
    );
    options.send_time = SendTime::parse("2026-12-02T09:00:00Z").unwrap();
    options.message_tags = LinkTags::parse("campaign:spring").unwrap();
    options
}

/// An HTML part as `mailparse` finds it.
struct HtmlBody {
    /// Its body as written, as a range of the message.
    raw: Range<usize>,
    /// Its body out of its transfer encoding.
    content: Vec<u8>,
    /// Its charset label.
    charset: String,
    /// Whether it is quoted-printable.
    quoted_printable: bool,
}

/// Every `text/html` part of `message`, in document order, found by `mailparse`.
fn html_bodies(message: &[u8]) -> Vec<HtmlBody> {
    fn walk(part: &mailparse::ParsedMail<'_>, base: usize, found: &mut Vec<HtmlBody>) {
        if part.ctype.mimetype == "text/html" {
            let encoded = part.get_body_encoded();
            let raw = match &encoded {
                mailparse::body::Body::Base64(b) | mailparse::body::Body::QuotedPrintable(b) => {
                    b.get_raw()
                }
                mailparse::body::Body::SevenBit(b) | mailparse::body::Body::EightBit(b) => {
                    b.get_raw()
                }
                mailparse::body::Body::Binary(b) => b.get_raw(),
            };
            // Offsets from addresses: mailparse's slices point into the message.
            let start = raw.as_ptr() as usize - base;
            found.push(HtmlBody {
                raw: start..start + raw.len(),
                content: part.get_body_raw().unwrap(),
                charset: part.ctype.charset.clone(),
                quoted_printable: matches!(encoded, mailparse::body::Body::QuotedPrintable(_)),
            });
        }
        for sub in &part.subparts {
            walk(sub, base, found);
        }
    }
    let parsed = mailparse::parse_mail(message).unwrap();
    let mut found = Vec::new();
    walk(&parsed, message.as_ptr() as usize, &mut found);
    found
}

/// The bytes of `message` outside `ranges`, piece by piece.
fn outside<'a>(message: &'a [u8], ranges: &[Range<usize>]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut from = 0;
    for range in ranges {
        pieces.push(&message[from..range.start]);
        from = range.end;
    }
    pieces.push(&message[from..]);
    pieces
}

fn decode(charset: &str, bytes: &[u8]) -> String {
    let encoding = encoding_rs::Encoding::for_label(charset.as_bytes()).unwrap();
    let (text, malformed) = encoding.decode_without_bom_handling(bytes);
    assert!(!malformed, "not valid {charset}");
    text.into_owned()
}

/// What `rewrite_str` makes of each rewritten part's original HTML; `None` for the parts
/// passed through.
fn expected_parts(name: &str, original: &[u8], rewritten: &RewrittenMime) -> Vec<Option<String>> {
    let (_, pixel_part, _) = CORPUS.iter().find(|(n, ..)| *n == name).unwrap();
    let before = html_bodies(original);
    assert_eq!(before.len(), rewritten.report.html_parts.len(), "{name}");
    before
        .iter()
        .zip(&rewritten.report.html_parts)
        .map(|(body, report)| {
            let PartOutcome::Rewritten { .. } = report.outcome else {
                return None;
            };
            let mut options = options();
            if Some(report.part.number().as_str()) != *pixel_part {
                options.pixel = PixelPlacement::Omitted;
            }
            let html = decode(&body.charset, &body.content);
            Some(rewrite_str(&html, &options).unwrap().html)
        })
        .collect()
}

#[test]
fn every_corpus_message_is_rewritten_in_place() {
    for (name, pixel_part, untouched) in CORPUS {
        let original = read(name);
        let rewritten = rewrite_mime(&original, &options()).unwrap();
        let report = &rewritten.report;
        assert_eq!(
            report.pixel_part.as_ref().map(|p| p.number()).as_deref(),
            *pixel_part,
            "{name}"
        );
        let passed: Vec<String> = report
            .html_parts
            .iter()
            .filter(|p| matches!(p.outcome, PartOutcome::Untouched { .. }))
            .map(|p| p.part.number())
            .collect();
        assert_eq!(passed, *untouched, "{name}");
        assert!(report.tracked() >= 1, "{name}");

        let before = html_bodies(&original);
        let after = html_bodies(&rewritten.message);
        assert_eq!(before.len(), after.len(), "{name}");
        let ranges = |bodies: &[HtmlBody]| bodies.iter().map(|b| b.raw.clone()).collect::<Vec<_>>();
        assert_eq!(
            outside(&original, &ranges(&before)),
            outside(&rewritten.message, &ranges(&after)),
            "{name}: bytes outside the HTML parts changed"
        );
        let expected = expected_parts(name, &original, &rewritten);
        for ((old, new), expected) in before.iter().zip(&after).zip(&expected) {
            match expected {
                Some(html) => assert_eq!(&decode(&new.charset, &new.content), html, "{name}"),
                None => assert_eq!(
                    original[old.raw.clone()],
                    rewritten.message[new.raw.clone()],
                    "{name}: a part passed through changed"
                ),
            }
            if new.quoted_printable {
                for line in rewritten.message[new.raw.clone()].split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    assert!(line.len() <= 76, "{name}: a QP line of {}", line.len());
                }
            }
        }
        let in_parts: usize = after
            .iter()
            .map(|b| memchr::memmem::find_iter(&b.content, b"/CI0/").count())
            .sum();
        assert_eq!(in_parts, 1, "{name}: one pixel per message");
    }
}

#[test]
fn a_dkim_signed_message_is_refused() {
    let error = rewrite_mime(&read("dkim-signed.eml"), &options()).unwrap_err();
    assert!(matches!(error, MimeError::DkimSigned), "{error}");
}

#[test]
fn the_gbk_part_keeps_its_chinese_link_text() {
    let rewritten = rewrite_mime(&read("gbk.eml"), &options()).unwrap();
    let after = html_bodies(&rewritten.message);
    let html = decode("gbk", &after[0].content);
    assert!(html.contains(">点击这里查看新品</a>"), "{html}");
    // The link with Chinese in its query is no RFC 3986 URI: reported, as for HTML.
    let report = rewritten.report.rewritten().next().unwrap();
    assert_eq!(
        report.skipped[0].url,
        "https://shop.example.cn/spring?来源=邮件&id=7"
    );
    assert_eq!(report.tracked[0].target, "https://shop.example.cn/help");
    assert!(html.contains(&format!(
        "href=\"{}\">联系客服</a>",
        report.tracked[0].tracked_url
    )));
}

/// Python's `email` package reads `files`: for each, its defects and the text of each HTML
/// part (`get_content()`, decoded in the part's charset), as JSON.
fn python_html_parts(files: &[PathBuf]) -> serde_json::Value {
    let script = r#"
import email, json, sys
from email import policy
out = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        message = email.message_from_bytes(f.read(), policy=policy.default)
    defects = [str(d) for part in message.walk() for d in part.defects]
    html = [part.get_content().replace("\r\n", "\n") for part in message.walk()
            if part.get_content_type() == "text/html"]
    out.append({"defects": defects, "html": html})
print(json.dumps(out))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn python_reads_every_rewritten_message_and_its_html() {
    let dir = tempfile::tempdir().unwrap();
    let (mut originals, mut outputs, mut expected) = (Vec::new(), Vec::new(), Vec::new());
    for (name, ..) in CORPUS {
        let original = read(name);
        let rewritten = rewrite_mime(&original, &options()).unwrap();
        expected.push(expected_parts(name, &original, &rewritten));
        let path = dir.path().join(name);
        std::fs::write(&path, &rewritten.message).unwrap();
        outputs.push(path);
        originals.push(corpus_dir().join(name));
    }
    let before = python_html_parts(&originals);
    let after = python_html_parts(&outputs);
    for (i, (name, ..)) in CORPUS.iter().enumerate() {
        assert_eq!(after[i]["defects"], serde_json::json!([]), "{name}");
        let html = after[i]["html"].as_array().unwrap();
        assert_eq!(html.len(), expected[i].len(), "{name}");
        for (j, part) in expected[i].iter().enumerate() {
            let want = match part {
                Some(rewritten) => serde_json::Value::from(rewritten.replace("\r\n", "\n")),
                None => before[i]["html"][j].clone(),
            };
            assert_eq!(html[j], want, "{name}: HTML part {j}");
        }
    }
}

#[test]
fn chromium_renders_the_rewritten_gbk_part_with_its_chinese_text() {
    if !common::installed("chromium") {
        eprintln!("chromium is not installed: skipped");
        return;
    }
    let rewritten = rewrite_mime(&read("gbk.eml"), &options()).unwrap();
    let after = html_bodies(&rewritten.message);
    let dir = tempfile::tempdir().unwrap();
    // The part's own bytes, still GBK; its <meta> says so, as a mail client's viewer is told.
    let page = dir.path().join("part.html");
    std::fs::write(&page, &after[0].content).unwrap();
    let profile = dir.path().join("profile");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let dom = String::from_utf8(output.stdout).unwrap();
    assert!(dom.contains("点击这里查看新品</a>"), "{dom}");
    assert!(dom.contains("您好，春季新品已上架。"), "{dom}");
    let tracked = &rewritten.report.rewritten().next().unwrap().tracked[0].tracked_url;
    assert!(dom.contains(&tracked.replace('&', "&amp;")), "{dom}");
}

/// A 7bit part whose one line of links passes SMTP's 998 octets once they are tracked is
/// written in quoted-printable, with its header saying so; Python's `email` reads it without
/// a defect, and its HTML is what `rewrite_str` makes.
#[test]
fn python_reads_a_part_written_in_quoted_printable_for_its_long_lines() {
    let links: String = (0..20)
        .map(|i| format!("<a href=\"https://e.example/{i}\">{i}</a>"))
        .collect();
    let html = format!("<body>{links}</body>");
    let message = format!(
        "From: a@example.com\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
         --b\r\nContent-Type: text/html; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
         {html}\r\n--b--\r\n"
    );
    let rewritten = rewrite_mime(message.as_bytes(), &options()).unwrap();
    let longest = rewritten
        .message
        .split(|&b| b == b'\n')
        .map(<[u8]>::len)
        .max();
    assert!(longest.unwrap() <= 78, "every line within 76 and its CRLF");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long-lines.eml");
    std::fs::write(&path, &rewritten.message).unwrap();
    let read = python_html_parts(&[path]);
    assert_eq!(read[0]["defects"], serde_json::json!([]));
    let expected = rewrite_str(&html, &options()).unwrap().html;
    assert!(
        expected.len() > 998,
        "the rewritten line is past SMTP's limit"
    );
    assert_eq!(read[0]["html"][0], serde_json::Value::from(expected));
}
