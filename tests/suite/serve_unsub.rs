//! The one-click unsubscribe link (RFC 8058) through a spawned `mailtrack serve` with the
//! file sink, over real sockets: a one-click `POST` records exactly one `Subscription` event,
//! valid against the schema; a `GET` (a link scanner's, say) shows the page and records
//! none; a tampered link gets 400 and records nothing; headless Chromium clicking the page's
//! button records one; and a MIME message rewritten through the API with `"unsubscribe"`
//! carries both headers, whose URL, posted, records one.

use crate::common;
use crate::support_redis::schema;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use common::{ServeProcess, ADMIN_ON_A_FREE_PORT};
use mailtrack::testing::{fixed_signer, request_target, stamp_v2};

const CHROMIUM: &str = "chromium";

/// The one-click form, as a mail client posts it.
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";
const FORM: &str = "application/x-www-form-urlencoded";

/// A config in `dir`: the fixed ring, plain HTTP and the admin listener on free ports, JSON
/// logs, and the file sink.
fn write_config(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    let path = dir.join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n[tracking]\nbase_url = \"https://track.example.com\"\n\
         {ADMIN_ON_A_FREE_PORT}[server]\nhttp = \"127.0.0.1:0\"\nshutdown_grace = 5\n\
         [log]\nformat = \"json\"\n[events]\nsink = \"file\"\nfile = \"events.jsonl\"\n\
         spool_dir = \"spool\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The request-target of the unsubscribe link of message `id`.
fn unsubscribe(id: &str) -> String {
    let link = fixed_signer()
        .unsubscribe_url(&stamp_v2(id, "list:news"))
        .unwrap();
    request_target(&link).to_owned()
}

/// What a request got.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |value| value.to_str().unwrap())
    }
}

/// One HTTP/1.1 request on a new connection, with `body`; `target` goes on the wire as given.
async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "track.example.com");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn post(addr: SocketAddr, target: &str, content_type: &str, body: &str) -> Answer {
    let headers = [("content-type", content_type)];
    request(addr, "POST", target, &headers, body.as_bytes()).await
}

/// Stops `serve` (which drains the queue into the sink) and returns the events written.
fn stop_and_read_events(mut serve: ServeProcess, dir: &Path) -> Vec<Value> {
    serve.stop();
    let sink = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    sink.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The events of message `id`.
fn of<'a>(events: &'a [Value], id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["mail"]["messageId"] == id)
        .collect()
}

/// `target` with the first character of its MAC replaced by another.
fn with_flipped_mac(target: &str) -> String {
    let at = target.rfind('/').unwrap() + 1;
    let first = if &target[at..at + 1] == "A" { "B" } else { "A" };
    format!("{}{first}{}", &target[..at], &target[at + 1..])
}

