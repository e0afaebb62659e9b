//! `mailtrack serve` over plain HTTP, with HTTP/1.1 and HTTP/2 (prior knowledge), over real
//! sockets: redirects, the pixel, the interstitial, errors, health, metrics (on the admin
//! listener) and the client address recorded in events.

mod common;

use common::{click, config, pixel, send, Proto, TestServer};
use mailtrack::events::EventType;
use mailtrack::server::routes::PIXEL_GIF;
use mailtrack::testing::Mangling;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DESTINATION: &str = "https://example.com/path/a b?q=1&r=%2F#frag";
const PROTOS: [Proto; 2] = [Proto::Http1, Proto::Http2];
/// A destination that survives being decoded once: no `#`, which a browser would cut.
const DESTINATION_139: &str = "https://example.com/search?q=a+b&lang=zh&next=%2Fhome";

/// The destination as the signer normalises it: what `Location` must say.
fn expected_location() -> String {
    "https://example.com/path/a%20b?q=1&r=%2F#frag".to_owned()
}

#[tokio::test]
async fn click_redirects_to_the_exact_target_and_queues_one_event() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    for proto in PROTOS {
        let target = click(DESTINATION, "msg-1");
        let reply = send(
            addr,
            None,
            proto,
            "GET",
            &target,
            &[("user-agent", "test-agent")],
        )
        .await;
        assert_eq!(reply.status, 302, "{proto:?}");
        assert_eq!(reply.header("location").unwrap(), expected_location());
        assert_eq!(reply.header("cache-control"), Some("no-store, private"));
        let event = server.next_event().await;
        assert_eq!(event.event_type, EventType::Click);
        assert_eq!(event.mail.message_id, "msg-1");
        let click = event.click.unwrap();
        assert_eq!(click.link, expected_location());
        assert_eq!(click.user_agent, "test-agent");
        assert_eq!(click.ip_address, "127.0.0.1");
        assert_eq!(event.mailtrack.tracking_domain, "track.example.com");
        assert_eq!(event.mailtrack.method, "GET");
        assert_eq!(event.mailtrack.repair, "as_received");
    }
    assert!(server.stop().await.is_empty());
}

#[tokio::test]
async fn the_china_mobile_139_form_gets_the_same_redirect() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    for proto in PROTOS {
        let mangled = Mangling::ClientDecodedOnce.apply(&click(DESTINATION_139, "msg-139"));
        assert!(mangled.contains('?'), "{mangled}");
        let reply = send(addr, None, proto, "GET", &mangled, &[]).await;
        assert_eq!(reply.status, 302, "{proto:?} {mangled}");
        assert_eq!(reply.header("location").unwrap(), DESTINATION_139);
        assert_eq!(server.next_event().await.mailtrack.repair, "decoded_once");
    }
    server.stop().await;
}

#[tokio::test]
async fn tampered_links_never_redirect() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    let target = click("https://example.com/", "msg-2");
    let tampered = target.replace("example.com", "evil.example");
    for proto in PROTOS {
        let reply = send(addr, None, proto, "GET", &tampered, &[]).await;
        assert_eq!(reply.status, 200, "interstitial");
        assert!(reply.header("location").is_none());
        assert_eq!(reply.header("x-robots-tag"), Some("noindex"));
        let page = reply.text();
        assert!(
            page.contains("<p class=\"host\">evil.example</p>"),
            "{page}"
        );
        assert!(page.contains("href=\"https://evil.example/\""), "{page}");
        assert!(!page.contains("<script") && !page.contains("http-equiv"));
        for junk in [
            "/CL0/",
            "/CL0/x/1/m/AAAA=2",
            "/L0/https:%2F%2Fa.example/1/m/%%%=9",
        ] {
            let reply = send(addr, None, proto, "GET", junk, &[]).await;
            assert!(
                matches!(reply.status, 200 | 400),
                "{junk}: {}",
                reply.status
            );
            assert!(reply.header("location").is_none(), "{junk}");
        }
    }
    assert!(!server.has_event());
    server.stop().await;

    let server = TestServer::start(config("[tracking]\nunverified = \"reject\"\n")).await;
    let reply = send(
        server.http.unwrap(),
        None,
        Proto::Http1,
        "GET",
        &tampered,
        &[],
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(server.stop().await.is_empty());
}

