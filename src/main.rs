//! The `mailtrack` binary: parses the command line, loads the config, and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

use mailtrack::link::{decode, key_ring, Decoded, LinkTags, MessageId};
use mailtrack::{Config, ConfigError};

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
    /// Decode a request-target (path and query, as received) and print what it is as JSON.
    /// Exits 0 when it verifies, 1 otherwise.
    Decode {
        /// The request-target, e.g. /CL0/https:%2F%2Fexample.com%2F/1/msg/MAC=1
        request_target: String,
    },
}

/// Why a command failed, which decides the exit code.
enum Failure {
    Config(ConfigError),
    Usage(String),
    Io(std::io::Error),
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
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let config = || Config::load(cli.config.as_deref());
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
        Command::Decode { request_target } => {
            let ring = config()?.key_ring()?;
            let decoded = decode(&request_target, &ring);
            println!("{}", decoded_json(&decoded));
            if !matches!(decoded, Decoded::Verified(_)) {
                return Ok(ExitCode::from(EXIT_NOT_VERIFIED));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
