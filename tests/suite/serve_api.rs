//! The rewrite API over real sockets, called as senders call it: from curl and from
//! Python's `requests`, against a spawned `mailtrack serve` whose admin listener needs a
//! bearer token. Every answer is checked against the library's own output, byte for byte.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailtrack::link::{LinkTags, MessageId, MessageStamp, SendTime};
use mailtrack::rewrite::mime::rewrite_mime;
use mailtrack::rewrite::{rewrite_str, RewriteOptions};
use mailtrack::Config;
use serde_json::{json, Value};

use common::ServeProcess;

const TOKEN: &str = "3f9c2a7d1b6e4f08a5c3d2e1f0b9a8c7d6e5f4a3b2c1d0e9";

/// The body cap the server runs with: the 100 KB newsletter fits, 300 KB does not.
const MAX_BODY: usize = 256 * 1024;

/// A config in `dir` for a serve whose admin listener needs `TOKEN`.
fn write_config(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let path = dir.join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n[tracking]\nbase_url = \"https://t.example.com\"\n\
         [server]\nhttp = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\nmax_body_bytes = {MAX_BODY}\n\
         [log]\nformat = \"json\"\n[events]\nfile = \"events.jsonl\"\nspool_dir = \"spool\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running serve on `write_config`'s config: its folder and process (bind both, or they end
/// at once), the config as the library loads it, and its admin URL.
struct Served {
    _dir: tempfile::TempDir,
    config: Config,
    _process: ServeProcess,
    admin: String,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path());
    let config = Config::load(Some(&path)).unwrap();
    let process = ServeProcess::spawn(&path, 1);
    let admin = format!("http://{}", process.admin_addr());
    Served {
        _dir: dir,
        config,
        _process: process,
        admin,
    }
}

fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(path),
    )
    .unwrap()
}

/// A JSON POST with curl: the status and the body.
fn curl(url: &str, token: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    curl_as(url, "application/json", token, body)
}

/// A POST of `body` as `content_type` with curl: the status and the body.
fn curl_as(url: &str, content_type: &str, token: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-H",
        &format!("Content-Type: {content_type}"),
    ]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let mut child = command
        .args(["--data-binary", "@-", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        // curl may stop reading when the server answers early (413); that is the test.
        let _ = std::io::Write::write_all(&mut stdin, &body);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "curl failed");
    let at = output.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let status = std::str::from_utf8(&output.stdout[at + 1..])
        .unwrap()
        .parse()
        .unwrap();
    (status, output.stdout[..at].to_vec())
}

/// Python's `requests` posts each of `calls` (`[path, token or null, JSON body]`) and
/// prints `[status, JSON answer]` for each.
fn python(admin: &str, calls: &Value) -> Vec<(u16, Value)> {
    let script = r#"
import json, sys, requests
admin, calls = sys.argv[1], json.load(sys.stdin)
out = []
for path, token, body in calls:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.post(admin + path, json=body, headers=headers, timeout=30)
    out.append([r.status_code, r.json()])
print(json.dumps(out))
"#;
    run_python(script, &[admin], calls)
}

/// Python's `requests` posts each of `calls` (`[path, query fields, Content-Type, body as
/// base64]`) with `params=` and `data=`, as a sender posts a document as itself, and prints
/// `[status, JSON answer]` for each.
fn python_documents(admin: &str, calls: &Value) -> Vec<(u16, Value)> {
    let script = r#"
import base64, json, sys, requests
admin, token, calls = sys.argv[1], sys.argv[2], json.load(sys.stdin)
out = []
for path, params, content_type, body in calls:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    r = requests.post(admin + path, params=params, data=base64.b64decode(body),
                      headers=headers, timeout=30)
    out.append([r.status_code, r.json()])
print(json.dumps(out))
"#;
    run_python(script, &[admin, TOKEN], calls)
}

