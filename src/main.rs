//! The `mailtrack` binary: sets the allocator and hands over to [`cli`], which parses the
//! command line, loads the config, and calls the library.

use std::process::ExitCode;

mod cli;

/// jemalloc, not the system's malloc. An idle HTTP/1 connection holds hyper's two 8 KiB
/// buffers, read and write, with at most a few hundred bytes written to them. jemalloc gives
/// each buffer pages of its own, and a page nothing was written to is never mapped; glibc's
/// malloc puts a chunk header on either side of it, so about half of each is resident even
/// when nothing was written. VmRSS with 10,000 idle keep-alive connections: 79 MB with
/// jemalloc, 117 MB without (`benches/compare.sh`).
///
/// Built with `background_thread:true` (the `background_threads` feature in Cargo.toml): a
/// jemalloc thread gives freed pages back to the system on its decay schedule (10 s).
/// Without it, pages are given back only as the process allocates again, so an idle server
/// kept what a burst had made it use: 108 MB after 300 attacking HTTP/2 connections had
/// closed, against 9 MB before them; now 12 MB thirty seconds after. The setting is built in,
/// not written at run time: `unsafe_code` is forbidden here, and needs none this way.
/// `_RJEM_MALLOC_CONF=background_thread:false` turns it off for a comparison.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::main()
}
