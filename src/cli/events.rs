//! `mailtrack events tail` and `mailtrack events replay`.

use std::process::ExitCode;

use clap::Subcommand;

use mailtrack::Config;

use super::Failure;

#[derive(Subcommand)]
pub(super) enum EventsCommand {
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

/// Runs an `events` command on a runtime of its own.
pub(super) fn run(command: EventsCommand, config: Config) -> Result<ExitCode, Failure> {
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::Io)?;
    runtime.block_on(events(command, config))
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