/// Runs `script` with `args`, `calls` as JSON on its standard input; what it prints.
fn run_python(script: &str, args: &[&str], calls: &Value) -> Vec<(u16, Value)> {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        calls.to_string().as_bytes(),
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The send time and message tags every request here gives.
const SEND_TIME: &str = "2026-12-02T09:00:00Z";
const MESSAGE_TAGS: &str = "campaign:spring;list:news";

/// The library's options for what the requests here give.
fn options(config: &Config, id: &str) -> RewriteOptions {
    let mut options = RewriteOptions::from_config(config, MessageId::new(id).unwrap()).unwrap();
    options.send_time = SendTime::parse(SEND_TIME).unwrap();
    options.message_tags = LinkTags::parse(MESSAGE_TAGS).unwrap();
    options
}

#[test]
fn curl_and_python_get_what_the_library_makes() {
    let Served {
        config,
        admin,
        _dir,
        _process,
    } = serve();
    let newsletter = String::from_utf8(corpus("emails/mailchimp/simple-basic.html")).unwrap();
    let expected_html = rewrite_str(&newsletter, &options(&config, "news-1")).unwrap();

    // curl, HTML.
    let request = json!({
        "message_id": "news-1", "send_time": SEND_TIME, "message_tags": MESSAGE_TAGS, "html": newsletter,
    });
    let (status, body) = curl(
        &format!("{admin}/v1/rewrite/html"),
        Some(TOKEN),
        request.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["html"].as_str().unwrap(), expected_html.html);
    assert_eq!(
        answer["report"],
        serde_json::to_value(&expected_html.report).unwrap()
    );

    // curl, MIME, as text.
    let gbk = corpus("mime/gbk.eml");
    let expected_gbk = rewrite_mime(&gbk, &options(&config, "zh-1")).unwrap();
    let request = json!({
        "message_id": "zh-1", "send_time": SEND_TIME, "message_tags": MESSAGE_TAGS,
        "message": String::from_utf8(gbk.clone()).unwrap(),
    });
    let (status, body) = curl(
        &format!("{admin}/v1/rewrite/mime"),
        Some(TOKEN),
        request.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["message"].as_str().unwrap().as_bytes(),
        expected_gbk.message
    );
    assert_eq!(
        answer["report"],
        serde_json::to_value(&expected_gbk.report).unwrap()
    );

    // Python, HTML and MIME (as base64), and both links.
    let nested = corpus("mime/nested.eml");
    let expected_nested = rewrite_mime(&nested, &options(&config, "n-1")).unwrap();
    let calls = json!([
        ["/v1/rewrite/html", TOKEN, { "message_id": "news-1", "send_time": SEND_TIME, "message_tags": MESSAGE_TAGS, "html": newsletter }],
        ["/v1/rewrite/mime", TOKEN, { "message_id": "n-1", "send_time": SEND_TIME, "message_tags": MESSAGE_TAGS, "message_base64": STANDARD.encode(&nested) }],
        ["/v1/links/click", TOKEN, { "message_id": "c-1", "send_time": SEND_TIME, "message_tags": MESSAGE_TAGS, "url": "https://example.com/a b?x=1", "tags": "campaign:spring" }],
        ["/v1/links/open", TOKEN, { "message_id": "c-1", "send_time": SEND_TIME, "message_tags": MESSAGE_TAGS }],
    ]);
    let answers = python(&admin, &calls);
    assert_eq!(
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        [200, 200, 200, 200],
        "{answers:?}"
    );
    assert_eq!(answers[0].1["html"].as_str().unwrap(), expected_html.html);
    let message = STANDARD
        .decode(answers[1].1["message_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(message, expected_nested.message);
    assert_eq!(
        answers[1].1["report"],
        serde_json::to_value(&expected_nested.report).unwrap()
    );
    let signer = config.signer().unwrap();
    let id = MessageStamp::new(
        MessageId::new("c-1").unwrap(),
        SendTime::parse(SEND_TIME).unwrap(),
        LinkTags::parse(MESSAGE_TAGS).unwrap(),
    );
    let tags = LinkTags::parse("campaign:spring").unwrap();
    let click = signer
        .click_url("https://example.com/a b?x=1", &id, &tags)
        .unwrap();
    assert_eq!(answers[2].1["tracked_url"], click);
    assert_eq!(answers[2].1["target"], "https://example.com/a%20b?x=1");
    assert_eq!(answers[2].1["tags"], json!({ "campaign": ["spring"] }));
    assert_eq!(answers[3].1["url"], signer.open_url(&id));
}

#[test]
fn bad_requests_get_a_4xx_that_says_what_was_wrong() {
    let Served {
        admin,
        _dir,
        _process,
        ..
    } = serve();
    let html = json!({ "message_id": "m-1", "html": "<a href=\"https://a.example/\">a</a>" });

    // No token, a wrong one: 401, from curl and from Python.
    let (status, body) = curl(
        &format!("{admin}/v1/rewrite/html"),
        None,
        html.to_string().as_bytes(),
    );
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _) = curl(
        &format!("{admin}/v1/rewrite/html"),
        Some("not-the-token"),
        html.to_string().as_bytes(),
    );
    assert_eq!(status, 401);

    // Over admin.max_body_bytes: 413.
    let big = json!({ "message_id": "m-1", "html": "x".repeat(MAX_BODY + 1) });
    let (status, body) = curl(
        &format!("{admin}/v1/rewrite/html"),
        Some(TOKEN),
        big.to_string().as_bytes(),
    );
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));

    let unclosed = "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
        Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\
        Content-Type: text/html\r\n\r\n<a href=\"https://a.example/\">a</a>\r\n--o--\r\n";
    let dkim = String::from_utf8(corpus("mime/dkim-signed.eml")).unwrap();
    let calls = json!([
        ["/v1/rewrite/html", null, html],
        ["/v1/rewrite/html", "wrong", html],
        ["/v1/rewrite/mime", TOKEN, { "message_id": "m-1", "message": unclosed }],
        ["/v1/rewrite/mime", TOKEN, { "message_id": "m-1", "message": dkim }],
        ["/v1/rewrite/html", TOKEN, { "message_id": "no spaces", "html": "" }],
        ["/v1/rewrite/html", TOKEN, { "message_id": "m-1", "htlm": "" }],
        ["/v1/links/click", TOKEN, { "message_id": "m-1", "url": "mailto:a@b.example" }],
        ["/v1/links/click", TOKEN, { "message_id": "m-1", "url": "https://a.example/", "tags": "nocolon" }],
        ["/v1/links/open", TOKEN, { "message_id": "m-1", "send_time": "yesterday" }],
        ["/v1/links/open", TOKEN, { "message_id": "m-1", "message_tags": "a:b;c" }],
    ]);
    let answers = python(&admin, &calls);
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        statuses,
        [401, 401, 422, 422, 400, 400, 400, 400, 400, 400],
        "{answers:?}"
    );
    let errors: Vec<&str> = answers
        .iter()
        .map(|a| a.1["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors[2],
        "MIME part 1: multipart/alternative: the closing delimiter `--i--` is missing"
    );
    assert_eq!(answers[2].1["part"], "1");
    assert!(errors[3].contains("DKIM-Signature"), "{}", errors[3]);
    assert!(
        errors[4].starts_with("message_id \"no spaces\": "),
        "{}",
        errors[4]
    );
    assert!(errors[5].contains("unknown field `htlm`"), "{}", errors[5]);
    assert!(
        errors[6].starts_with("url \"mailto:a@b.example\": "),
        "{}",
        errors[6]
    );
    assert!(errors[7].starts_with("tags \"nocolon\": "), "{}", errors[7]);
    assert!(
        errors[8].starts_with("send_time \"yesterday\": "),
        "{}",
        errors[8]
    );
    assert!(
        errors[9].starts_with("message_tags \"a:b;c\": "),
        "{}",
        errors[9]
    );
}

