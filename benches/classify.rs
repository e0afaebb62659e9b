//! What the classifier costs a click, beside the same click without it, in the same process,
//! with an Apple-sized list of 300,000 prefixes loaded; and what that list takes in memory.
//!
//! Goals: the classifier costs at most 5% of a click's CPU; the list takes at most 32 MB.
//!
//! Each click is a whole `server::routes::respond`: decode and verify the link, resolve the
//! client through a trusted proxy's `X-Forwarded-For`, classify, write the event and queue
//! it, build the 302. The two servers differ only in `[classify] enabled`. Both are timed in
//! turns, best of several samples each, since noise on a shared machine only adds time.
//!
//! The list is synthesised in Apple's CSV format (`prefix,country,region,city,`): half IPv4
//! /27s and /28s, half IPv6 /64s and /45s, spread by a fixed pseudo-random sequence. Its
//! memory is the process's resident set before and after loading it (`/proc/self/statm`),
//! beside the trie's own count (`prefix_trie`'s `mem_size`).
//!
//! Run: `cargo bench --bench classify`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use hyper::Request;
use mailtrack::classify::NetworkList;
use mailtrack::config::{Certainty, ListKind};
use mailtrack::events::{EventQueue, EventReceiver};
use mailtrack::link::{LinkTags, MessageId, MessageStamp, SendTime};
use mailtrack::server::{routes, State};
use mailtrack::testing::{fixed_ring, fixed_signer, request_target};
use mailtrack::Config;

const PREFIXES: usize = 300_000;
const SAMPLE_TIME: Duration = Duration::from_millis(300);
const SAMPLES: usize = 9;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let list = dir.path().join("egress-ip-ranges.csv");
    write_synthetic_list(&list, PREFIXES);

    let before = resident_bytes();
    let loaded = NetworkList::load(
        "apple_egress",
        &list,
        ListKind::AppleEgress,
        Certainty::Certain,
    )
    .expect("the synthetic list loads");
    let after = resident_bytes();
    println!(
        "list: {} prefixes; resident set +{:.1} MB; trie's own count {:.1} MB (goal: 32 MB) {}",
        loaded.len(),
        mb(after.saturating_sub(before)),
        mb(loaded.mem_size()),
        if after.saturating_sub(before) <= 32 << 20 {
            "met"
        } else {
            "MISSED"
        }
    );
    drop(loaded);

    let with = server(dir.path(), &list, true);
    let without = server(dir.path(), &list, false);
    let target = {
        let id = MessageId::new("0100018c7f3e1a2b-5a1f2c3d-aaaa-bbbb-cccc-0123456789ab-000000")
            .expect("a valid id");
        let tags = LinkTags::parse("campaign:spring").expect("valid tags");
        let url = "https://shop.example.com/newsletter/2026/11/spring-sale?utm_source=mail&utm_medium=email&id=1234567";
        // A version 2 link, as the rewriter writes: sent an hour ago, tagged with its campaign.
        let sent =
            SendTime::from_system_time(std::time::SystemTime::now() - Duration::from_secs(3600))
                .expect("a time after 1970");
        let stamp = MessageStamp::new(id, sent, tags.clone());
        let link = fixed_signer()
            .click_url(url, &stamp, &tags)
            .expect("a trackable URL");
        request_target(&link).to_owned()
    };
    let cases = [
        ("a person (Chrome, residential IPv4)", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "203.0.113.7"),
        ("a person (Safari, IPv6)", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "2001:db8:1234::7"),
        ("Safe Links (EOP)", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "40.107.22.35"),
    ];
    println!(
        "{:<38} {:>14} {:>14} {:>8} {:>6}",
        "click", "classified", "unclassified", "cost", "goal"
    );
    for (name, user_agent, client) in cases {
        let request = Request::get(&target)
            .header("host", "track.example.com")
            .header("user-agent", user_agent)
            .header("x-forwarded-for", client)
            .body(())
            .expect("a valid request");
        let peer: IpAddr = Ipv4Addr::LOCALHOST.into();
        let (mut with_ns, mut without_ns) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..SAMPLES {
            with_ns = with_ns.min(sample(&with, &request, peer));
            without_ns = without_ns.min(sample(&without, &request, peer));
        }
        let cost = with_ns / without_ns - 1.0;
        println!(
            "{name:<38} {with_ns:>11.0} ns {without_ns:>11.0} ns {:>7.1}% {:>5}% {}",
            cost * 100.0,
            5,
            if cost <= 0.05 { "met" } else { "MISSED" }
        );
    }
}

/// A server state: trusted proxy on 127.0.0.1, no event budget (the same pair clicks over
/// and over), the list as Apple's, classifying or not.
fn server(dir: &Path, list: &Path, enabled: bool) -> (State, std::cell::RefCell<EventReceiver>) {
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         [events]\nbudget_per_minute = 0\n[classify]\nenabled = {enabled}\napple_egress = {:?}\n",
        list.display().to_string()
    );
    let config = Config::from_toml(&text, &dir.join("mailtrack.toml")).expect("a valid config");
    let (queue, receiver) = EventQueue::bounded(1 << 16);
    (
        State::new(&config, fixed_ring(), queue),
        std::cell::RefCell::new(receiver),
    )
}

/// Nanoseconds per click over one sample, the queue drained as the writer would.
fn sample(
    (state, receiver): &(State, std::cell::RefCell<EventReceiver>),
    request: &Request<()>,
    peer: IpAddr,
) -> f64 {
    let mut receiver = receiver.borrow_mut();
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < SAMPLE_TIME {
        for _ in 0..64 {
            let reply = routes::respond(black_box(request), peer, state);
            assert_eq!(reply.answer.status(), 302);
            black_box(reply);
        }
        calls += 64;
        while let Some(Some(event)) = receiver.recv_encoded().now_or_never() {
            black_box(event);
        }
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

/// `count` prefixes in Apple's format, written a line at a time: a 12 MB string built and
/// freed first would stay in the heap and count as the list's.
fn write_synthetic_list(path: &Path, count: usize) {
    use std::io::Write;
    let file = std::fs::File::create(path).expect("creating the list");
    let mut out = std::io::BufWriter::new(file);
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state
    };
    for n in 0..count {
        let bits = next();
        let written = if n % 2 == 0 {
            // Public-looking IPv4, off the documentation and test ranges.
            let v4 = Ipv4Addr::from(((bits >> 32) as u32 | 0x0100_0000) & 0xDFFF_FFE0);
            let len = if bits & 1 == 0 { 27 } else { 28 };
            writeln!(out, "{v4}/{len},US,US-CA,Los Angeles,")
        } else {
            let v6 = Ipv6Addr::from((0x2a02_u128 << 112) | (u128::from(bits) << 48));
            let len = if bits & 1 == 0 { 64 } else { 45 };
            writeln!(out, "{v6}/{len},GB,GB-EN,London,")
        };
        written.expect("writing the list");
    }
    out.flush().expect("writing the list");
}

/// The process's resident set, in bytes.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
