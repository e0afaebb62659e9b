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
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::main()
}
