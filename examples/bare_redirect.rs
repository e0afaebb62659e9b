//! The floor for `benches/compare.sh`: a bare hyper server that answers every request with
//! the same 302, and nothing else.
//!
//! It is built the way `mailtrack serve` is, so that the difference between the two is the
//! work mailtrack does per request (decode, verify, queue the event) and not the plumbing:
//!
//! - the same runtime: `tokio::runtime::Runtime::new()`, multi-threaded, one worker per core
//!   the process may run on (one, under `taskset -c 0`);
//! - the same allocator, jemalloc;
//! - the same HTTP stack: hyper's HTTP/1.1 and HTTP/2 connections, with the same HTTP/1
//!   settings (no header read timeout, 8 KiB buffer, keep-alive). hyper-util's
//!   `auto` builder picks between them here, where mailtrack reads the preface itself; both
//!   read the first bytes once per connection and cost nothing per request;
//! - one task per connection, `TCP_NODELAY` on;
//! - for HTTPS, the very same rustls configuration (`mailtrack::server::tls::acceptor`).
//!
//! It has no connection limit, idle timeout or graceful drain: those cost nothing per request
//! in mailtrack either, and a floor should not carry them.
//!
//! ```sh
//! cargo run --release --example bare_redirect -- 127.0.0.1:9001
//! cargo run --release --example bare_redirect -- 127.0.0.1:9443 --tls CERT.pem KEY.pem
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, LOCATION};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use mailtrack::config::CertificateFiles;
use mailtrack::server::{tls, CertificateStore};

/// mailtrack's allocator (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Where every request is sent: the same destination as the benchmark's signed link.
const LOCATION_VALUE: &str = "https://example.com/welcome?utm_source=newsletter";

/// mailtrack's HTTP/1 buffer cap (`server::connection::MAX_HTTP1_BUFFER`).
const MAX_HTTP1_BUFFER: usize = 8 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, tls_files) = match args.as_slice() {
        [addr] => (addr, None),
        [addr, flag, cert, key] if flag == "--tls" => (
            addr,
            Some(CertificateFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
        ),
        _ => {
            eprintln!("usage: bare_redirect IP:PORT [--tls CERT.pem KEY.pem]");
            return ExitCode::from(2);
        }
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("bare_redirect: {addr:?} is not IP:PORT");
        return ExitCode::from(2);
    };
    let acceptor = match tls_files.map(|files| load_acceptor(&files)).transpose() {
        Ok(acceptor) => acceptor,
        Err(message) => {
            eprintln!("bare_redirect: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bare_redirect: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(addr, acceptor)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare_redirect: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// mailtrack's own TLS acceptor, presenting one certificate.
fn load_acceptor(files: &CertificateFiles) -> Result<TlsAcceptor, String> {
    let store = CertificateStore::load(std::slice::from_ref(files)).map_err(|e| e.to_string())?;
    tls::acceptor(Arc::new(store)).map_err(|e| e.to_string())
}

/// Accepts forever, one task per connection.
async fn serve(addr: SocketAddr, acceptor: Option<TlsAcceptor>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let builder = Arc::new(http_builder());
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors, most likely; a benchmark floor just tries again.
            Err(_) => continue,
        };
        // Small answers go out at once; failure only costs latency.
        let _ = stream.set_nodelay(true);
        let (builder, acceptor) = (Arc::clone(&builder), acceptor.clone());
        tokio::spawn(async move {
            let service =
                service_fn(|_request| std::future::ready(Ok::<_, Infallible>(redirect())));
            // A connection that fails (a client reset, a bad handshake) is simply over; the
            // floor keeps no statistics.
            let _ = match acceptor {
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => builder.serve_connection(TokioIo::new(tls), service).await,
                    Err(_) => return,
                },
            };
        });
    }
}

/// The HTTP/1.1 + HTTP/2 builder, set up as `mailtrack::server::connection::http_builder`.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(None)
        .max_buf_size(MAX_HTTP1_BUFFER)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// The fixed answer: the same status and headers as mailtrack's click redirect.
fn redirect() -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::FOUND;
    let headers = answer.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store, private"));
    headers.insert(LOCATION, HeaderValue::from_static(LOCATION_VALUE));
    answer
}