#[test]
fn one_click_post_records_one_event_and_gets_tampered_links_record_none() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::spawn(&write_config(dir.path()), 1);
    let addr = serve.addr();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // RFC 8058's POST, in both encodings it allows.
        let answer = post(addr, &unsubscribe("post-1"), FORM, ONE_CLICK).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "unsubscribed\n")
        );
        let multipart =
            "--b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n\
                         One-Click\r\n--b0undary--\r\n";
        let content_type = "multipart/form-data; boundary=b0undary";
        let answer = post(
            addr,
            &unsubscribe("post-multipart"),
            content_type,
            multipart,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);

        // GET and HEAD, as a link scanner sends them: the page, and nothing recorded.
        let scanner = [("user-agent", "Mozilla/5.0 (compatible; SafeLinks scanner)")];
        let page = request(addr, "GET", &unsubscribe("get-1"), &scanner, b"").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
        assert!(page.header("cache-control").contains("no-store"));
        assert_eq!(page.header("x-robots-tag"), "noindex");
        let policy = page.header("content-security-policy");
        assert!(policy.contains("default-src 'none'") && policy.contains("form-action 'self'"));
        assert_eq!(page.body.matches("<form method=\"post\">").count(), 1);
        assert_eq!(page.body.matches("<button").count(), 1);
        let head = request(addr, "HEAD", &unsubscribe("get-1"), &scanner, b"").await;
        assert_eq!((head.status, head.body.as_str()), (200, ""));

        // Tampered links: 400 to every method, never a redirect.
        let original = unsubscribe("tamper-1");
        let later = original.replacen("/2~tpfds0~", "/2~tpfds1~", 1);
        assert_ne!(later, original);
        let open = fixed_signer().open_url(&stamp_v2("tamper-1", "list:news"));
        let open_under_us0 = request_target(&open).replacen("/CI0/", "/US0/", 1);
        for target in [with_flipped_mac(&original), later, open_under_us0] {
            let answer = post(addr, &target, FORM, ONE_CLICK).await;
            assert_eq!(answer.status, 400, "POST {target}");
            let answer = request(addr, "GET", &target, &[], b"").await;
            assert_eq!(answer.status, 400, "GET {target}");
            assert_eq!(answer.header("location"), "");
        }
        for target in ["/US0/", "/US0/2~tpfds0/x/AAAA=2", "/US0/nothing"] {
            assert_eq!(
                post(addr, target, FORM, ONE_CLICK).await.status,
                400,
                "{target}"
            );
        }

        // A verified link with any other body, or no form at all: 400, nothing recorded.
        let target = unsubscribe("body-1");
        let long = format!("{ONE_CLICK}&pad={}", "x".repeat(2048));
        for (content_type, body) in [
            (FORM, "List-Unsubscribe=Two-Clicks"),
            (FORM, ""),
            (FORM, "List-Unsubscribe=One-Click&email=a%40example.com"),
            (FORM, long.as_str()),
            ("text/plain", ONE_CLICK),
            ("application/json", "{\"List-Unsubscribe\":\"One-Click\"}"),
        ] {
            let answer = post(addr, &target, content_type, body).await;
            assert_eq!(answer.status, 400, "{content_type} {body:.40}");
        }
        let put = request(addr, "PUT", &target, &[], ONE_CLICK.as_bytes()).await;
        assert_eq!(put.status, 405);
        assert_eq!(put.header("allow"), "GET, HEAD, POST");
    });
    let events = stop_and_read_events(serve, dir.path());
    let posted = of(&events, "post-1");
    assert_eq!(posted.len(), 1, "{events:?}");
    let event = posted[0];
    assert_eq!(event["eventType"], "Subscription");
    assert_eq!(event["subscription"]["source"], "UnsubscribeHeader");
    assert_eq!(
        event["subscription"]["newTopicPreferences"]["unsubscribeAll"],
        true
    );
    assert_eq!(
        event["subscription"]["oldTopicPreferences"]["unsubscribeAll"],
        false
    );
    assert_eq!(event["mail"]["tags"]["list"][0], "news");
    assert_eq!(event["mailtrack"]["method"], "POST");
    assert!(event["mailtrack"]["verdict"].is_object(), "{event}");
    assert_eq!(of(&events, "post-multipart").len(), 1, "{events:?}");
    assert_eq!(events.len(), 2, "nothing else is recorded: {events:?}");
    let validator = schema::validator();
    for event in &events {
        schema::assert_valid(&validator, event);
    }
}

#[test]
fn a_mime_message_rewritten_with_unsubscribe_gets_both_headers_and_its_url_unsubscribes() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::spawn(&write_config(dir.path()), 1);
    let (addr, admin) = (serve.addr(), serve.admin_addr());
    let message = "From: news@example.com\r\nTo: a@example.com\r\nSubject: News\r\n\
                   Content-Type: text/html; charset=utf-8\r\n\r\n\
                   <body><a href=\"https://example.com/\">Read</a> \
                   <a href=\"{{amazonSESUnsubscribeUrl}}\">Unsubscribe</a></body>\r\n";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (header_url, page_url) = runtime.block_on(async {
        let body = json!({"message_id": "mime-1", "message": message, "unsubscribe": true});
        let headers = [("content-type", "application/json")];
        let body = body.to_string();
        let answer = request(admin, "POST", "/v1/rewrite/mime", &headers, body.as_bytes()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let answer: Value = serde_json::from_str(&answer.body).unwrap();
        let rewritten = answer["message"].as_str().unwrap();
        let (head, _) = rewritten.split_once("\r\n\r\n").unwrap();
        let header_url = head
            .lines()
            .find_map(|line| line.strip_prefix("List-Unsubscribe: <"))
            .and_then(|rest| rest.strip_suffix('>'))
            .unwrap_or_else(|| panic!("no List-Unsubscribe in {head}"))
            .to_owned();
        assert!(
            head.lines()
                .any(|line| line == "List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{head}"
        );
        assert_eq!(answer["report"]["list_unsubscribe"], header_url.as_str());
        let page_url = answer["report"]["html_parts"][0]["report"]["unsubscribe"][0]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            rewritten.contains(&format!("href=\"{page_url}\"")),
            "{rewritten}"
        );

        let answer = post(addr, request_target(&header_url), FORM, ONE_CLICK).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        (header_url, page_url)
    });
    assert!(
        header_url.starts_with("https://track.example.com/US0/2~"),
        "{header_url}"
    );
    assert_eq!(header_url, page_url, "one link for the message");
    let events = stop_and_read_events(serve, dir.path());
    assert_eq!(of(&events, "mime-1").len(), 1, "{events:?}");
    assert_eq!(events.len(), 1, "{events:?}");
}

