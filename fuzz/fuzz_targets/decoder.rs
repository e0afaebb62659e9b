//! The tolerant decoder over arbitrary input: no panic, bounded work, and whatever verifies is
//! exactly what was signed. The properties live in `mailtrack::testing::check_decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() <= 8 * 1024 + 1 {
        mailtrack::testing::check_decoder(data);
    }
});
