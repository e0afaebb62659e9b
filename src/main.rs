//! The `mailtrack` binary: parses the command line, loads the config, and calls the library.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use mailtrack::events::EventPipeline;
use mailtrack::link::{decode, key_ring, Decoded, KeyRing, LinkTags, MessageId};
use mailtrack::rewrite::{rewrite_bytes, PixelPlacement, RewriteOptions, UrlSyntax};
use mailtrack::server::{self, signals, CertificateStore, State};
use mailtrack::{Config, ConfigError};

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
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for a configuration error (sysexits' EX_USAGE): nothing was started.
const EXIT_CONFIG: u8 = 64;
/// Exit code for bad arguments, as clap uses.
const EXIT_USAGE: u8 = 2;
/// Exit code of `decode` when the link did not verify.
const EXIT_NOT_VERIFIED: u8 = 1;

#[derive(Parser)]
#[command(name = "mailtrack", version, about = "Email open/click tracking proxy")]
struct Cli {
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
        /// The message the link is sent in.
        #[arg(long, value_name = "ID")]
        message_id: String,
        /// A link tag, KEY:VALUE; repeat for more.
        #[arg(long = "tag", value_name = "KEY:VALUE")]
        tags: Vec<String>,
        /// The destination.
        url: String,
    },
    /// Print the open pixel's URL for a message.
    Pixel {
        /// The message the pixel is sent in.
        #[arg(long, value_name = "ID")]
        message_id: String,
    },
    /// Rewrite an HTML message from standard input for tracking, to standard output.
    /// Untracked links are listed in the report, each with its reason.
    Rewrite {
        /// The message the links are sent in.
        #[arg(long, value_name = "ID")]
        message_id: String,
        /// Write the report (tracked and skipped links) to FILE as JSON.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Put the open pixel at the top of the body, for long messages that Gmail clips.
        #[arg(long)]
        pixel_at_top: bool,
        /// Also track links that are not valid RFC 3986 but that a browser follows.
        #[arg(long)]
        browser_urls: bool,
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
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Read the stream with a consumer group and print each event as a JSON line,
    /// acknowledging it; entries left pending by a dead consumer are claimed first.
    Tail {
        /// The consumer group.
        #[arg(long, default_value = mailtrack::events::tail::DEFAULT_GROUP)]
        group: String,
        /// This consumer's name in the group.
        #[arg(long, default_value = mailtrack::events::tail::DEFAULT_CONSUMER)]
        consumer: String,
        /// Stop after N events.
        #[arg(long, value_name = "N")]
        max: Option<u64>,
    },
    /// Deliver what the spool holds to the sink, then exit (1 if some is left). Run it with
    /// `serve` stopped, e.g. after a crash when `serve` will not be started again soon.
    Replay,
}

/// Why a command failed, which decides the exit code.
enum Failure {
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

fn main() -> ExitCode {
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
        Command::Keygen { id } => {
            let table = key_ring::generate_key_table(id)
                .map_err(|_| Failure::Io(std::io::Error::other("no system randomness")))?;
            print!("{table}");
        }
        Command::Sign {
            message_id,
            tags,
            url,
        } => {
            let signer = config()?.signer()?;
            let message_id = parse_message_id(&message_id)?;
            let tags = parse_tags(&tags)?;
            let link = signer
                .click_url(&url, &message_id, &tags)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            println!("{link}");
        }
        Command::Pixel { message_id } => {
            let signer = config()?.signer()?;
            println!("{}", signer.open_url(&parse_message_id(&message_id)?));
        }
        Command::Rewrite {
            message_id,
            report,
            pixel_at_top,
            browser_urls,
        } => {
            let message_id = parse_message_id(&message_id)?;
            let mut options = RewriteOptions::from_config(&config()?, message_id)?;
            if pixel_at_top {
                options.pixel = PixelPlacement::BodyStart;
            }
            if browser_urls {
                options.url_syntax = UrlSyntax::Browser;
            }
            rewrite_stdio(&options, report.as_deref())?;
        }
        Command::Decode { request_target } => {
            let ring = config()?.key_ring()?;
            let decoded = decode(&request_target, &ring);
            println!("{}", decoded_json(&decoded));
            if !matches!(decoded, Decoded::Verified(_)) {
                return Ok(ExitCode::from(EXIT_NOT_VERIFIED));
            }
        }
        Command::Events { command } => {
            let config = config()?;
            server::logging::init(&config.log);
            let runtime = tokio::runtime::Runtime::new().map_err(Failure::Io)?;
            return runtime.block_on(events(command, config));
        }
        Command::Serve => {
            let config = config()?;
            let ring = config.key_ring()?;
            let certificates = match config.server.https {
                None => None,
                Some(_) => Some(Arc::new(
                    CertificateStore::load(&config.tls.certificates).map_err(|e| {
                        Failure::Config(ConfigError::Invalid {
                            path: config.path.clone(),
                            key: "tls.certificate",
                            message: e.to_string(),
                        })
                    })?,
                )),
            };
            server::logging::init(&config.log);
            let runtime = tokio::runtime::Runtime::new().map_err(Failure::Io)?;
            runtime.block_on(serve(config, ring, certificates))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the config, and creates its key ring if it is missing and the config allows it.
fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    let config = Config::load(path)?;
    if config.ensure_key_ring()? {
        eprintln!(
            "mailtrack: created {} with one new key (keys.generate_if_missing = true); \
             keep it: links signed with it need it to verify",
            config.keys_file.display()
        );
    }
    Ok(config)
}

/// Binds, serves until SIGTERM or SIGINT, drains, and waits for the event writer to write
/// the last event.
async fn serve(
    config: Config,
    ring: KeyRing,
    certificates: Option<Arc<CertificateStore>>,
) -> Result<(), Failure> {
    let shutdown = signals::shutdown_signal();
    tokio::spawn(signals::reload_on_hangup(certificates.clone()));
    // The pipeline opens its sink and spool (and replays what a previous run left) before any
    // port is bound, so an unusable events file or spool folder stops us first.
    let (queue, pipeline) = EventPipeline::start(&config.events).map_err(|e| {
        Failure::Config(ConfigError::Invalid {
            path: config.path.clone(),
            key: "events",
            message: e.to_string(),
        })
    })?;
    let listeners = match server::bind(&config.server, certificates).await {
        Ok(listeners) => listeners,
        Err(e) => {
            pipeline.shutdown().await;
            return Err(Failure::Serve(e));
        }
    };
    let state = State::with_pipeline(&config, ring, queue, pipeline.stats_reader());
    server::run(listeners, state, shutdown).await;
    let last = pipeline.shutdown().await;
    tracing::info!(
        delivered = last.delivered,
        spooled = last.spooled,
        replayed = last.replayed,
        dropped = last.dropped,
        left_in_spool_bytes = last.spool_bytes,
        "events pipeline drained"
    );
    Ok(())
}

/// Rewrites standard input to standard output, then writes the report.
///
/// The message is read whole: mail is small, and `rewrite_bytes` then passes any bytes that
/// are not UTF-8 through untouched when the message has no `{{ses:openTracker}}`.
fn rewrite_stdio(options: &RewriteOptions, report_path: Option<&Path>) -> Result<(), Failure> {
    let mut html = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut html)
        .map_err(Failure::Io)?;
    let rewritten =
        rewrite_bytes(&html, options).map_err(|e| Failure::Io(std::io::Error::other(e)))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&rewritten.html)
        .and_then(|()| stdout.flush())
        .map_err(Failure::Io)?;
    let report = rewritten.report;
    eprintln!(
        "mailtrack: tracked {} links; left {} as they were",
        report.tracked.len(),
        report.skipped.len()
    );
    if let Some(path) = report_path {
        // The report holds only strings, numbers, lists and maps with string keys.
        let json = serde_json::to_string_pretty(&report).expect("the report serialises");
        std::fs::write(path, json + "\n").map_err(|e| {
            Failure::Io(std::io::Error::new(
                e.kind(),
                format!("--report {}: {e}", path.display()),
            ))
        })?;
    }
    Ok(())
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

/// The one-line JSON that `decode` prints.
fn decoded_json(decoded: &Decoded) -> serde_json::Value {
    match decoded {
        Decoded::Verified(link) => json!({
            "status": "verified",
            "kind": link.kind.as_str(),
            "target": (link.kind == mailtrack::link::LinkKind::Click).then_some(&link.target),
            "message_id": link.message_id.as_str(),
            "tags": link.tags.to_map(),
            "key_id": link.key_id,
            "repair": link.repair_label(),
        }),
        Decoded::Unverified(link) => json!({
            "status": "unverified",
            "kind": link.kind.as_str(),
            "target": link.target,
            "message_id": link.message_id.as_ref().map(MessageId::as_str),
            "tags": null,
            "key_id": link.key_id,
            "repair": null,
            "reason": link.reason.as_str(),
        }),
        Decoded::Invalid(reason) => json!({
            "status": "invalid",
            "kind": null,
            "target": null,
            "message_id": null,
            "tags": null,
            "key_id": null,
            "repair": null,
            "reason": reason.as_str(),
        }),
    }
}

/// `mailtrack events …`: calls the library's consumer or replay.
async fn events(command: EventsCommand, config: Config) -> Result<ExitCode, Failure> {
    use mailtrack::events::{tail, EventPipeline};
    let io = |e: &dyn std::fmt::Display| Failure::Io(std::io::Error::other(e.to_string()));
    match command {
        EventsCommand::Tail {
            group,
            consumer,
            max,
        } => {
            let options = tail::TailOptions {
                group,
                consumer,
                max_events: max,
                ..tail::TailOptions::default()
            };
            let stdout = tokio::io::stdout();
            tail::tail(&config.events, &options, stdout)
                .await
                .map_err(|e| io(&e))?;
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Replay => {
            let stats = EventPipeline::replay_spool(&config.events)
                .await
                .map_err(|e| io(&e))?;
            eprintln!(
                "mailtrack: replayed {} events; {} bytes left in the spool",
                stats.replayed, stats.spool_bytes
            );
            Ok(if stats.spool_bytes == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
