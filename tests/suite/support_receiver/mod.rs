//! A webhook receiver on a loopback port, for the notify tests: it records every request it
//! gets (headers and exact body bytes) and answers each as its script says.
#![allow(dead_code, unreachable_pub, missing_docs)] // Each test file uses a different part.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
    /// The status it was answered with; 0 while (or if never) answered.
    pub status: u16,
    /// How long the answer was held back.
    pub delay: Duration,
}

/// How the receiver answers request number `n` (from 0): status, extra headers, body, and how
/// long it waits before answering.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'static str,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: "",
            delay: Duration::ZERO,
        }
    }
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Script>,
    /// The accept loop and every connection's task, aborted by [`Receiver::go_down`].
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1 and answers as `script` says.
    pub async fn start(
        script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            received: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(script),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        receiver.serve(listener);
        receiver
    }

    /// Closes the listener and every open connection, as a receiver that went down: a
    /// connection attempt is then refused, and a request in flight gets no answer.
    pub fn go_down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port, after [`Receiver::go_down`].
    pub async fn come_up(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let log = Arc::clone(&self.received);
        let script = Arc::clone(&self.script);
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let headers = parts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect();
                        let got = Received {
                            path: parts.uri.path().to_owned(),
                            headers,
                            body,
                            status: 0,
                            delay: Duration::ZERO,
                        };
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(got.clone());
                            log.len() - 1
                        };
                        let reply = script(n, &got);
                        tokio::time::sleep(reply.delay).await;
                        {
                            // Recorded once the answer is due: a request cut off by
                            // `go_down` while it waited stays unanswered (status 0).
                            let mut log = log.lock().unwrap();
                            log[n].status = reply.status;
                            log[n].delay = reply.delay;
                        }
                        let mut response = Response::new(Full::new(Bytes::from(reply.body)));
                        *response.status_mut() = reply.status.try_into().unwrap();
                        for (name, value) in reply.headers {
                            response.headers_mut().insert(name, value.parse().unwrap());
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let connection = tokio::spawn(
                    hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned(),
                );
                tasks.lock().unwrap().push(connection.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests answered with a 2xx: what the sender may count as delivered.
    pub fn accepted(&self) -> Vec<Received> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .cloned()
            .collect()
    }

    /// Its URL for `path`.
    pub fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }
}

/// Verifies each delivery with the real `standardwebhooks` package from PyPI; panics naming
/// the first that fails.
pub fn verify_with_standardwebhooks(secret: &str, deliveries: &[Received]) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/receivers/verify_standardwebhooks.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut input = String::new();
    for delivery in deliveries {
        let line = serde_json::json!({
            "secret": secret,
            "headers": delivery.headers,
            "body": String::from_utf8(delivery.body.to_vec()).unwrap(),
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "standardwebhooks refused a delivery (is `pip install standardwebhooks` done?):\n{stdout}{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        deliveries.len(),
        "{stdout}"
    );
}
