//! Shared helpers for the `serve_*` tests: a server on port 0, a certificate authority made
//! at test time, and an HTTP/1.1 or HTTP/2 client over plain TCP or rustls that sends the
//! request-target exactly as given.
#![allow(dead_code, unreachable_pub, missing_docs)] // Each test file uses a different part.

mod process;
pub use process::{NotifyProcess, Process};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{HeaderMap, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use mailtrack::config::CertificateFiles;
use mailtrack::events::{Event, EventQueue, EventReceiver};
use mailtrack::link::LinkTags;
use mailtrack::server::{self, CertificateStore, State};
use mailtrack::testing::{fixed_ring, fixed_signer, request_target};
use mailtrack::Config;

/// The `mailtrack` binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_mailtrack");

/// A spawned `mailtrack serve` with a JSON log, and the addresses it listens on (with whether
/// each is TLS), read from that log, and its admin listener's. Killed when dropped, so that a
/// test that fails before stopping it does not leave it running after the test run.
pub struct ServeProcess {
    pub process: Process,
    pub addrs: Vec<(SocketAddr, bool)>,
    pub admin: Option<SocketAddr>,
}

impl ServeProcess {
    /// Runs `mailtrack serve --config CONFIG`, whose `[log] format` must be `json` and whose
    /// `[admin] listen` must be on port 0 (many run at once), and waits until it listens on
    /// `listeners` public addresses and its admin address. Its log lines are copied to
    /// standard error, marked `serve:`.
    pub fn spawn(config: &Path, listeners: usize) -> ServeProcess {
        let mut process = Process::spawn("serve", config, "serve");
        process.wait_until("serve to listen", |p| {
            p.messages("listening").len() >= listeners && !p.messages("admin listening").is_empty()
        });
        let addr = |json: &serde_json::Value| -> SocketAddr {
            json["addr"].as_str().unwrap().parse().unwrap()
        };
        let addrs = process.messages("listening")[..listeners]
            .iter()
            .map(|json| (addr(json), json["tls"].as_bool().unwrap()))
            .collect();
        let admin = addr(&process.messages("admin listening")[0]);
        assert_ne!(admin.port(), 9090, "tests never take the fixed 9090");
        ServeProcess {
            process,
            addrs,
            admin: Some(admin),
        }
    }

    /// The first address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0].0
    }

    /// Its admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.unwrap()
    }
}

impl std::ops::Deref for ServeProcess {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for ServeProcess {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// The `[admin]` table every config here has: a free port, never the fixed default, since
/// many servers run at once.
pub const ADMIN_ON_A_FREE_PORT: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// A config for tests: plain HTTP and the admin listener on free ports of 127.0.0.1, plus
/// `extra` TOML (which continues `[server]`).
pub fn config(extra: &str) -> Config {
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n{ADMIN_ON_A_FREE_PORT}[server]\nhttp = \"127.0.0.1:0\"\n{extra}"
    );
    Config::from_toml(&text, Path::new("test.toml")).expect("the test config is valid")
}

/// A running server and the receiving end of its event queue.
pub struct TestServer {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub store: Option<Arc<CertificateStore>>,
    pub events: EventReceiver,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Starts `config` on port 0 (HTTPS too when it has certificates), and its admin
    /// listener.
    pub async fn start(config: Config) -> TestServer {
        let store = (!config.tls.certificates.is_empty())
            .then(|| Arc::new(CertificateStore::load(&config.tls.certificates).unwrap()));
        let listeners = server::bind(&config, store.clone()).await.unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let addr_of = |tls: bool| {
            listeners
                .public
                .iter()
                .find(|l| l.is_tls() == tls)
                .map(|l| l.local_addr().unwrap())
        };
        let (http, https) = (addr_of(false), addr_of(true));
        let (queue, events) = EventQueue::bounded(1024);
        let state = State::new(&config, fixed_ring(), queue);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listeners, state, async {
            // A dropped sender also stops the server.
            let _ = stopped.await;
        }));
        TestServer {
            http,
            https,
            admin,
            store,
            events,
            stop: Some(stop),
            task,
        }
    }

    /// The next queued event, waiting briefly.
    pub async fn next_event(&mut self) -> Event {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.events.recv())
            .await
            .expect("an event within 5 s")
            .expect("the queue is open")
    }

    /// Whether an event is waiting now.
    pub fn has_event(&mut self) -> bool {
        !self.events.is_empty()
    }

    /// Stops the server, waits for it to drain, and returns every event left in the queue.
    pub async fn stop(mut self) -> Vec<Event> {
        // The receiver is alive until `self` drops, so the send cannot fail.
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap();
        let mut events = Vec::new();
        while let Some(event) = self.events.recv().await {
            events.push(event);
        }
        events
    }
}

