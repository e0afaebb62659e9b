//! The admin listener over real sockets: `/metrics` there and not on the public listener,
//! the bearer token of a spawned `mailtrack serve`, and the JSON errors every admin route
//! shares (unknown path, wrong method, a body over `admin.max_body_bytes`).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{config, send, Proto, Reply, ServeProcess, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "3f6c1b0e9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";

/// The `error` of a JSON error answer, checking that it is one.
fn json_error(reply: &Reply) -> String {
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    json["error"]
        .as_str()
        .expect("{\"error\": \"...\"}")
        .to_owned()
}

/// Writes `request` as it is on a new connection and returns the status line and the body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    // The server closes the connection after refusing a body it did not read.
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    // A reset after the answer is also how such a connection may end.
    let _ = read.await.expect("answered and closed within 5 s");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test]
async fn admin_routes_answer_json_errors() {
    let mut config = config("");
    config.admin.max_body_bytes = 1024;
    let server = TestServer::start(config).await;
    let admin = server.admin;

    let reply = send(admin, None, Proto::Http1, "GET", "/metrics", &[]).await;
    assert_eq!(reply.status, 200, "on loopback no token is needed");
    assert!(reply.text().ends_with("# EOF\n"), "{}", reply.text());

    let reply = send(admin, None, Proto::Http1, "GET", "/v0/nothing", &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(json_error(&reply), "no admin route /v0/nothing");

    let reply = send(admin, None, Proto::Http1, "POST", "/metrics", &[]).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    assert_eq!(json_error(&reply), "/metrics takes GET, HEAD, not POST");

    // A body over the cap, declared or chunked, is refused without being read whole.
    let declared = format!(
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nContent-Length: 4096\r\n\r\n{}",
        "a".repeat(4096)
    );
    let chunk = "a".repeat(800);
    let chunked = format!(
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nTransfer-Encoding: chunked\r\n\r\n\
         320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    for request in [declared, chunked] {
        let (status, body) = raw(admin, request.as_bytes()).await;
        assert_eq!(status, "HTTP/1.1 413 Payload Too Large", "{body}");
        assert_eq!(
            body,
            r#"{"error":"the request body is larger than admin.max_body_bytes (1024 bytes)"}"#
        );
    }
    let small = "GET /metrics HTTP/1.1\r\nHost: admin\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let (status, _) = raw(admin, small.as_bytes()).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "a body within the cap is read");

    let metrics = send(admin, None, Proto::Http1, "GET", "/metrics", &[])
        .await
        .text();
    for line in [
        "mailtrack_admin_requests_total{route=\"metrics\",status=\"200\"} 2",
        "mailtrack_admin_requests_total{route=\"metrics\",status=\"405\"} 1",
        "mailtrack_admin_requests_total{route=\"metrics\",status=\"413\"} 2",
        "mailtrack_admin_requests_total{route=\"other\",status=\"404\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    server.stop().await;
}

/// `GET /metrics`, with `Authorization: {authorization}` if given.
async fn metrics(addr: SocketAddr, authorization: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("authorization", value))
        .into_iter()
        .collect();
    send(addr, None, Proto::Http1, "GET", "/metrics", &headers).await
}

/// A config in `dir` for a spawned serve whose admin listener needs `TOKEN`.
fn write_config_with_token(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let path = dir.join("mailtrack.toml");
    let text = "[keys]\nfile = \"keys.toml\"\n[server]\nhttp = \"127.0.0.1:0\"\n\
                [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\
                [log]\nformat = \"json\"\n[events]\nfile = \"events.jsonl\"\nspool_dir = \"spool\"\n";
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn with_a_token_only_requests_that_carry_it_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = ServeProcess::spawn(&write_config_with_token(dir.path()), 1);
    let (public, admin) = (served.addr(), served.admin_addr());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let reply = metrics(admin, None).await;
        assert_eq!(reply.status, 401);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"mailtrack\"")
        );
        assert!(json_error(&reply).contains("Authorization: Bearer"));

        for wrong in [
            "Bearer 3f6c1b0e9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0e",
            "Bearer 3f6c1b0e9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0",
            "Basic M2Y2YzFiMGU5YThkN2M2YjVhNGYzZTJkMWMwYjlhOGY3ZTZkNWM0YjNhMmYxZTBk",
        ] {
            let reply = metrics(admin, Some(wrong)).await;
            assert_eq!(reply.status, 401, "{wrong}");
            assert!(reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer"));
            assert!(!reply.text().contains("mailtrack_"), "{}", reply.text());
        }
        // Nothing about the routes is told without the token, not even which exist.
        let reply = send(admin, None, Proto::Http1, "GET", "/v0/nothing", &[]).await;
        assert_eq!(reply.status, 401);

        let right = format!("Bearer {TOKEN}");
        let reply = metrics(admin, Some(&right)).await;
        assert_eq!(reply.status, 200);
        let line = "mailtrack_admin_requests_total{route=\"metrics\",status=\"401\"} 4";
        assert!(reply.text().contains(line), "{line} in\n{}", reply.text());

        // The public listener has no metrics, token or not, and keeps its health checks.
        assert_eq!(metrics(public, Some(&right)).await.status, 404);
        for path in ["/healthz", "/readyz"] {
            let reply = send(public, None, Proto::Http1, "GET", path, &[]).await;
            assert_eq!(reply.status, 200, "{path}");
        }
    });
    served.signal("-TERM");
    assert_eq!(served.wait_exit(Duration::from_secs(10)).code(), Some(0));
}