#[test]
fn documents_sent_as_themselves_get_what_the_library_makes() {
    let Served {
        config,
        admin,
        _dir,
        _process,
    } = serve();
    let newsletter = corpus("emails/mailchimp/simple-basic.html");
    let mut expected_options = options(&config, "news-1");
    expected_options.pixel = mailtrack::rewrite::PixelPlacement::BodyStart;
    let expected_html =
        rewrite_str(std::str::from_utf8(&newsletter).unwrap(), &expected_options).unwrap();
    // The fields as a query string, percent-encoded as curl users write them.
    let query = "message_id=news-1&send_time=2026-12-02T09%3A00%3A00Z\
                 &message_tags=campaign%3Aspring%3Blist%3Anews&pixel=body_start";

    // curl, HTML as text/html.
    let (status, body) = curl_as(
        &format!("{admin}/v1/rewrite/html?{query}"),
        "text/html; charset=utf-8",
        Some(TOKEN),
        &newsletter,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["html"].as_str().unwrap(), expected_html.html);
    assert_eq!(
        answer["report"],
        serde_json::to_value(&expected_html.report).unwrap()
    );

    // A message in GBK, sent 8bit: not UTF-8, so JSON could carry it only as base64.
    let (html, _, _) = encoding_rs::GBK.encode(
        "<html><body><p>春季促销</p><a href=\"https://shop.example.cn/sale\">立即购买</a></body></html>",
    );
    let mut gbk = b"From: shop@example.cn\r\nSubject: sale\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/html; charset=GBK\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    gbk.extend_from_slice(&html);
    assert!(std::str::from_utf8(&gbk).is_err());
    let expected_gbk = rewrite_mime(&gbk, &options(&config, "zh-1")).unwrap();
    let alternative = corpus("mime/alternative-qp.eml");
    let expected_alternative = rewrite_mime(&alternative, &options(&config, "qp-1")).unwrap();
    let fields = |id: &str| json!({ "message_id": id, "send_time": SEND_TIME, "message_tags": MESSAGE_TAGS });

    // Python: both messages as message/rfc822, and the HTML again.
    let calls = json!([
        ["/v1/rewrite/mime", fields("zh-1"), "message/rfc822", STANDARD.encode(&gbk)],
        ["/v1/rewrite/mime", fields("qp-1"), "message/rfc822", STANDARD.encode(&alternative)],
        ["/v1/rewrite/html", { "message_id": "news-1", "send_time": SEND_TIME, "message_tags": MESSAGE_TAGS, "pixel": "body_start" },
         "text/html", STANDARD.encode(&newsletter)],
    ]);
    let answers = python_documents(&admin, &calls);
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 200], "{answers:?}");
    let message = STANDARD
        .decode(answers[0].1["message_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(message, expected_gbk.message);
    assert_eq!(
        answers[0].1["report"],
        serde_json::to_value(&expected_gbk.report).unwrap()
    );
    assert_eq!(
        answers[1].1["message"].as_str().unwrap().as_bytes(),
        expected_alternative.message
    );
    assert_eq!(answers[2].1["html"].as_str().unwrap(), expected_html.html);

    // What is wrong with a document sent as itself is named too.
    let bad = json!([
        ["/v1/rewrite/html", { "message_id": "m-1", "pixle": "body_end" }, "text/html", STANDARD.encode("<p>")],
        ["/v1/rewrite/html", { "send_time": SEND_TIME }, "text/html", STANDARD.encode("<p>")],
        ["/v1/rewrite/html", { "message_id": "m-1", "pixel": "top" }, "text/html", STANDARD.encode("<p>")],
        ["/v1/rewrite/html", { "message_id": "m-1" }, "text/html", STANDARD.encode(&html)],
        ["/v1/rewrite/html", { "message_id": "m-1" }, "text/html; charset=gbk", STANDARD.encode(&html)],
        ["/v1/rewrite/html", { "message_id": "m-1" }, "application/json", STANDARD.encode("{}")],
        ["/v1/rewrite/mime", { "message_id": "m-1" }, "message/rfc822", STANDARD.encode(corpus("mime/dkim-signed.eml"))],
    ]);
    let answers = python_documents(&admin, &bad);
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [400, 400, 400, 400, 415, 400, 422], "{answers:?}");
    let expected = [
        "no field \"pixle\"",
        "message_id is required",
        "pixel \"top\" is not one of body_end, body_start",
        "not UTF-8",
        "/v1/rewrite/mime",
        "not in the query string",
        "DKIM-Signature",
    ];
    for ((_, answer), expected) in answers.iter().zip(expected) {
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "{error:?} does not say {expected:?}"
        );
    }
}
