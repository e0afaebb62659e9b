//! A real browser follows a tracked link: headless Chromium opens a page whose script
//! clicks the link, the proxy redirects, and the destination (a local server) sees exactly
//! the original URL. Skipped when Chromium is not installed.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mailtrack::link::{LinkSigner, LinkTags};
use mailtrack::testing::fixed_ring;
use tokio::net::TcpListener;
use url::Url;

use common::{config, TestServer};

const CHROMIUM: &str = "chromium";

/// A destination server: `/start` is the page with the link; everything else is recorded.
async fn destination(page: Arc<Mutex<String>>, seen: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (page, seen) = (Arc::clone(&page), Arc::clone(&seen));
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let target = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |pq| pq.as_str())
                    .to_owned();
                let body = if target == "/start" {
                    page.lock().unwrap().clone()
                } else {
                    if target != "/favicon.ico" {
                        seen.lock().unwrap().push(target);
                    }
                    "<!DOCTYPE html><title>landed</title><p id=landed>landed</p>".to_owned()
                };
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response
                    .headers_mut()
                    .insert("content-type", "text/html".parse().unwrap());
                std::future::ready(Ok::<_, Infallible>(response))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_lands_on_the_original_url() {
    if !common::installed(CHROMIUM) {
        eprintln!("{CHROMIUM} is not installed; skipping (apt-get install chromium)");
        return;
    }
    let mut server = TestServer::start(config("")).await;
    let (page, seen) = (
        Arc::new(Mutex::new(String::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let dest = destination(Arc::clone(&page), Arc::clone(&seen)).await;
    let original = format!("http://{dest}/landing/a%20b?x=1&y=%2Fz&q=caf%C3%A9");

    let base = Url::parse(&format!("http://{}", server.http.unwrap())).unwrap();
    let signer = LinkSigner::new(&base, Arc::new(fixed_ring())).unwrap();
    let id = mailtrack::testing::stamp_v2("browser-1", "campaign:browser");
    let tracked = signer.click_url(&original, &id, &LinkTags::new()).unwrap();
    *page.lock().unwrap() = format!(
        "<!DOCTYPE html><title>mail</title><a id=link href=\"{}\">go</a>\
         <script>document.getElementById('link').click()</script>",
        tracked.replace('&', "&amp;")
    );

    let profile = tempfile::tempdir().unwrap();
    let mut chromium = Command::new(CHROMIUM)
        .args(common::CHROMIUM_HEADLESS)
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{dest}/start"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while seen.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Chromium may already have exited; either way it is done.
    let _ = chromium.kill();
    let _ = chromium.wait();

    assert_eq!(
        *seen.lock().unwrap(),
        [original
            .trim_start_matches(&format!("http://{dest}"))
            .to_owned()]
    );
    let event = server.next_event().await;
    assert_eq!(event.click.unwrap().link, original);
    assert_eq!(event.mailtrack.repair, "as_received");
    server.stop().await;
}
