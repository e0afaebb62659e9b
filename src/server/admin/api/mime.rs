//! `POST /v1/rewrite/mime`: a whole MIME message, rewritten as `mailtrack rewrite --mime`
//! does.
//!
//! Takes the message as `"message"` (a JSON string, for a message that is UTF-8 or ASCII,
//! as 7bit mail on the wire is) or `"message_base64"` (any bytes), with the fields every
//! route takes (and `"unsubscribe": true` for the one-click unsubscribe headers); answers
//! the same field with the rewritten message, and `"report"`. A result
//! that is not UTF-8 comes back as `"message_base64"` whichever was sent.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

use super::request::{options, parse_json, stamp, Pixel, Syntax};
use crate::rewrite::mime::{self, MimeError, MimeReport};
use crate::server::admin::error::document_json;
use crate::server::admin::router::{AdminRequest, RouteFuture};
use crate::server::admin::{AdminContext, AdminError};
use crate::server::routes::Answer;
use crate::server::State;

/// The request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MimeRequest {
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
    /// The message as text.
    #[serde(default, rename = "message")]
    text: Option<String>,
    /// The message as base64.
    #[serde(default)]
    message_base64: Option<String>,
}

/// The route's handler.
pub(crate) fn rewrite_mime(request: AdminRequest, admin: Arc<AdminContext<State>>) -> RouteFuture {
    super::blocking(request, admin, answer)
}

fn answer(body: &[u8], state: &State) -> Result<Answer, AdminError> {
    let request: MimeRequest = parse_json(body)?;
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
    let decoded;
    let (input, as_text) = match (&request.text, &request.message_base64) {
        (Some(text), None) => (text.as_bytes(), true),
        (None, Some(encoded)) => {
            decoded = STANDARD.decode(encoded.trim()).map_err(|e| {
                AdminError::BadRequest(format!("message_base64 is not base64: {e}"))
            })?;
            (decoded.as_slice(), false)
        }
        _ => {
            return Err(AdminError::BadRequest(
                "give the message as exactly one of message (text) or message_base64".to_owned(),
            ))
        }
    };
    let rewritten = mime::rewrite_mime(input, &options).map_err(refusal)?;
    let report = &rewritten.report;
    let answer = match String::from_utf8(rewritten.message) {
        Ok(text) if as_text => document_json("message", &text, report),
        Ok(text) => base64_answer(text.as_bytes(), report),
        Err(bytes) => base64_answer(bytes.as_bytes(), report),
    };
    Ok(answer)
}

/// The answer to a message sent as base64, or whose result is not UTF-8.
fn base64_answer(message: &[u8], report: &MimeReport) -> Answer {
    document_json("message_base64", &STANDARD.encode(message), report)
}

/// A message the rewriter refused, as a 422 that names the part.
fn refusal(error: MimeError) -> AdminError {
    AdminError::Unprocessable {
        part: error.part().map(|part| part.number()),
        message: error.to_string(),
    }
}