#[tokio::test]
async fn pixel_is_a_gif_and_records_only_verified_opens() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    for proto in PROTOS {
        let reply = send(addr, None, proto, "GET", &pixel("msg-3"), &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("image/gif"));
        assert_eq!(reply.header("cache-control"), Some("no-store, private"));
        assert_eq!(&reply.body[..], PIXEL_GIF);
        let event = server.next_event().await;
        assert_eq!(event.event_type, EventType::Open);
        assert!(event.open.is_some());

        let forged = pixel("msg-3").replace("msg-3", "msg-4");
        let reply = send(addr, None, proto, "GET", &forged, &[]).await;
        assert_eq!((reply.status, &reply.body[..]), (200, PIXEL_GIF));
        let reply = send(addr, None, proto, "GET", "/I0/garbage", &[]).await;
        assert_eq!((reply.status, &reply.body[..]), (200, PIXEL_GIF));
        assert!(!server.has_event());
    }
    server.stop().await;
}

#[tokio::test]
async fn head_works_and_other_methods_get_405() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    for proto in PROTOS {
        let reply = send(addr, None, proto, "HEAD", &click(DESTINATION, "m"), &[]).await;
        assert_eq!(reply.status, 302);
        assert_eq!(reply.header("location").unwrap(), expected_location());
        assert!(reply.body.is_empty());
        assert_eq!(server.next_event().await.mailtrack.method, "HEAD");
        let reply = send(addr, None, proto, "HEAD", &pixel("m"), &[]).await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty());
        server.next_event().await;
        let reply = send(addr, None, proto, "POST", &click(DESTINATION, "m"), &[]).await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        let reply = send(addr, None, proto, "GET", "/favicon.ico", &[]).await;
        assert_eq!(reply.status, 404);
    }
    assert!(server.stop().await.is_empty());
}

