//! HTTP/2 under attack, against the `mailtrack serve` binary over real sockets: a client that
//! shuts its window and opens every stream it may costs a small, fixed amount for a bounded
//! time, and the memory comes back; a connection flooding control frames is closed while the
//! others are served as before. The attackers write raw frames (`h2_raw`).

use crate::common;
mod h2_raw;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pixel, ServeProcess, ADMIN_ON_A_FREE_PORT};
use h2_raw::{flood, frame, opening, RawConnection, GOAWAY, RST_STREAM, WINDOW_UPDATE};
use mailtrack::server::connection::MAX_CONCURRENT_STREAMS;

/// Run one at a time: each measures a server's memory or latency, which the other's load
/// would disturb on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const ATTACK_CONNECTIONS: usize = 300;
const STREAMS_PER_CONNECTION: u32 = 100;
/// A click link of the right shape with a wrong MAC, under key 1 (in the ring, retired): it
/// gets the 200 interstitial.
const INTERSTITIAL: &str = "/CL0/https:%2F%2Fexample.com%2F/1/msg-1/AAAAAAAAAAAAAAAAAAAAAA=1";
/// Short, so that the stalled connections close within the test: at the default of 10 s they
/// would close the same way, later.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A spawned server with the test key ring and `server` TOML under `[server]`.
fn spawn_server(dir: &Path, server: &str) -> ServeProcess {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    let config = dir.join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n{ADMIN_ON_A_FREE_PORT}[server]\nhttp = \"127.0.0.1:0\"\n{server}\n\
         [log]\nformat = \"json\"\n\
         [events]\nfile = \"data/events.jsonl\"\nspool_dir = \"data/spool\"\n"
    );
    std::fs::write(&config, text).unwrap();
    ServeProcess::spawn(&config, 1)
}

/// The server's resident memory, from `/proc/PID/status`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A keep-alive HTTP/1.1 connection that asks for one request-target at a time.
struct Http1Client {
    reader: BufReader<TcpStream>,
}

impl Http1Client {
    fn connect(addr: SocketAddr) -> Http1Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Http1Client {
            reader: BufReader::new(stream),
        }
    }

    /// GETs `target`; returns the status and body.
    fn get(&mut self, target: &str) -> (u16, Vec<u8>) {
        let request = format!("GET {target} HTTP/1.1\r\nHost: track.example.com\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, body)
    }
}

/// Asks for `/healthz` every 20 ms on its own connection until `stop`; returns the slowest
/// answer and how many there were.
fn probe_health(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Duration, u32)> {
    std::thread::spawn(move || {
        let mut client = Http1Client::connect(addr);
        let (mut slowest, mut count) = (Duration::ZERO, 0);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let (status, body) = client.get("/healthz");
            slowest = slowest.max(started.elapsed());
            count += 1;
            assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
            std::thread::sleep(Duration::from_millis(20));
        }
        (slowest, count)
    })
}

