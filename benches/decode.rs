//! How long the tolerant decoder takes to verify a link, beside its floor: one HMAC-SHA256
//! over the same bytes, measured in the same process.
//!
//! Goals: a canonical link in under 2 µs; a worst-case 8 KiB hostile path in under 50 µs.
//!
//! Run: `cargo bench --bench decode`

use std::hint::black_box;
use std::time::{Duration, Instant};

use mailtrack::link::decode::{decode_counting, DecodeWork};
use mailtrack::link::{decode, LinkTags, MAX_REQUEST_TARGET};
use mailtrack::testing::{fixed_ring, fixed_signer, request_target, Mangling};
use ring::hmac;

/// Each case runs this long per sample; the fastest of [`SAMPLES`] samples is reported,
/// because on a shared machine noise only ever adds time.
const SAMPLE_TIME: Duration = Duration::from_millis(200);
const SAMPLES: usize = 7;

fn main() {
    let ring = fixed_ring();
    let signer = fixed_signer();
    // A version 2 link, as the signer writes them, with no message tags.
    let message_id = mailtrack::testing::stamp_v2(
        "0100018c7f3e1a2b-5a1f2c3d-aaaa-bbbb-cccc-0123456789ab-000000",
        "",
    );
    let tags = LinkTags::parse("campaign:spring;variant:b").expect("valid tags");
    let url = "https://shop.example.com/newsletter/2026/11/spring-sale?utm_source=mail&utm_medium=email&utm_campaign=spring&id=1234567";
    let link = signer
        .click_url(url, &message_id, &tags)
        .expect("a trackable URL");
    let canonical = request_target(&link).to_owned();
    let client_decoded = Mangling::ClientDecodedOnce.apply(&canonical);
    let hostile = hostile_path(&canonical);
    assert!(hostile.len() <= MAX_REQUEST_TARGET);
    let mut work = DecodeWork::default();
    decode_counting(&hostile, &ring, &mut work);

    let floor_key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
    let floor = |bytes: &[u8]| {
        let floor_key = &floor_key;
        let bytes = bytes.to_vec();
        move || {
            black_box(hmac::sign(floor_key, black_box(&bytes)));
        }
    };

    println!(
        "{:<34} {:>12} {:>14} {:>8} {:>10}",
        "case", "decode", "HMAC floor", "ratio", "goal"
    );
    let cases: [(&str, &str, usize, f64); 3] = [
        ("canonical link", &canonical, url.len(), 2_000.0),
        (
            "139 mail form (decoded once)",
            &client_decoded,
            url.len(),
            2_000.0,
        ),
        ("hostile 8 KiB path", &hostile, hostile.len(), 50_000.0),
    ];
    for (name, request, floor_len, goal_ns) in cases {
        let decode_ns = measure(|| {
            black_box(decode(black_box(request), &ring));
        });
        let floor_ns = measure(floor(&vec![b'a'; floor_len]));
        println!(
            "{name:<34} {:>9.0} ns {:>11.0} ns {:>7.1}x {:>7} µs {}",
            decode_ns,
            floor_ns,
            decode_ns / floor_ns,
            goal_ns / 1000.0,
            if decode_ns < goal_ns { "met" } else { "MISSED" }
        );
    }
    println!(
        "hostile path: {} bytes, {} MACs over {} bytes",
        hostile.len(),
        work.macs,
        work.bytes_hashed
    );
}

/// The most expensive path we know of, filling the 8 KiB cap behind a well-formed tail with a
/// key id that exists. It makes the most candidates pass the could-it-be-signed filter:
/// `/` and `?` (client-decoded), lower-case escapes before and after one decoding, and `%25`
/// layers, all decoding to printable ASCII under `https://`.
fn hostile_path(canonical: &str) -> String {
    let tail = &canonical[canonical.find("/1~").expect("the version segment")..];
    let head = "/CL0/https://a.example/?";
    let room = MAX_REQUEST_TARGET - tail.len() - head.len();
    let filler = "a%2f%252f%2541?/".repeat(room / 16 + 1);
    format!("{head}{}{tail}", &filler[..room])
}

/// Nanoseconds per call of `f`: the fastest of several timed samples.
fn measure(mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < SAMPLE_TIME {
            for _ in 0..64 {
                f();
            }
            calls += 64;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / calls as f64);
    }
    best
}
