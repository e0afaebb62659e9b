//! `POST /v1/links/click` and `POST /v1/links/open`: one signed link, as `mailtrack sign`
//! and `mailtrack pixel` print it.
//!
//! - click: `{"message_id", "url", "tags"?}` (tags as `ses:tags` writes them, `k:v;k2:v2`)
//!   answers `{"tracked_url", "target", "tags"}`: the link, the destination it redirects to,
//!   and the tags it carries.
//! - open: `{"message_id"}` answers `{"url", "html"}`: the pixel's URL and its markup.

use std::sync::Arc;

use hyper::StatusCode;
use serde::Deserialize;

use super::request::{parse_json, stamp};
use crate::link::target;
use crate::link::LinkTags;
use crate::rewrite::pixel_html;
use crate::server::admin::error::json;
use crate::server::admin::router::{AdminRequest, RouteFuture};
use crate::server::admin::{AdminContext, AdminError};
use crate::server::routes::Answer;
use crate::server::State;

/// A click link's request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClickRequest {
    /// The message every link records (1–128 of `[A-Za-z0-9._-]`).
    message_id: String,
    /// When the message is sent: RFC 3339 or Unix seconds; now when absent.
    #[serde(default)]
    send_time: Option<String>,
    /// The message's tags (SES `mail.tags`), `k:v;k2:v2`.
    #[serde(default)]
    message_tags: Option<String>,
    /// The destination.
    url: String,
    /// The link's tags, `k:v;k2:v2`.
    #[serde(default)]
    tags: Option<String>,
}

/// An open pixel's request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    /// The message every link records (1–128 of `[A-Za-z0-9._-]`).
    message_id: String,
    /// When the message is sent: RFC 3339 or Unix seconds; now when absent.
    #[serde(default)]
    send_time: Option<String>,
    /// The message's tags (SES `mail.tags`), `k:v;k2:v2`.
    #[serde(default)]
    message_tags: Option<String>,
}

/// `POST /v1/links/click`.
pub(crate) fn click(request: AdminRequest, admin: Arc<AdminContext<State>>) -> RouteFuture {
    let answer = click_answer(&request.body, admin.site());
    Box::pin(std::future::ready(answer))
}

/// `POST /v1/links/open`.
pub(crate) fn open(request: AdminRequest, admin: Arc<AdminContext<State>>) -> RouteFuture {
    let answer = open_answer(&request.body, admin.site());
    Box::pin(std::future::ready(answer))
}

fn click_answer(body: &[u8], state: &State) -> Result<Answer, AdminError> {
    let request: ClickRequest = parse_json(body)?;
    let stamp = stamp(
        &request.message_id,
        request.send_time.as_deref(),
        request.message_tags.as_deref(),
    )?;
    let tags = match request.tags.as_deref() {
        Some(list) => LinkTags::parse(list)
            .map_err(|e| AdminError::BadRequest(format!("tags {list:?}: {e}")))?,
        None => LinkTags::new(),
    };
    let normalized = target::normalize(&request.url)
        .map_err(|reason| AdminError::BadRequest(format!("url {:?}: {reason}", request.url)))?;
    let tracked =
        state
            .shared()
            .signer
            .click_url_for_normalized(&normalized, &stamp.message_stamp(), &tags);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "tracked_url": tracked,
            "target": normalized,
            "tags": tags.to_map(),
        }),
    ))
}

fn open_answer(body: &[u8], state: &State) -> Result<Answer, AdminError> {
    let request: OpenRequest = parse_json(body)?;
    let stamp = stamp(
        &request.message_id,
        request.send_time.as_deref(),
        request.message_tags.as_deref(),
    )?;
    let url = state.shared().signer.open_url(&stamp.message_stamp());
    let html = pixel_html(&url);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "url": url, "html": html }),
    ))
}