/// The value of one series in `/metrics`, on the admin listener at `addr`.
fn metric(addr: SocketAddr, series: &str) -> u64 {
    let (status, body) = Http1Client::connect(addr).get("/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("{series} in {text}"));
    line[series.len() + 1..].parse().unwrap()
}

const STALLED: &str = "mailtrack_connections_closed_total{reason=\"stalled\"}";
const FLOODED: &str = "mailtrack_connections_closed_total{reason=\"flood\"}";

#[test]
fn zero_window_streams_cost_little_for_a_bounded_time_and_the_memory_comes_back() {
    // Poisoned only by the other test failing, which leaves nothing here to protect.
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_server(
        dir.path(),
        &format!("answer_timeout = {}", ANSWER_TIMEOUT.as_secs()),
    );
    let addr = server.addr();
    let admin = server.admin_addr();
    // Every kind of answer once, on both protocols, so that what the first requests
    // allocate for good (worker threads' caches, the metric series) is in the baseline.
    let mut warm = Http1Client::connect(addr);
    for target in [INTERSTITIAL, &pixel("warm-up"), "/healthz"] {
        assert_eq!(warm.get(target).0, 200);
    }
    let mut h2 = RawConnection::open(addr, &opening(65_535));
    h2.stream
        .write_all(&h2_raw::indexed_requests(
            INTERSTITIAL,
            "track.example.com",
            1,
        ))
        .unwrap();
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    drop(h2);
    let before = rss_kib(server.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let health = probe_health(addr, Arc::clone(&stop));
    // A 3,900-byte :authority: with the :path it fills the 4 KiB HPACK table, so that every
    // stream after a connection's first costs its client 13 bytes.
    let authority = format!("{}.example.com", "a".repeat(3_900 - 12));
    let mut opening_bytes = opening(0);
    opening_bytes.extend(h2_raw::indexed_requests(
        INTERSTITIAL,
        &authority,
        STREAMS_PER_CONNECTION,
    ));
    let attack_started = Instant::now();
    let mut attackers: Vec<RawConnection> = (0..ATTACK_CONNECTIONS)
        .map(|_| RawConnection::open(addr, &opening_bytes))
        .collect();
    let sent = ATTACK_CONNECTIONS * opening_bytes.len();
    std::thread::sleep(Duration::from_millis(1000));
    let during = rss_kib(server.pid());
    assert_eq!(
        metric(admin, STALLED),
        0,
        "measured while every attacking connection is still open ({:?} in)",
        attack_started.elapsed()
    );
    let per_connection = during.saturating_sub(before) / ATTACK_CONNECTIONS as u64;
    eprintln!(
        "zero-window attack: {ATTACK_CONNECTIONS} connections, {sent} bytes sent; \
         RSS {before} KiB before, {during} KiB during: {per_connection} KiB a connection"
    );
    assert!(per_connection <= 128, "{per_connection} KiB a connection");

    // Nothing is ever taken, so every connection is closed as stalled.
    let closes_by = attack_started + ANSWER_TIMEOUT * 2 + Duration::from_secs(3);
    for (n, attacker) in attackers.iter_mut().enumerate() {
        assert!(
            attacker.read_to_close(closes_by),
            "connection {n} still open"
        );
        let frames = attacker.frames();
        let answered = frames.iter().filter(|f| f.is_status_200()).count();
        let refused = frames.iter().filter(|f| f.kind == RST_STREAM).count();
        assert_eq!(
            (answered, refused),
            (
                MAX_CONCURRENT_STREAMS as usize,
                (STREAMS_PER_CONNECTION - MAX_CONCURRENT_STREAMS) as usize
            ),
            "connection {n}: streams answered 200 (their bodies held) and refused"
        );
        assert!(frames.iter().any(|f| f.kind == GOAWAY), "connection {n}");
    }
    let closed_after = attack_started.elapsed();
    eprintln!("every stalled connection closed {closed_after:?} after the attack began");
    assert!(closed_after >= ANSWER_TIMEOUT, "not before answer_timeout");
    drop(attackers);
    stop.store(true, Ordering::Relaxed);
    let (slowest, probes) = health.join().unwrap();
    eprintln!("/healthz: slowest of {probes} answers during the attack {slowest:?}");
    assert!(slowest < Duration::from_millis(100), "{slowest:?}");
    assert_eq!(metric(admin, STALLED), ATTACK_CONNECTIONS as u64);

    std::thread::sleep(Duration::from_secs(30));
    let after = rss_kib(server.pid());
    eprintln!("RSS 30 s after the connections closed: {after} KiB ({before} KiB before)");
    assert!(
        after * 2 <= before * 3,
        "{after} KiB after, {before} KiB before"
    );
    // The server still answers, on a connection of its own.
    assert_eq!(Http1Client::connect(addr).get("/healthz").0, 200);
}

#[test]
fn control_frame_floods_are_closed_while_others_are_served() {
    // Poisoned only by the other test failing, which leaves nothing here to protect.
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_server(dir.path(), "");
    let addr = server.addr();
    let admin = server.admin_addr();

    // Two floods of WINDOW_UPDATE on stream 0 and one of frames of an unknown type (0xfa,
    // which a server must ignore): each written as fast as the socket takes it.
    let window_update = frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()).repeat(4096);
    let unknown = frame(0xfa, 0, 0, b"").repeat(4096);
    let floods = [&window_update, &window_update, &unknown].map(|chunk| {
        let chunk = chunk.clone();
        std::thread::spawn(move || {
            let mut connection = RawConnection::open(addr, &opening(65_535));
            let mut writer = connection.stream.try_clone().unwrap();
            let started = Instant::now();
            let writing =
                std::thread::spawn(move || flood(&mut writer, &chunk, Duration::from_secs(10)));
            let closed = connection.read_to_close(started + Duration::from_secs(10));
            let closed_after = started.elapsed();
            let written = writing.join().unwrap();
            let goaway = connection.frames().iter().any(|f| f.kind == GOAWAY);
            (closed.then_some(closed_after), goaway, written)
        })
    });

    // Meanwhile other clients keep asking for pixels, over HTTP/2 and HTTP/1, each request
    // on a fresh connection.
    let target = pixel("during-flood");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answered = runtime.block_on(async {
        let started = Instant::now();
        let mut answered = 0;
        while started.elapsed() < Duration::from_secs(3) {
            for proto in [common::Proto::Http2, common::Proto::Http1] {
                let reply = common::send(addr, None, proto, "GET", &target, &[]).await;
                assert_eq!(reply.status, 200);
                assert_eq!(&reply.body[..], mailtrack::server::routes::PIXEL_GIF);
                answered += 1;
            }
        }
        answered
    });
    eprintln!("{answered} pixels answered during the floods");

    for flood in floods {
        let (closed_after, goaway, written) = flood.join().unwrap();
        eprintln!("flood: {written} bytes written; closed after {closed_after:?}; GOAWAY {goaway}");
        let closed_after = closed_after.expect("a flooding connection is closed");
        assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");
        assert!(goaway, "the server said GOAWAY before closing");
    }
    assert_eq!(metric(admin, FLOODED), 3);
    assert_eq!(metric(admin, STALLED), 0);
}