/// The request-target of a signed click to `url`.
///
/// A version 2 link, sent at `mailtrack::testing::FIXED_SEND_TIME`, with no message tags.
pub fn click(url: &str, message_id: &str) -> String {
    let stamp = mailtrack::testing::stamp_v2(message_id, "");
    let link = fixed_signer()
        .click_url(url, &stamp, &LinkTags::new())
        .unwrap();
    request_target(&link).to_owned()
}

/// The request-target of a signed open pixel, version 2 as [`click`]'s.
pub fn pixel(message_id: &str) -> String {
    let link = fixed_signer().open_url(&mailtrack::testing::stamp_v2(message_id, ""));
    request_target(&link).to_owned()
}

/// HTTP/1.1 or HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

/// A response, with what the TLS handshake said.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub alpn: Option<Vec<u8>>,
    pub cipher_suite: Option<rustls::CipherSuite>,
    pub peer_certificate: Option<CertificateDer<'static>>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A TLS client trusting one CA, sending `sni`.
#[derive(Clone)]
pub struct TlsClient {
    pub roots: Arc<rustls::RootCertStore>,
    pub sni: String,
}

impl TlsClient {
    fn config(&self, proto: Proto) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth();
        config.alpn_protocols = match proto {
            Proto::Http1 => vec![b"http/1.1".to_vec()],
            Proto::Http2 => vec![b"h2".to_vec()],
        };
        Arc::new(config)
    }
}

/// Sends one request on a new connection; `target` goes on the wire exactly as given.
pub async fn send(
    addr: SocketAddr,
    tls: Option<&TlsClient>,
    proto: Proto,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Reply {
    try_send(addr, tls, proto, method, target, headers)
        .await
        .unwrap()
}

/// As [`send`], returning connection and protocol errors.
pub async fn try_send(
    addr: SocketAddr,
    tls: Option<&TlsClient>,
    proto: Proto,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let Some(client) = tls else {
        return exchange(TokioIo::new(tcp), proto, "http", method, target, headers).await;
    };
    let connector = TlsConnector::from(client.config(proto));
    let name = ServerName::try_from(client.sni.clone()).unwrap();
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = stream.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let cipher_suite = session.negotiated_cipher_suite().map(|s| s.suite());
    let peer_certificate = session.peer_certificates().and_then(|c| c.first().cloned());
    let mut reply = exchange(
        TokioIo::new(stream),
        proto,
        "https",
        method,
        target,
        headers,
    )
    .await?;
    reply.alpn = alpn;
    reply.cipher_suite = cipher_suite;
    reply.peer_certificate = peer_certificate;
    Ok(reply)
}

async fn exchange<I>(
    io: TokioIo<I>,
    proto: Proto,
    scheme: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let host = "track.example.com";
    let uri = match proto {
        Proto::Http1 => target.to_owned(),
        Proto::Http2 => format!("{scheme}://{host}{target}"),
    };
    let mut request = Request::builder().method(method).uri(uri);
    if proto == Proto::Http1 {
        request = request.header("host", host);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let error = |e: hyper::Error| e.to_string();
    let response = match proto {
        Proto::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(error)?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(error)?
        }
        Proto::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(error)?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(error)?
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(error)?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
        alpn: None,
        cipher_suite: None,
        peer_certificate: None,
    })
}

/// A certificate authority made at test time, writing PEM files into a temporary folder.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mailtrack test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        TestPki {
            dir: tempfile::tempdir().unwrap(),
            issuer,
        }
    }

    /// The CA's certificate in PEM, for curl's `--cacert`.
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }

    /// A client trusting this CA and sending `sni`.
    pub fn client(&self, sni: &str) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        TlsClient {
            roots: Arc::new(roots),
            sni: sni.to_owned(),
        }
    }

    /// A leaf certificate for `names`, written as `{stem}.pem` and `{stem}.key.pem`; returns
    /// the files and the certificate's DER.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> (CertificateFiles, CertificateDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = CertificateFiles {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}.key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        (files, cert.der().clone())
    }
}

/// Headless Chromium's flags for a test: no sandbox (tests run as root), no GPU, and none of
/// its own network traffic (QUIC, updates, sync, background fetches) beside the test's.
pub const CHROMIUM_HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Whether `program` can be run (for tests that use curl or Chromium when installed).
pub fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}
