//! The rewriter's throughput on a realistic newsletter, beside its peer: lol_html passing the
//! same document through with no handlers, measured in the same run.
//!
//! The newsletter is a MailChimp template from the test corpus, its body filled with article
//! blocks (inline-styled tables, images, and links with `&amp;`-separated UTM queries) until it
//! is about 100 KB with 150 article links. The goal is at least half the passthrough speed.
//!
//! A third figure, lol_html with no-op handlers on the same elements, shows the floor of any
//! rewriter built on handlers: with no handler at all lol_html skips tokenising, so most of
//! the gap to the passthrough is lol_html's own parsing, not the rewriter's work.
//!
//! Run with `cargo bench --bench rewrite`.

#[path = "support/newsletter.rs"]
mod newsletter;

use std::hint::black_box;
use std::time::{Duration, Instant};

use lol_html::{element, end, HtmlRewriter, Settings};
use mailtrack::link::MessageId;
use mailtrack::rewrite::{rewrite_bytes, RewriteOptions};
use mailtrack::testing::fixed_signer;

/// Rewrites per timed run, so a run lasts long enough to time well.
const ITERATIONS: u32 = 20;
/// Timed runs; the fastest is reported, as the one least disturbed by the rest of the machine.
const RUNS: usize = 15;

fn main() {
    let newsletter = newsletter::newsletter();
    let options = RewriteOptions::new(fixed_signer(), MessageId::new("bench-0001").unwrap());
    let report = rewrite_bytes(&newsletter, &options).unwrap().report;
    println!(
        "newsletter: {} bytes, {} links tracked, {} left as they were",
        newsletter.len(),
        report.tracked.len(),
        report.skipped.len()
    );

    let rewrite = best_of(|| {
        black_box(rewrite_bytes(black_box(&newsletter), &options).unwrap());
    });
    let passthrough = best_of(|| {
        black_box(lol_html_with(Settings::new(), black_box(&newsletter)));
    });
    let no_op = best_of(|| {
        black_box(lol_html_with(no_op_handlers(), black_box(&newsletter)));
    });
    let mb_per_s =
        |time: Duration| newsletter.len() as f64 * f64::from(ITERATIONS) / time.as_secs_f64() / 1e6;
    let (ours, peer, floor) = (mb_per_s(rewrite), mb_per_s(passthrough), mb_per_s(no_op));
    println!("rewrite:                      {ours:8.1} MB/s");
    println!("lol_html passthrough:         {peer:8.1} MB/s");
    println!("lol_html, no-op handlers:     {floor:8.1} MB/s");
    println!(
        "ratio to passthrough:         {:8.2} (goal: at least 0.50)",
        ours / peer
    );
    println!("ratio to no-op handlers:      {:8.2}", ours / floor);
}

/// The handlers the rewriter registers for a message with no marker, doing nothing.
fn no_op_handlers() -> Settings<'static, 'static> {
    Settings::new()
        .append_element_content_handler(element!("a, area", |_| Ok(())))
        .append_element_content_handler(element!("body", |_| Ok(())))
        .append_document_content_handler(end!(|_| Ok(())))
}

/// lol_html with `settings`, writing to a buffer as [`rewrite_bytes`] does.
fn lol_html_with(settings: Settings<'static, 'static>, html: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(html.len() + 512 + html.len() / 8);
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| {
        out.extend_from_slice(chunk);
    });
    rewriter.write(html).unwrap();
    rewriter.end().unwrap();
    out
}

/// The fastest of [`RUNS`] runs of [`ITERATIONS`] calls, after one warm-up run.
fn best_of(mut work: impl FnMut()) -> Duration {
    let mut run = || {
        let start = Instant::now();
        for _ in 0..ITERATIONS {
            work();
        }
        start.elapsed()
    };
    run();
    (0..RUNS).map(|_| run()).min().unwrap()
}
