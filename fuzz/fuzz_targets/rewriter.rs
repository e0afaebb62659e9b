//! The HTML rewriter over arbitrary bytes: no panic, every tracked link verifies, one pixel,
//! and the same output whole, in pieces and as a string. The properties live in
//! `mailtrack::testing::check_rewriter`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() <= 64 * 1024 {
        mailtrack::testing::check_rewriter(data);
    }
});
