//! Slow and idle clients, oversized heads, one client holding many connections: the limits
//! that keep one client from hurting the others. Timeouts are configured short; speeds are
//! only compared with a baseline measured in the same test.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{config, send, try_send, Proto, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

const SLOW_CLIENTS: usize = 500;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

fn short_timeouts() -> mailtrack::Config {
    let mut config = config("");
    config.server.header_read_timeout = HEADER_READ_TIMEOUT;
    config.server.idle_timeout = IDLE_TIMEOUT;
    config
}

/// How long until the server closes `stream`, reading whatever it sends; `None` past `limit`.
async fn time_to_close(
    stream: &mut TcpStream,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        match timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // a 408, or the answer to an earlier request
            Err(_) => return None,
        }
    }
}

/// Sends a request one byte a second until the server hangs up; returns when it did.
async fn slow_loris(addr: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let head = b"GET /healthz HTTP/1.1\r\nHost: track.example.com\r\nX-Slow: ";
    let every = Duration::from_secs(1);
    trickle(&mut stream, head, every, started, HEADER_READ_TIMEOUT * 4).await
}

/// Writes `head`, then `a`s, one byte `every` so long, until the server closes, resets or
/// answers; returns when that was, from `started`, or `None` past `limit`.
async fn trickle(
    stream: &mut TcpStream,
    head: &[u8],
    every: Duration,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 64];
    for byte in head.iter().chain(std::iter::repeat(&b'a')) {
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        match timeout(every, stream.read(&mut buf)).await {
            Ok(_) => return Some(started.elapsed()), // closed, reset, or answered 408
            Err(_) if started.elapsed() > limit => return None,
            Err(_) => {}
        }
    }
    None
}

/// A keep-alive connection that has sent one request, its answer not read.
async fn after_one_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    stream
}

