//! `mailtrack serve` over HTTPS with certificates made at test time: HTTP/1.1 and HTTP/2 by
//! ALPN, a certificate per domain by SNI, reload, and curl as an independent client.

use crate::common;

use std::process::Command;
use std::sync::Arc;

use common::{click, config, pixel, send, Proto, TestPki, TestServer};
use mailtrack::server::routes::PIXEL_GIF;
use mailtrack::server::signals;
use mailtrack::testing::Mangling;
use mailtrack::Config;
use rustls::pki_types::ServerName;

const DESTINATION: &str = "https://example.com/search?q=a+b&lang=zh&next=%2Fhome";

/// A config serving HTTPS on a free port with `certificates`.
fn tls_config(certificates: Vec<mailtrack::config::CertificateFiles>) -> Config {
    let mut config = config("");
    config.server.https = Some("127.0.0.1:0".parse().unwrap());
    config.tls.certificates = certificates;
    config
}

#[tokio::test]
async fn https_with_http1_and_http2() {
    let pki = TestPki::new();
    let (files, _) = pki.leaf("track", &["track.example.com"]);
    let mut server = TestServer::start(tls_config(vec![files])).await;
    let addr = server.https.unwrap();
    let client = pki.client("track.example.com");
    for (proto, alpn) in [(Proto::Http1, "http/1.1"), (Proto::Http2, "h2")] {
        let target = click(DESTINATION, "msg-tls");
        let reply = send(addr, Some(&client), proto, "GET", &target, &[]).await;
        assert_eq!(reply.alpn.as_deref(), Some(alpn.as_bytes()));
        // rustls's client lists AES-256-GCM first; the server's preference wins.
        assert_eq!(
            reply.cipher_suite,
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        assert_eq!(reply.status, 302);
        assert_eq!(reply.header("location"), Some(DESTINATION));
        server.next_event().await;

        let mangled = Mangling::ClientDecodedOnce.apply(&target);
        let reply = send(addr, Some(&client), proto, "GET", &mangled, &[]).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (302, Some(DESTINATION))
        );
        server.next_event().await;

        let tampered = target.replace("example.com", "evil.example");
        let reply = send(addr, Some(&client), proto, "GET", &tampered, &[]).await;
        assert!(!(300..400).contains(&reply.status));

        let reply = send(addr, Some(&client), proto, "HEAD", &pixel("m"), &[]).await;
        assert_eq!(
            (reply.status, reply.header("content-type")),
            (200, Some("image/gif"))
        );
        let reply = send(addr, Some(&client), proto, "GET", &pixel("m"), &[]).await;
        assert_eq!(&reply.body[..], PIXEL_GIF);
    }
    assert_eq!(
        server.stop().await.len(),
        4,
        "the pixel opens, HEAD and GET"
    );
}

#[tokio::test]
async fn each_domain_gets_its_own_certificate_and_reload_swaps_them() {
    let pki = TestPki::new();
    let (first, first_der) = pki.leaf("first", &["track.first.example"]);
    let (second, second_der) = pki.leaf("second", &["*.second.example"]);
    let server = TestServer::start(tls_config(vec![first.clone(), second.clone()])).await;
    let addr = server.https.unwrap();
    let peer = |sni: &'static str| {
        let client = pki.client(sni);
        async move {
            let reply = send(addr, Some(&client), Proto::Http2, "GET", "/healthz", &[]).await;
            assert_eq!(reply.status, 200);
            reply.peer_certificate.unwrap()
        }
    };
    assert_eq!(peer("track.first.example").await, first_der);
    assert_eq!(peer("links.second.example").await, second_der);

    // A new certificate for the first domain, then a reload.
    let (_, renewed_der) = pki.leaf("first", &["track.first.example"]);
    assert_eq!(
        peer("track.first.example").await,
        first_der,
        "not before the reload"
    );
    let store = server.store.clone().unwrap();
    signals::reload(&store);
    assert_eq!(peer("track.first.example").await, renewed_der);

    // A broken file is refused and the certificates in use stay.
    std::fs::write(&second.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let error = store.reload().unwrap_err().to_string();
    assert!(error.contains("second.pem"), "{error}");
    assert_eq!(peer("links.second.example").await, second_der);
    assert_eq!(peer("track.first.example").await, renewed_der);
    // A key that does not match its certificate is refused too.
    std::fs::copy(&first.key, &second.key).unwrap();
    let (_, _) = pki.leaf("unused", &["x.example"]);
    std::fs::copy(pki.dir.path().join("unused.pem"), &second.cert).unwrap();
    std::fs::copy(&first.key, &second.key).unwrap();
    assert!(store.reload().is_err());
    assert_eq!(peer("links.second.example").await, second_der);
    server.stop().await;
}

