//! What an abuser of the public edge gets: forged links of every shape get the 400 page, not
//! a page naming their destination; one holder of one link cannot write unlimited events;
//! HTTP/1.1 without exactly one `Host` is refused; and a User-Agent that is not ASCII still
//! arrives whole in the event.

use crate::common;

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use mailtrack::testing::Mangling;

use common::{click, config, pixel, send, Proto, TestServer};

const PROTOS: [Proto; 2] = [Proto::Http1, Proto::Http2];

/// Writes `request` on a new connection as raw bytes and reads the whole answer (the request
/// asks for the connection to close, or the server closes it).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn forged_links_get_the_400_page_and_name_no_destination() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    let signed = click("https://example.com/docs", "msg-1");
    let (head, mac_and_kid) = signed.rsplit_once('/').unwrap();
    let (mac, _kid) = mac_and_kid.split_once('=').unwrap();
    let (before_id, _) = head.rsplit_once('/').unwrap();
    let forged = [
        (
            "no message id, MAC or key id",
            "/CL0/https:%2F%2Fevil.example%2F".to_owned(),
        ),
        ("no MAC", format!("{head}/=2")),
        (
            "a MAC one character short",
            format!("{head}/{}=2", &mac[..mac.len() - 1]),
        ),
        ("a MAC one character long", format!("{head}/{mac}A=2")),
        ("an unknown key id", format!("{head}/{mac}=9")),
        ("a revoked key id", format!("{head}/{mac}=3")),
        (
            "a malformed message id",
            format!("{before_id}/msg%201/{mac}=2"),
        ),
    ];
    for proto in PROTOS {
        for (shape, target) in &forged {
            let target = target.replace("example.com", "evil.example");
            let reply = send(addr, None, proto, "GET", &target, &[]).await;
            assert_eq!(reply.status, 400, "{proto:?} {shape}: {target}");
            assert!(reply.header("location").is_none());
            let page = reply.text();
            assert!(
                !page.contains("evil.example"),
                "{shape}: the page names it: {page}"
            );
            assert!(!page.contains("Continue"), "{shape}: {page}");
        }

        // A link we signed, whose target a client changed: its tail is intact, so it may be
        // ours, and the recipient is offered the destination with one more click.
        let changed = signed.replace("example.com", "examp1e.com");
        let reply = send(addr, None, proto, "GET", &changed, &[]).await;
        assert_eq!(reply.status, 200, "{proto:?} a changed target");
        assert!(reply.text().contains("Continue to examp1e.com"));

        // A signed link whose `%23` a client decoded, so that the browser cut it at the `#`.
        let original = click("https://example.com/docs#install", "msg-1");
        let cut = Mangling::ClientDecodedOnce.apply(&original);
        assert_eq!(cut, "/CL0/https://example.com/docs");
        let reply = send(addr, None, proto, "GET", &cut, &[]).await;
        assert_eq!(reply.status, 200, "{proto:?} a link cut at its #");
        assert!(reply.header("location").is_none());
        let page = reply.text();
        assert!(page.contains("Continue to example.com"), "{page}");
        assert!(page.contains("href=\"https://example.com/docs\""), "{page}");
    }
    assert!(!server.has_event(), "nothing unverified is recorded");
    server.stop().await;
}