/// The median time for a fresh connection to get `/healthz`.
async fn median_latency(addr: SocketAddr, samples: usize) -> Duration {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let reply = send(addr, None, Proto::Http1, "GET", "/healthz", &[]).await;
        assert_eq!(reply.status, 200);
        times.push(started.elapsed());
    }
    times.sort();
    times[samples / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_does_not_slow_others_and_is_cut_off() {
    let server = TestServer::start(short_timeouts()).await;
    let addr = server.http.unwrap();
    let baseline = median_latency(addr, 50).await;

    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| tokio::spawn(slow_loris(addr)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = median_latency(addr, 50).await;
    eprintln!("median latency: {baseline:?} alone, {loaded:?} beside {SLOW_CLIENTS} slow clients");
    assert!(
        loaded <= baseline * 20,
        "{loaded:?} vs baseline {baseline:?}"
    );

    let mut closed_after = Vec::new();
    for task in slow {
        closed_after.push(task.await.unwrap().expect("closed by the server"));
    }
    let latest = closed_after.iter().max().unwrap();
    eprintln!("slow clients closed after at most {latest:?}");
    assert!(
        *latest >= HEADER_READ_TIMEOUT,
        "not before the timeout: {latest:?}"
    );
    // The slow clients look once a second, so they see the close up to a second late.
    assert!(
        *latest < HEADER_READ_TIMEOUT + Duration::from_secs(3),
        "{latest:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() {
    let pki = common::TestPki::new();
    let (files, _) = pki.leaf("track", &["track.example.com"]);
    let mut config = short_timeouts();
    config.server.https = Some("127.0.0.1:0".parse().unwrap());
    config.tls.certificates = vec![files];
    let server = TestServer::start(config).await;
    let limit = IDLE_TIMEOUT * 3;

    // Silent on HTTPS: the handshake never starts. Half an HTTP/2 preface on HTTP.
    for (addr, bytes) in [
        (server.https.unwrap(), &b""[..]),
        (server.http.unwrap(), b"PRI * HTTP/2.0\r\n"),
    ] {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let closed = time_to_close(&mut stream, started, limit)
            .await
            .expect("closed");
        assert!(
            closed >= HEADER_READ_TIMEOUT && closed < HEADER_READ_TIMEOUT * 2,
            "{closed:?}"
        );
    }

    // Idle after one request on HTTP/1.1 keep-alive.
    let started = Instant::now();
    let mut stream = after_one_request(server.http.unwrap()).await;
    let closed = time_to_close(&mut stream, started, limit)
        .await
        .expect("closed");
    eprintln!("idle HTTP/1.1 connection closed after {closed:?}");
    // By idle_timeout, not the shorter header_read_timeout: the wait for a next request is
    // idleness. The drive loop may notice up to a close linger late.
    assert!(
        closed >= IDLE_TIMEOUT && closed < IDLE_TIMEOUT * 2,
        "{closed:?}"
    );

    // A next request whose head trickles in a byte every half second: cut off at the same
    // deadline.
    let started = Instant::now();
    let mut stream = after_one_request(server.http.unwrap()).await;
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    let every = Duration::from_millis(500);
    let closed = trickle(&mut stream, head, every, started, limit)
        .await
        .expect("a trickling head is cut off");
    eprintln!("trickling second request cut off after {closed:?}");
    assert!(
        closed >= IDLE_TIMEOUT && closed < IDLE_TIMEOUT * 2,
        "{closed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn heads_over_8_kib_are_refused() {
    let server = TestServer::start(config("")).await;
    let addr = server.http.unwrap();
    let big = "a".repeat(9 * 1024);
    let reply = send(
        addr,
        None,
        Proto::Http1,
        "GET",
        "/healthz",
        &[("x-big", &big)],
    )
    .await;
    assert_eq!(reply.status, 431);
    let fits = "a".repeat(6 * 1024);
    for proto in [Proto::Http1, Proto::Http2] {
        let reply = send(addr, None, proto, "GET", "/healthz", &[("x-fits", &fits)]).await;
        assert_eq!(reply.status, 200);
    }
    // HTTP/2 refuses the stream (or answers 431): either way, no 200.
    match try_send(
        addr,
        None,
        Proto::Http2,
        "GET",
        "/healthz",
        &[("x-big", &big)],
    )
    .await
    {
        Ok(reply) => assert_eq!(reply.status, 431),
        Err(error) => eprintln!("HTTP/2 with a 9 KiB header: {error}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn past_max_connections_new_ones_are_closed_at_once() {
    let mut config = config("");
    config.server.max_connections = 2;
    let server = TestServer::start(config).await;
    let addr = server.http.unwrap();
    let _held: Vec<TcpStream> = vec![
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let closed = time_to_close(&mut extra, started, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the extra connection is closed, not left waiting"
    );
    drop(_held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = send(addr, None, Proto::Http1, "GET", "/healthz", &[]).await;
    assert_eq!(reply.status, 200);
    let metrics = send(server.admin, None, Proto::Http1, "GET", "/metrics", &[])
        .await
        .text();
    assert!(
        metrics.contains("mailtrack_connections_shed_total{reason=\"max_connections\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

/// A connection to `addr` from `source`, one of the loopback addresses (127.0.0.0/8 is all
/// loopback on Linux), so that one test can be several clients.
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the server serves `stream`: a request on it is answered 200. `false` when it was
/// closed unanswered, as a connection over a cap is.
async fn is_served(stream: &mut TcpStream) -> bool {
    let request = b"GET /healthz HTTP/1.1\r\nHost: track.example.com\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 1024];
    match timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].starts_with(b"HTTP/1.1 200"),
        Ok(Err(_)) => false, // reset: closed with our request unread
        Err(_) => panic!("neither answered nor closed within 5 s"),
    }
}

/// A served connection from `source`, retried for up to 5 s while the server is still
/// taking back the slots of connections just closed.
async fn served_from(source: &str, addr: SocketAddr) -> TcpStream {
    let started = Instant::now();
    loop {
        let mut stream = connect_from(source, addr).await;
        if is_served(&mut stream).await {
            return stream;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{source} got no slot back within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_client_holds_at_most_max_connections_per_ip() {
    const CAP: usize = 3;
    let mut config = config("trusted_proxies = [\"127.0.0.3\"]\n");
    config.server.max_connections_per_ip = CAP;
    let server = TestServer::start(config).await;
    let addr = server.http.unwrap();

    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut stream = connect_from("127.0.0.1", addr).await;
        assert!(is_served(&mut stream).await, "within the cap");
        held.push(stream);
    }
    let mut over = connect_from("127.0.0.1", addr).await;
    assert!(
        !is_served(&mut over).await,
        "one over the cap is closed unanswered"
    );

    // Another client is not held to the first one's count.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert!(
        is_served(&mut other).await,
        "a second client still connects"
    );
    // Nor is a trusted proxy, whatever it carries.
    let mut proxied = Vec::new();
    for _ in 0..CAP * 3 {
        let mut stream = connect_from("127.0.0.3", addr).await;
        assert!(is_served(&mut stream).await, "a trusted proxy is exempt");
        proxied.push(stream);
    }

    let metrics = send(server.admin, None, Proto::Http1, "GET", "/metrics", &[])
        .await
        .text();
    for line in [
        "mailtrack_connections_shed_total{reason=\"max_connections_per_ip\"} 1",
        "mailtrack_connections_shed_total{reason=\"max_connections\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Closing its connections gives the client its slots back, all of them.
    drop(held);
    let mut again = Vec::new();
    for _ in 0..CAP {
        again.push(served_from("127.0.0.1", addr).await);
    }
    let mut over = connect_from("127.0.0.1", addr).await;
    assert!(!is_served(&mut over).await, "and the cap holds again");
    server.stop().await;
}
