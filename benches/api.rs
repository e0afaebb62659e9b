//! The rewrite API's throughput beside the library call it wraps, in the same run: 8
//! clients posting the 100 KB newsletter to `POST /v1/rewrite/html` on an in-process admin
//! listener (keep-alive, one connection each), against 8 threads calling `rewrite_str` on the
//! same document. The goal is at least 0.8 of the library's messages a second.
//!
//! The API is measured twice: with the document sent as itself (`Content-Type: text/html`,
//! the fields in the query string), the way the API's documentation gives for a large
//! document and the one the goal is read on, and with it inside a JSON request.
//!
//! A last peer, "HTTP alone", is what the exchange costs without the API: a bare hyper
//! server on the same core, to which the same clients post the `text/html` request, and
//! which reads it whole and answers with the API's answer to it, made once beforehand. No
//! server can spend less on those bytes than the exchange itself, so
//! `1 / (1 / library + 1 / http)` bounds what any API of this request and answer could
//! reach, and the bench prints that bound beside the goal.
//!
//! As the other benchmarks pin a server and its load generator to different cores
//! (`taskset`), the server's threads (its runtime, and the admin listener's runtime of one
//! worker, `admin.workers = 1`, where rewriting runs) are pinned to core 0, and the clients'
//! runtime to core 1; the library's threads run on core 0 alone. Both figures are then what
//! one core does. The clients' requests are built once, and answers are read whole but not
//! parsed. The API's cost is then HTTP, and the JSON out (and in). With fewer than 2 cores
//! nothing is pinned, and the clients share the server's core.
//!
//! Run with `cargo bench --bench api`.

#[path = "support/newsletter.rs"]
mod newsletter;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mailtrack::events::{EventQueue, EventReceiver};
use mailtrack::link::MessageId;
use mailtrack::rewrite::{rewrite_str, RewriteOptions};
use mailtrack::server::{self, State};
use mailtrack::testing::{fixed_ring, fixed_signer};
use mailtrack::Config;

/// Concurrent clients, and library threads.
const CLIENTS: usize = 8;
/// How long each timed run lasts.
const RUN: Duration = Duration::from_secs(2);
/// Timed runs of each, alternating; the best of each is reported.
const RUNS: usize = 3;

/// The allocator `mailtrack serve` runs with (src/main.rs), for both: the API's answers are
/// buffers of 200 KB, past glibc malloc's mmap threshold, so under the system's allocator
/// every answer would be pages mapped, faulted in and unmapped again, which serve never does.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The core the server and the library run on.
const SERVER_CORE: usize = 0;
/// The core the clients run on.
const CLIENT_CORE: usize = 1;

fn main() {
    let html = String::from_utf8(newsletter::newsletter()).unwrap();
    println!("newsletter: {} bytes, {CLIENTS} clients", html.len());
    let server = pinned_runtime(SERVER_CORE);
    let clients = pinned_runtime(CLIENT_CORE);
    // The benchmark makes no events; the queue's receiver is held so the queue stays open.
    let (admin, _events) = server.block_on(start_server());
    let document = Post::document(&html);
    let json = Post::json(&html);
    let answer = clients.block_on(post(admin, &document));
    assert_eq!(answer, clients.block_on(post(admin, &json)), "one answer");
    let http = server.block_on(start_http_alone(answer.clone()));
    println!(
        "request {} bytes as text/html, {} as JSON; answer {} bytes",
        document.body.len(),
        json.body.len(),
        answer.len()
    );
    let (mut library, mut api, mut api_json, mut alone) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for _ in 0..RUNS {
        library = library.max(library_rate(&html));
        api = api.max(clients.block_on(post_rate(admin, &document)));
        api_json = api_json.max(clients.block_on(post_rate(admin, &json)));
        alone = alone.max(clients.block_on(post_rate(http, &document)));
    }
    let bound = 1.0 / (1.0 / library + 1.0 / alone);
    println!("library rewrite_str, {CLIENTS} threads on one core: {library:8.1} messages/s");
    println!("API, text/html, {CLIENTS} clients, server on one core: {api:8.1} messages/s");
    println!("API, JSON request, {CLIENTS} clients, server on one core: {api_json:8.1} messages/s");
    println!("HTTP alone, the text/html exchange, {CLIENTS} clients: {alone:8.1} exchanges/s");
    println!(
        "API / library: {:.2} (goal >= 0.80; the exchange alone bounds it at {:.2}); \
         with a JSON request: {:.2}",
        api / library,
        bound / library,
        api_json / library
    );
}

