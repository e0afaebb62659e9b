//! Every end-to-end test but two, in one binary: each file below was its own test binary,
//! and linking some twenty binaries against the whole crate was most of the test build.
//! `cargo test --release --test suite serve_http::` runs one file's tests.
//!
//! Two stay apart, in `tests/`: `events_tls` sets `SSL_CERT_FILE` in its own process, and
//! `events_sync_crash` runs its own binary again as the child it kills.

mod common;
mod support_receiver;
mod support_redis;

mod classify_fixtures;
mod cli;
mod events_cluster;
mod events_file;
mod events_redis;
mod events_stdout;
mod events_tail;
mod notify_faults;
mod notify_file;
mod notify_http;
mod notify_ops;
mod notify_process;
mod notify_redis;
mod notify_sns;
mod rewrite_corpus;
mod rewrite_mime;
mod serve_abuse;
mod serve_acme;
mod serve_admin;
mod serve_api;
mod serve_browser;
mod serve_events;
mod serve_h2_attack;
mod serve_hardening;
mod serve_http;
mod serve_process;
mod serve_tls;
mod serve_unsub;
