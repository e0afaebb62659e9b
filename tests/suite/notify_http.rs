//! One webhook attempt against real receivers on loopback: the signature verifies with the
//! `standardwebhooks` package from PyPI (with either secret of a rotation), and every kind of
//! answer means what it should: 2xx delivered, 410 gone, 429/503 after `Retry-After`, a 3xx
//! retried and never followed, a slow receiver timed out, a private address refused.

use crate::support_receiver;

use std::time::Duration;

use bytes::Bytes;

use mailtrack::config::notify::WebhookSecret;
use mailtrack::notify::http::{check_receiver, AddressPolicy, Attempt, Verdict, WebhookClient};
use mailtrack::notify::webhook_id;

use support_receiver::{verify_with_standardwebhooks, Receiver, Reply};

const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQtb2xk";

/// A batch as notify sends it: a JSON array of events, bytes exactly as in the log.
fn batch() -> Bytes {
    Bytes::from_static(
        br#"[{"eventType":"Click","mail":{"messageId":"m-1"},"click":{"link":"https://e.example/?q=caf\u00e9"},"mailtrack":{"eventId":"e1"}},
{"eventType":"Open","mail":{"messageId":"m-1"},"mailtrack":{"eventId":"e2"}}]"#,
    )
}

fn client(timeout_ms: u64) -> WebhookClient {
    WebhookClient::new(
        Duration::from_millis(timeout_ms),
        AddressPolicy::AllowPrivate,
    )
    .unwrap()
}

#[tokio::test]
async fn a_delivery_verifies_with_the_standard_webhooks_library_under_either_secret() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let secrets = [
        WebhookSecret::parse(OLD).unwrap(),
        WebhookSecret::parse(NEW).unwrap(),
    ];
    let url = receiver.url("/hooks");
    let id = webhook_id("billing", ["e1", "e2"]);
    for _ in 0..2 {
        let attempt = Attempt {
            url: &url,
            id: &id,
            body: batch(),
            secrets: &secrets,
            headers: &[],
        };
        let answer = client(700).send(attempt).await;
        assert_eq!(answer.verdict, Verdict::Delivered, "{answer:?}");
        assert_eq!(answer.status, Some(204));
    }
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    for delivery in &received {
        assert_eq!(delivery.path, "/hooks");
        assert_eq!(delivery.body, batch(), "the exact bytes that were signed");
        assert_eq!(delivery.headers["content-type"], "application/json");
        assert_eq!(delivery.headers["webhook-id"], id, "stable across attempts");
        assert_eq!(delivery.headers["webhook-signature"].split(' ').count(), 2);
    }
    verify_with_standardwebhooks(OLD, &received);
    verify_with_standardwebhooks(NEW, &received);
}

#[tokio::test]
async fn each_answer_means_what_it_should() {
    let target = Receiver::start(|_, _| Reply::status(200)).await;
    let location = target.url("/elsewhere").to_string();
    let receiver = Receiver::start(move |n, _| match n {
        0 => Reply::status(410),
        1 => Reply {
            headers: vec![("retry-after", "120".into())],
            ..Reply::status(429)
        },
        2 => Reply {
            headers: vec![("retry-after", "7".into())],
            ..Reply::status(503)
        },
        3 => Reply {
            headers: vec![("location", location.clone())],
            ..Reply::status(302)
        },
        4 => Reply {
            body: "{\"error\":\"bad event\"}",
            ..Reply::status(400)
        },
        5 => Reply {
            delay: Duration::from_millis(1500),
            ..Reply::status(200)
        },
        _ => Reply::status(500),
    })
    .await;
    let url = receiver.url("/");
    let secrets = [WebhookSecret::parse(OLD).unwrap()];
    let send = |client: WebhookClient| {
        let url = url.clone();
        let secrets = secrets.clone();
        async move {
            let attempt = Attempt {
                url: &url,
                id: "msg_1",
                body: batch(),
                secrets: &secrets,
                headers: &[],
            };
            client.send(attempt).await
        }
    };
    let retry = |not_before| Verdict::Retry { not_before };
    assert_eq!(send(client(700)).await.verdict, Verdict::Gone);
    assert_eq!(
        send(client(700)).await.verdict,
        retry(Some(Duration::from_secs(120)))
    );
    assert_eq!(
        send(client(700)).await.verdict,
        retry(Some(Duration::from_secs(7)))
    );
    let redirected = send(client(700)).await;
    assert_eq!(redirected.verdict, retry(None), "{redirected:?}");
    assert_eq!(redirected.status, Some(302));
    assert!(
        target.received().is_empty(),
        "the redirect was not followed"
    );
    let refused = send(client(700)).await;
    assert_eq!((refused.verdict, refused.status), (retry(None), Some(400)));
    assert_eq!(
        refused.detail, "{\"error\":\"bad event\"}",
        "kept for notify test"
    );
    let slow = send(client(700)).await;
    assert_eq!(slow.verdict, retry(None));
    assert_eq!(slow.status, None, "{slow:?}");
    assert!(slow.detail.contains("no answer within"), "{slow:?}");
    assert!(
        slow.latency < Duration::from_millis(1400),
        "cut at the timeout: {slow:?}"
    );
    assert_eq!(send(client(700)).await.verdict, retry(None), "500");

    // Nobody listening: a port that was free a moment ago.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = url::Url::parse(&format!("http://{free}/")).unwrap();
    let attempt = Attempt {
        url: &nowhere,
        id: "msg_2",
        body: batch(),
        secrets: &secrets,
        headers: &[],
    };
    let answer = client(700).send(attempt).await;
    assert_eq!(answer.verdict, retry(None));
    assert!(answer.detail.contains("onnect"), "{answer:?}");
}

#[tokio::test]
async fn private_receivers_are_refused_unless_allowed() {
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let url = receiver.url("/");
    let message = check_receiver(&url, AddressPolicy::PublicOnly)
        .await
        .unwrap_err();
    assert!(
        message.contains("127.0.0.1") && message.contains("allow_private"),
        "{message}"
    );
    check_receiver(&url, AddressPolicy::AllowPrivate)
        .await
        .unwrap();
    let localhost =
        url::Url::parse(&format!("http://localhost:{}/", receiver.addr.port())).unwrap();
    assert!(check_receiver(&localhost, AddressPolicy::PublicOnly)
        .await
        .is_err());

    // At connect time too: a name that resolves inward is never connected to.
    let guarded = WebhookClient::new(Duration::from_secs(2), AddressPolicy::PublicOnly).unwrap();
    let attempt = Attempt {
        url: &localhost,
        id: "msg_3",
        body: batch(),
        secrets: &[],
        headers: &[],
    };
    let answer = guarded.send(attempt).await;
    assert!(
        matches!(answer.verdict, Verdict::Retry { .. }),
        "{answer:?}"
    );
    assert!(
        answer
            .detail
            .contains("no address this endpoint may connect to"),
        "{answer:?}"
    );
    assert!(receiver.received().is_empty());
}