/// Health and readiness on the public listener, for a load balancer; the metrics only on the
/// admin listener.
#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    for proto in PROTOS {
        for path in ["/healthz", "/readyz"] {
            let reply = send(addr, None, proto, "GET", path, &[]).await;
            assert_eq!(reply.status, 200, "{proto:?} {path}");
        }
        let reply = send(addr, None, proto, "GET", "/metrics", &[]).await;
        assert_eq!(
            reply.status, 404,
            "{proto:?}: no metrics on the public listener"
        );
        assert!(!reply.text().contains("mailtrack_"), "{}", reply.text());
    }
    let mangled = Mangling::ClientDecodedOnce.apply(&click(DESTINATION_139, "m"));
    send(addr, None, Proto::Http1, "GET", &mangled, &[]).await;
    let tampered = click(DESTINATION, "m").replace("example.com", "evil.example");
    send(addr, None, Proto::Http1, "GET", &tampered, &[]).await;
    let reply = send(server.admin, None, Proto::Http1, "GET", "/metrics", &[]).await;
    assert_eq!(reply.status, 200);
    let metrics = reply.text();
    for line in [
        "mailtrack_requests_total{route=\"click\",status=\"302\"} 1",
        "mailtrack_requests_total{route=\"click\",status=\"200\"} 1",
        "mailtrack_requests_total{route=\"readyz\",status=\"200\"} 2",
        "mailtrack_requests_total{route=\"other\",status=\"404\"} 2",
        "mailtrack_repairs_total{repair=\"decoded_once\"} 1",
        "mailtrack_unverified_total{reason=\"bad_mac\"} 1",
        "mailtrack_event_queue_depth 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let spoof = [("x-forwarded-for", "203.0.113.9")];
    let mut server = TestServer::start(config("")).await;
    let reply = send(
        server.http.unwrap(),
        None,
        Proto::Http1,
        "GET",
        &pixel("m"),
        &spoof,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(server.next_event().await.ip_address(), "127.0.0.1");
    server.stop().await;

    let trusted = "trusted_proxies = [\"127.0.0.0/8\"]\n";
    let mut server = TestServer::start(config(trusted)).await;
    let chain = [("x-forwarded-for", "198.51.100.1, 203.0.113.9, 127.0.0.5")];
    send(
        server.http.unwrap(),
        None,
        Proto::Http2,
        "GET",
        &click(DESTINATION, "m"),
        &chain,
    )
    .await;
    assert_eq!(server.next_event().await.ip_address(), "203.0.113.9");
    server.stop().await;
}

/// The request-target reaches the decoder byte for byte: escapes stay escaped, and what hyper
/// refuses (raw non-ASCII) is a 400 from hyper, never a 500 or a redirect.
#[tokio::test]
async fn raw_targets_are_not_decoded_and_odd_bytes_never_fail() {
    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    for proto in PROTOS {
        let lower = Mangling::LowerCaseHex.apply(&click(DESTINATION, "m"));
        let reply = send(addr, None, proto, "GET", &lower, &[]).await;
        assert_eq!(reply.status, 302);
        // The repair that worked shows the escapes arrived exactly as sent.
        assert_eq!(server.next_event().await.mailtrack.repair, "lower_case_hex");
    }
    for raw in [
        b"GET /CL0/https:%2F%2Fexample.com%2F\xc3\xa9/1/m/AAAA=2 HTTP/1.1\r\nHost: t\r\n\r\n"
            .as_slice(),
        b"GET /CL0/%zz%/1/m/A=2 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /CI0/\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /CL0/https:%2F%2F\xff\xfe.example/1/m/A=2 HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut answer = vec![0; 4096];
        let n = stream.read(&mut answer).await.unwrap();
        let head = String::from_utf8_lossy(&answer[..n]);
        eprintln!(
            "{:?} -> {:?}",
            String::from_utf8_lossy(raw),
            head.lines().next()
        );
        assert!(
            head.starts_with("HTTP/1.1 400") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
    }
    server.stop().await;
}

/// Version 2 links carry the send time and the message tags: serve puts them in the event's
/// `mail`, as SES has them. A version 1 link, from mail sent before, still redirects, and its
/// event has neither.
#[tokio::test]
async fn version_2_events_carry_the_send_time_and_the_message_tags() {
    use mailtrack::link::LinkTags;
    use mailtrack::testing::{fixed_signer, request_target, stamp_v1, stamp_v2};

    let mut server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    let stamp = stamp_v2("msg-v2", "campaign:spring;list:news;campaign:sale");
    let link_tags = LinkTags::parse("pos:top").unwrap();
    let signer = fixed_signer();
    let click = signer.click_url(DESTINATION, &stamp, &link_tags).unwrap();
    let open = signer.open_url(&stamp);
    let expected_tags = serde_json::json!({"campaign": ["spring", "sale"], "list": ["news"]});
    for proto in PROTOS {
        for (target, status) in [(request_target(&click), 302), (request_target(&open), 200)] {
            let reply = send(addr, None, proto, "GET", target, &[]).await;
            assert_eq!(reply.status, status, "{proto:?} {target}");
            let event = server.next_event().await;
            assert_eq!(event.mail.message_id, "msg-v2");
            assert_eq!(
                event.mail.timestamp.as_deref(),
                Some("2026-12-02T16:00:00.000Z")
            );
            let tags = serde_json::to_value(event.mail.tags.as_ref().unwrap()).unwrap();
            assert_eq!(tags, expected_tags, "{target}");
            if let Some(click) = event.click {
                assert_eq!(click.link, expected_location());
                assert_eq!(click.link_tags, link_tags.to_map());
            }
        }

        let v1 = signer
            .click_url(DESTINATION, &stamp_v1("msg-v1"), &LinkTags::new())
            .unwrap();
        let reply = send(addr, None, proto, "GET", request_target(&v1), &[]).await;
        assert_eq!(reply.status, 302);
        assert_eq!(reply.header("location").unwrap(), expected_location());
        let event = server.next_event().await;
        assert_eq!(event.mail.message_id, "msg-v1");
        assert_eq!((event.mail.timestamp, event.mail.tags), (None, None));

        // A tampered send time never redirects and records nothing.
        let tampered = request_target(&click).replace("~tpfds0~", "~tpfds1~");
        let reply = send(addr, None, proto, "GET", &tampered, &[]).await;
        assert_ne!(reply.status, 302, "{tampered}");
        assert!(!server.has_event());
    }
    server.stop().await;
}