/// A Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
/// commands in on its file descriptor 3, answers out on 4, each JSON ending in a NUL).
struct Browser {
    child: Child,
    commands: ChildStdin,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        // The shell gives Chromium our stdin as its fd 3 and our stdout as its fd 4.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 0</dev/null 1>/dev/null")
            .arg(CHROMIUM)
            .args(common::CHROMIUM_HEADLESS)
            .args(["--remote-debugging-pipe"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let commands = child.stdin.take().unwrap();
        let mut output = child.stdout.take().unwrap();
        let (sender, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(read) = output.read(&mut buffer) {
                if read == 0 {
                    return;
                }
                pending.extend_from_slice(&buffer[..read]);
                while let Some(end) = pending.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end]) {
                        if sender.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            commands,
            answers,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends `method` (to `session`, if given) and waits for its answer: `result`, or the
    /// error as `Err`.
    fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        let mut bytes = command.to_string().into_bytes();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        self.commands.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method}"));
            if answer["id"] == id {
                return match answer.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(answer["result"].clone()),
                };
            }
        }
    }

    /// Evaluates `expression` in the page until it is `true`, at most 20 s; errors (the page
    /// between two documents) count as not yet.
    fn wait_for(&mut self, session: &str, expression: &str) {
        let started = Instant::now();
        loop {
            let params = json!({"expression": expression, "returnByValue": true});
            let value = self.call("Runtime.evaluate", params, Some(session));
            if value.is_ok_and(|value| value["result"]["value"] == true) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "waited for {expression}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Gone already if Browser.close was answered; otherwise this is the cleanup.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn chromium_clicking_the_pages_button_records_one_event() {
    if !common::installed(CHROMIUM) {
        eprintln!("{CHROMIUM} is not installed; skipping (apt-get install chromium)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::spawn(&write_config(dir.path()), 1);
    let page = format!("http://{}{}", serve.addr(), unsubscribe("browser-1"));

    let mut browser = Browser::launch();
    let target = browser
        .call("Target.createTarget", json!({"url": page}), None)
        .unwrap();
    let target_id = target["targetId"].as_str().unwrap().to_owned();
    let attached = browser
        .call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
            None,
        )
        .unwrap();
    let session = attached["sessionId"].as_str().unwrap().to_owned();
    browser.wait_for(
        &session,
        "document.readyState === 'complete' && document.title === 'Unsubscribe' \
         && document.querySelectorAll('button').length === 1",
    );
    let clicked = browser.call(
        "Runtime.evaluate",
        json!({"expression": "document.querySelector('button').click(); true"}),
        Some(&session),
    );
    assert!(clicked.is_ok(), "{clicked:?}");
    browser.wait_for(&session, "document.title === 'Unsubscribed'");
    // The browser is done; whether it answers does not matter.
    let _ = browser.call("Browser.close", json!({}), None);
    drop(browser);

    let events = stop_and_read_events(serve, dir.path());
    let clicked = of(&events, "browser-1");
    assert_eq!(clicked.len(), 1, "{events:?}");
    assert_eq!(clicked[0]["subscription"]["source"], "UnsubscribeLink");
    assert_eq!(clicked[0]["mailtrack"]["method"], "POST");
    assert_eq!(
        events.len(),
        1,
        "opening the page recorded nothing: {events:?}"
    );
}