#[tokio::test]
async fn curl_follows_nothing_unverified_and_gets_the_redirect() {
    if !common::installed("curl") {
        eprintln!("curl is not installed; skipping");
        return;
    }
    let pki = TestPki::new();
    let (files, _) = pki.leaf("track", &["track.example.com"]);
    let server = TestServer::start(tls_config(vec![files])).await;
    let port = server.https.unwrap().port();
    let ca = pki.ca_file();
    let target = click(DESTINATION, "msg-curl");
    let mangled = Mangling::ClientDecodedOnce.apply(&target);
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        for path in [&target, &mangled] {
            let mut curl = Command::new("curl");
            curl.args(["-sS", "--max-time", "10", "--path-as-is", flag, "--cacert"])
                .arg(&ca)
                .args(["--resolve", &format!("track.example.com:{port}:127.0.0.1")])
                .args([
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_version} %{http_code} %{redirect_url}",
                ])
                .arg(format!("https://track.example.com:{port}{path}"));
            // curl blocks; the server needs this runtime's thread meanwhile.
            let out = tokio::task::spawn_blocking(move || curl.output().unwrap())
                .await
                .unwrap();
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(line, format!("{version} 302 {DESTINATION}"), "{path}");
        }
    }
    assert_eq!(server.stop().await.len(), 4);
}

/// A client's session store that counts the TLS 1.3 tickets it is given.
#[derive(Debug)]
struct CountingTickets {
    inner: rustls::client::ClientSessionMemoryCache,
    received: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingTickets {
    fn set_kx_hint(&self, server: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(server, group);
    }

    fn kx_hint(&self, server: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(server)
    }

    fn set_tls12_session(
        &self,
        server: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(server, value);
    }

    fn tls12_session(
        &self,
        server: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server)
    }

    fn remove_tls12_session(&self, server: &ServerName<'static>) {
        self.inner.remove_tls12_session(server);
    }

    fn insert_tls13_ticket(
        &self,
        server: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(server, value);
    }

    fn take_tls13_ticket(
        &self,
        server: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(server)
    }
}

#[tokio::test]
async fn each_connection_gets_one_ticket_and_the_next_resumes_with_it() {
    use rustls::HandshakeKind::{Full, Resumed};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = TestPki::new();
    let (files, _) = pki.leaf("track", &["track.example.com"]);
    let server = TestServer::start(tls_config(vec![files])).await;
    let addr = server.https.unwrap();
    let tickets = Arc::new(CountingTickets {
        inner: rustls::client::ClientSessionMemoryCache::new(16),
        received: 0.into(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(Arc::clone(&pki.client("track.example.com").roots))
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::store(tickets.clone());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    for (n, kind) in [(1, Full), (2, Resumed), (3, Resumed)] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("track.example.com").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(
            tls.get_ref().1.handshake_kind(),
            Some(kind),
            "connection {n}"
        );
        // Tickets come after the handshake: read the answer to the end to take them in.
        tls.write_all(
            b"GET /healthz HTTP/1.1\r\nHost: track.example.com\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        assert_eq!(
            tickets.received.load(std::sync::atomic::Ordering::SeqCst),
            n
        );
    }
}
