//! `mailtrack rewrite`: an HTML message from standard input, rewritten to standard output.

use std::io::{Read as _, Write as _};
use std::path::Path;

use mailtrack::link::SendTime;
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
    rewrite_stdio(&options, report)
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
