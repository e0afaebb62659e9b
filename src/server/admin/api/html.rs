//! `POST /v1/rewrite/html`: one HTML document, rewritten as `mailtrack rewrite` does.
//!
//! Takes `{"message_id", "html", "send_time"?, "message_tags"?, "pixel"?, "url_syntax"?,
//! "unsubscribe"?}`;
//! answers `{"html": …, "report": …}`, the report being the CLI's `--report`.

use std::sync::Arc;

use serde::Deserialize;

use super::request::{options, parse_json, stamp, Pixel, Syntax};
use crate::rewrite::rewrite_str;
use crate::server::admin::error::document_json;
use crate::server::admin::router::{AdminRequest, RouteFuture};
use crate::server::admin::{AdminContext, AdminError};
use crate::server::routes::Answer;
use crate::server::State;

/// The request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HtmlRequest {
    /// The message every link records (1–128 of `[A-Za-z0-9._-]`).
    message_id: String,
    /// When the message is sent: RFC 3339 or Unix seconds; now when absent.
    #[serde(default)]
    send_time: Option<String>,
    /// The message's tags (SES `mail.tags`), `k:v;k2:v2`.
    #[serde(default)]
    message_tags: Option<String>,
    /// Where the pixel goes.
    #[serde(default)]
    pixel: Option<Pixel>,
    /// Which hrefs are tracked.
    #[serde(default)]
    url_syntax: Option<Syntax>,
    /// Whether the message gets a one-click unsubscribe link (`RewriteOptions::unsubscribe`).
    #[serde(default)]
    unsubscribe: bool,
    /// The HTML document.
    html: String,
}

/// The route's handler.
pub(crate) fn rewrite_html(request: AdminRequest, admin: Arc<AdminContext<State>>) -> RouteFuture {
    super::blocking(request, admin, answer)
}

fn answer(body: &[u8], state: &State) -> Result<Answer, AdminError> {
    let request: HtmlRequest = parse_json(body)?;
    let shared = state.shared();
    let stamp = stamp(
        &request.message_id,
        request.send_time.as_deref(),
        request.message_tags.as_deref(),
    )?;
    let mut options = options(
        &shared.signer,
        shared.max_links,
        stamp,
        request.pixel,
        request.url_syntax,
    );
    options.unsubscribe = request.unsubscribe;
    let rewritten =
        rewrite_str(&request.html, &options).map_err(|e| AdminError::Unprocessable {
            message: format!("html: {e}"),
            part: None,
        })?;
    Ok(document_json("html", &rewritten.html, &rewritten.report))
}