/// `name`'s value in a Prometheus text page.
fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} in\n{page}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn one_client_of_one_message_records_at_most_its_budget() {
    const BUDGET: u64 = 50;
    const REQUESTS: u64 = 10_000;
    let extra =
        format!("trusted_proxies = [\"127.0.0.1\"]\n[events]\nbudget_per_minute = {BUDGET}\n");
    let mut server = TestServer::start(config(&extra)).await;
    let addr = server.http.unwrap();
    let one = pixel("msg-flood");
    let started = Instant::now();
    let mut recorded = 0;
    for _ in 0..REQUESTS {
        let reply = send(addr, None, Proto::Http1, "GET", &one, &[]).await;
        assert_eq!(reply.status, 200, "answered as before");
        assert_eq!(reply.header("content-type"), Some("image/gif"));
        while server.has_event() {
            server.next_event().await;
            recorded += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = send(server.admin, None, Proto::Http1, "GET", "/metrics", &[])
        .await
        .text();
    while server.has_event() {
        server.next_event().await;
        recorded += 1;
    }
    // The budget refills at BUDGET a minute while the requests run.
    let refilled = (elapsed / 60.0 * BUDGET as f64).ceil() as u64;
    assert!(
        (BUDGET..=BUDGET + refilled).contains(&recorded),
        "{recorded} recorded in {elapsed:.1} s, budget {BUDGET}"
    );
    let over = metric(&metrics, "mailtrack_events_over_budget_total");
    assert_eq!(
        recorded + over,
        REQUESTS,
        "every request not recorded is counted"
    );

    // Other messages from the same client, and the same message from other clients, have
    // budgets of their own: every one of them is recorded.
    for n in 0..1000 {
        let target = pixel(&format!("msg-{n}"));
        send(addr, None, Proto::Http1, "GET", &target, &[]).await;
        assert_eq!(
            server.next_event().await.mail.message_id,
            format!("msg-{n}")
        );
    }
    for n in 0..1000u32 {
        let client = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
        let headers = [("x-forwarded-for", client.as_str())];
        send(addr, None, Proto::Http1, "GET", &one, &headers).await;
        let event = server.next_event().await;
        assert_eq!(event.open.unwrap().ip_address, client);
    }
    server.stop().await;
}

#[tokio::test]
async fn http1_1_needs_exactly_one_host() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    let target = pixel("msg-host");
    let status = |answer: String| answer.lines().next().unwrap_or("").to_owned();
    let no_host = format!("GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(
        status(raw(addr, no_host.as_bytes()).await),
        "HTTP/1.1 400 Bad Request"
    );
    let two = format!(
        "GET {target} HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        status(raw(addr, two.as_bytes()).await),
        "HTTP/1.1 400 Bad Request"
    );
    let health = "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(
        status(raw(addr, health.as_bytes()).await),
        "HTTP/1.1 400 Bad Request"
    );
    assert!(!server.has_event(), "a refused request records nothing");

    let one = format!("GET {target} HTTP/1.1\r\nHost: t.example\r\nConnection: close\r\n\r\n");
    assert_eq!(status(raw(addr, one.as_bytes()).await), "HTTP/1.1 200 OK");
    assert_eq!(
        server.next_event().await.mailtrack.tracking_domain,
        "t.example"
    );
    // HTTP/1.0 predates Host, and may leave it out.
    let old = format!("GET {target} HTTP/1.0\r\n\r\n");
    assert_eq!(status(raw(addr, old.as_bytes()).await), "HTTP/1.0 200 OK");
    server.next_event().await;
    server.stop().await;
}

#[tokio::test]
async fn a_user_agent_that_is_not_ascii_arrives_as_utf8() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    let target = pixel("msg-ua");
    let with_user_agent = |user_agent: &[u8]| {
        let mut request =
            format!("GET {target} HTTP/1.1\r\nHost: t.example\r\nUser-Agent: ").into_bytes();
        request.extend_from_slice(user_agent);
        request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        request
    };
    let utf8 = "QQ邮箱/6.3 (iPhone; iOS 17) Mail Café";
    raw(addr, &with_user_agent(utf8.as_bytes())).await;
    assert_eq!(server.next_event().await.open.unwrap().user_agent, utf8);
    // Latin-1, not UTF-8: the bad byte is replaced, the rest kept.
    raw(addr, &with_user_agent(b"Mail Caf\xe9/1.0")).await;
    assert_eq!(
        server.next_event().await.open.unwrap().user_agent,
        "Mail Caf\u{fffd}/1.0"
    );
    server.stop().await;
}
