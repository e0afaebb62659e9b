//! Log output: `tracing` to standard error, as text or JSON lines (`[log] format`).
//!
//! The level comes from `RUST_LOG` (default `info`). Nothing logs secrets at any level: the
//! key ring is never formatted, and certificates show only their file names. Client
//! addresses appear truncated unless `[log] full_client_ip` is on (see `LoggedIp`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The level when `RUST_LOG` is not set: start-up, shutdown, reloads and dropped events.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Installs the global subscriber. Call once, before anything logs; later calls do nothing.
pub fn init(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_LEVEL));
    // Colours only for a person at a terminal, never into a file or a log pipeline.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already installed (a second call, or a
    // test harness that set its own); the first one stays, which is what we want.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