/// One of the requests the clients send, built once.
#[derive(Clone)]
struct Post {
    /// The path and query.
    uri: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// The body.
    body: Bytes,
}

impl Post {
    /// The document sent as itself, the fields in the query string.
    fn document(html: &str) -> Post {
        Post {
            uri: "/v1/rewrite/html?message_id=news-1",
            content_type: "text/html; charset=utf-8",
            body: Bytes::from(html.to_owned()),
        }
    }

    /// The document inside a JSON request.
    fn json(html: &str) -> Post {
        let json = serde_json::json!({ "message_id": "news-1", "html": html });
        Post {
            uri: "/v1/rewrite/html",
            content_type: "application/json",
            body: Bytes::from(json.to_string()),
        }
    }

    /// The request, as hyper sends it.
    fn request(&self) -> Request<Full<Bytes>> {
        Request::post(self.uri)
            .header("host", "admin")
            .header("content-type", self.content_type)
            .body(Full::new(self.body.clone()))
            .unwrap()
    }
}

/// A runtime of one worker whose threads, its blocking pool's too, all run on `core`.
fn pinned_runtime(core: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || pin(core))
        .build()
        .unwrap()
}

/// Pins the calling thread to `core`, when the machine has two cores or more.
fn pin(core: usize) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.len() >= 2 {
        core_affinity::set_for_current(cores[core]);
    }
}

/// Serve on port 0 with the fixed key ring, as the tests do; returns the admin address and
/// the event queue's receiver.
async fn start_server() -> (SocketAddr, EventReceiver) {
    let text = "[keys]\nfile = \"keys.toml\"\n[admin]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
                [server]\nhttp = \"127.0.0.1:0\"\n";
    let config = Config::from_toml(text, Path::new("bench.toml")).unwrap();
    let listeners = server::bind(&config, None).await.unwrap();
    let admin = listeners.admin.local_addr().unwrap();
    let (queue, events) = EventQueue::bounded(1024);
    let state = State::new(&config, fixed_ring(), queue);
    tokio::spawn(server::run(listeners, state, std::future::pending()));
    (admin, events)
}

/// Messages a second from `CLIENTS` threads calling `rewrite_str` for `RUN`.
fn library_rate(html: &str) -> f64 {
    let options = RewriteOptions::new(fixed_signer(), MessageId::new("news-1").unwrap());
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                pin(SERVER_CORE);
                while start.elapsed() < RUN {
                    std::hint::black_box(rewrite_str(html, &options).unwrap());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// A bare hyper server on port 0 that reads each request whole and answers `answer`: what
/// the exchange costs with no API behind it.
async fn start_http_alone(answer: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let answer = answer.clone();
                async move {
                    std::hint::black_box(request.into_body().collect().await.unwrap().to_bytes());
                    let mut response = Response::new(Full::new(answer));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    address
}

/// One `post` to `address`; its answer, which must be a 200.
async fn post(address: SocketAddr, post: &Post) -> Bytes {
    let answer = connect(address)
        .await
        .send_request(post.request())
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.into_body().collect().await.unwrap().to_bytes()
}

/// A keep-alive HTTP/1.1 connection to `address`, driven by a task of its own.
async fn connect(address: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Messages a second from `CLIENTS` keep-alive clients sending `post` to `address` for `RUN`.
async fn post_rate(address: SocketAddr, post: &Post) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (done, stop, post) = (Arc::clone(&done), Arc::clone(&stop), post.clone());
        clients.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            while !stop.load(Ordering::Relaxed) {
                let answer = sender.send_request(post.request()).await.unwrap();
                assert_eq!(answer.status(), 200);
                std::hint::black_box(answer.into_body().collect().await.unwrap().to_bytes());
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    for client in clients {
        client.await.unwrap();
    }
    counted
}
