//! The command line: one file per command, each parsing nothing and calling the library.
//!
//! - [`links`]: `keygen`, `sign`, `pixel`, `decode`.
//! - [`rewrite`]: the `rewrite` command.
//! - [`stamp`]: `--message-id`, `--send-time` and `--message-tag`, for `sign`, `pixel` and
//!   `rewrite`.
//! - [`serve`]: the `serve` command.
//! - [`events`]: `events tail`, `events replay`.
//! - [`notify`]: the `notify` command, delivering events to subscribers, with `notify test`
//!   and `notify recover`.
//!
//! Every command loads the config the same way ([`load_config`]), and every failure maps to
//! one exit code ([`Failure`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mailtrack::link::{LinkTags, MessageId};
use mailtrack::server;
use mailtrack::{Config, ConfigError};

mod events;
mod links;
mod notify;
mod rewrite;
mod serve;
mod stamp;

use events::EventsCommand;
use stamp::StampArgs;

/// Exit code for a configuration error (sysexits' EX_USAGE): nothing was started.
const EXIT_CONFIG: u8 = 64;
/// Exit code for bad arguments, as clap uses.
const EXIT_USAGE: u8 = 2;
/// Exit code when a receiver did not take what was sent (sysexits' EX_UNAVAILABLE): `notify
/// test` refused, `notify recover` with batches left undelivered.
const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code of `decode` when the link did not verify.
const EXIT_NOT_VERIFIED: u8 = 1;

#[derive(Parser)]
#[command(name = "mailtrack", version, about = "Email open/click tracking proxy")]
pub(crate) struct Cli {
    /// The config file; without it, the embedded default (config/mailtrack.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new [[key]] table with a fresh random secret, for the keys file.
    Keygen {
        /// The new key's id.
        #[arg(long)]
        id: u32,
    },
    /// Print the tracked click link for URL.
    Sign {
        #[command(flatten)]
        stamp: StampArgs,
        /// A link tag, KEY:VALUE; repeat for more.
        #[arg(long = "tag", value_name = "KEY:VALUE")]
        tags: Vec<String>,
        /// The destination.
        url: String,
    },
    /// Print the open pixel's URL for a message.
    Pixel {
        #[command(flatten)]
        stamp: StampArgs,
    },
    /// Rewrite an HTML message (or, with --mime, a whole MIME message) from standard input
    /// for tracking, to standard output. Untracked links are listed in the report, each with
    /// its reason.
    Rewrite {
        #[command(flatten)]
        stamp: StampArgs,
        /// Write the report (tracked and skipped links) to FILE as JSON.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Put the open pixel at the top of the body, for long messages that Gmail clips.
        #[arg(long)]
        pixel_at_top: bool,
        /// Also track links that are not valid RFC 3986 but that a browser follows.
        #[arg(long)]
        browser_urls: bool,
        /// The input is a whole MIME message (RFC 5322, as for SES SendRawEmail): every
        /// text/html part is rewritten in its own charset and transfer encoding, the rest
        /// passed through byte for byte. A DKIM-signed message is refused.
        #[arg(long)]
        mime: bool,
        /// Add a one-click unsubscribe link (RFC 8058): hrefs that are {{unsubscribe}} or
        /// {{amazonSESUnsubscribeUrl}} become it, and with --mime the message gets
        /// List-Unsubscribe and List-Unsubscribe-Post (refused if it has a List-Unsubscribe).
        #[arg(long)]
        unsubscribe: bool,
    },
    /// Decode a request-target (path and query, as received) and print what it is as JSON.
    /// Exits 0 when it verifies, 1 otherwise.
    Decode {
        /// The request-target, e.g. /CL0/https:%2F%2Fexample.com%2F/1/msg/MAC=1
        request_target: String,
    },
    /// Run the tracking proxy: answer clicks and opens on `[server]`'s addresses until
    /// SIGTERM or SIGINT, then drain. SIGHUP reloads the certificates. Events go to
    /// `[events]`'s sink: a JSONL file by default, a Redis stream, or standard output.
    Serve,
    /// Work with events: tail the Redis stream as a consumer, or replay the spool.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Deliver the Redis events stream to every [[notify.endpoint]] whose rule wants each
    /// event, until SIGTERM or SIGINT. Any number may run on one Redis and share the work.
    /// `notify test` and `notify recover` work on one endpoint.
    Notify {
        #[command(subcommand)]
        command: Option<notify::NotifyCommand>,
    },
}

/// Why a command failed, which decides the exit code.
pub(crate) enum Failure {
    Config(ConfigError),
    Usage(String),
    Io(std::io::Error),
    Serve(server::ServerError),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

/// Parses the command line, runs the command, and maps its failure to an exit code.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure::Config(e)) => {
            eprintln!("mailtrack: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("mailtrack: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Io(e)) => {
            eprintln!("mailtrack: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Serve(e)) => {
            eprintln!("mailtrack: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let config = || load_config(cli.config.as_deref());
    match cli.command {
        Command::Keygen { id } => links::keygen(id)?,
        Command::Sign { stamp, tags, url } => links::sign(&config()?, &stamp, &tags, &url)?,
        Command::Pixel { stamp } => links::pixel(&config()?, &stamp)?,
        Command::Rewrite {
            stamp,
            report,
            pixel_at_top,
            browser_urls,
            mime,
            unsubscribe,
        } => {
            let flags = rewrite::Flags {
                pixel_at_top,
                browser_urls,
                mime,
                unsubscribe,
            };
            rewrite::run(&config()?, &stamp, report.as_deref(), flags)?;
        }
        Command::Decode { request_target } => {
            return links::decode(&config()?, &request_target);
        }
        Command::Events { command } => return events::run(command, config()?),
        Command::Serve => serve::run(config()?)?,
        Command::Notify { command } => return notify::main(command, config()?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the config, sets up logging as it says (so that loading the key ring can warn), and
/// creates the key ring if it is missing and the config allows it.
fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    let config = Config::load(path)?;
    server::logging::init(&config.log);
    if config.ensure_key_ring()? {
        eprintln!(
            "mailtrack: created {} with one new key (keys.generate_if_missing = true); \
             keep it: links signed with it need it to verify",
            config.keys_file.display()
        );
    }
    Ok(config)
}

fn parse_message_id(id: &str) -> Result<MessageId, Failure> {
    MessageId::new(id).map_err(|e| Failure::Usage(format!("--message-id {id:?}: {e}")))
}

fn parse_tags(tags: &[String]) -> Result<LinkTags, Failure> {
    let mut parsed = LinkTags::new();
    for tag in tags {
        let (key, value) = tag
            .split_once(':')
            .ok_or_else(|| Failure::Usage(format!("--tag {tag:?}: expected KEY:VALUE")))?;
        parsed
            .push(key, value)
            .map_err(|e| Failure::Usage(format!("--tag {tag:?}: {e}")))?;
    }
    Ok(parsed)
}
