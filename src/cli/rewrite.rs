//! `mailtrack rewrite`: an HTML message (or, with `--mime`, a whole MIME message) from
//! standard input, rewritten to standard output, and its report.

use std::io::{Read as _, Write as _};
use std::path::Path;

use mailtrack::link::SendTime;
use mailtrack::rewrite::mime::{rewrite_mime, PartOutcome};
use mailtrack::rewrite::{rewrite_bytes, PixelPlacement, RewriteOptions, UrlSyntax};
use mailtrack::Config;

use super::{Failure, StampArgs};

/// The command's switches.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flags {
    /// The pixel at the top of the body.
    pub(super) pixel_at_top: bool,
    /// Track links that are not RFC 3986-valid but that a browser follows.
    pub(super) browser_urls: bool,
    /// The input is a whole MIME message.
    pub(super) mime: bool,
    /// Add the one-click unsubscribe link: the placeholders, and with `mime` the headers.
    pub(super) unsubscribe: bool,
}

/// Rewrites standard input for the message `stamp` names, writing the report to `report` if given.
pub(super) fn run(
    config: &Config,
    stamp: &StampArgs,
    report: Option<&Path>,
    flags: Flags,
) -> Result<(), Failure> {
    let stamp = stamp.stamp()?;
    let mut options = RewriteOptions::from_config(config, stamp.id().clone())?;
    options.send_time = stamp.send_time().unwrap_or_else(SendTime::now);
    options.message_tags = stamp.tags().clone();
    if flags.pixel_at_top {
        options.pixel = PixelPlacement::BodyStart;
    }
    if flags.browser_urls {
        options.url_syntax = UrlSyntax::Browser;
    }
    options.unsubscribe = flags.unsubscribe;
    rewrite_stdio(&options, report, flags.mime)
}

/// Rewrites standard input to standard output, then writes the report.
///
/// The message is read whole: mail is small, and `rewrite_bytes` then passes any bytes that
/// are not UTF-8 through untouched when the message has no `{{ses:openTracker}}`.
fn rewrite_stdio(
    options: &RewriteOptions,
    report_path: Option<&Path>,
    mime: bool,
) -> Result<(), Failure> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut input)
        .map_err(Failure::Io)?;
    let failed = |e: &dyn std::fmt::Display| Failure::Io(std::io::Error::other(e.to_string()));
    let (output, report) = match mime {
        false => {
            let rewritten = rewrite_bytes(&input, options).map_err(|e| failed(&e))?;
            summarise(
                rewritten.report.tracked.len(),
                rewritten.report.skipped.len(),
            );
            (rewritten.html, report_json(&rewritten.report))
        }
        true => {
            let rewritten = rewrite_mime(&input, options).map_err(|e| failed(&e))?;
            for part in &rewritten.report.html_parts {
                if let PartOutcome::Untouched { reason } = &part.outcome {
                    eprintln!(
                        "mailtrack: {} passed through untouched: {reason}",
                        part.part
                    );
                }
            }
            summarise(rewritten.report.tracked(), rewritten.report.skipped());
            (rewritten.message, report_json(&rewritten.report))
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&output)
        .and_then(|()| stdout.flush())
        .map_err(Failure::Io)?;
    if let Some(path) = report_path {
        std::fs::write(path, report + "\n").map_err(|e| {
            Failure::Io(std::io::Error::new(
                e.kind(),
                format!("--report {}: {e}", path.display()),
            ))
        })?;
    }
    Ok(())
}

/// The line on standard error that says what was done.
fn summarise(tracked: usize, skipped: usize) {
    eprintln!("mailtrack: tracked {tracked} links; left {skipped} as they were");
}

/// A report as `--report` writes it.
fn report_json(report: &impl serde::Serialize) -> String {
    // The reports hold only strings, numbers, lists and maps with string keys.
    serde_json::to_string_pretty(report).expect("the report serialises")
}
