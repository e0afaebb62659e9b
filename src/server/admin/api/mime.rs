//! `POST /v1/rewrite/mime`: a whole MIME message, rewritten as `mailtrack rewrite --mime`
//! does.
//!
//! Takes the message as `"message"` (a JSON string, for a message that is UTF-8 or ASCII,
//! as 7bit mail on the wire is) or `"message_base64"` (any bytes), with the fields every
//! route takes (and `"unsubscribe": true` for the one-click unsubscribe headers); or the
//! message itself, any bytes, as a `message/rfc822` body, with the fields in the query
//! string. Answers the same field with the rewritten message (`"message"` for a message sent
//! as itself), and `"report"`. A result that is not UTF-8 comes back as `"message_base64"`
//! whichever was sent.

use std::borrow::Cow;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

use super::request::{parse_json, sent, Fields, Pixel, Sent, Syntax};
use crate::rewrite::mime::{self, MimeError, MimeReport};
use crate::server::admin::error::document_json;
use crate::server::admin::router::{AdminRequest, RouteFuture};
use crate::server::admin::{AdminContext, AdminError};
use crate::server::routes::Answer;
use crate::server::State;

/// The request, in JSON.
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
    super::rewrite(request, admin, answer)
}

fn answer(request: &AdminRequest, state: &State) -> Result<Answer, AdminError> {
    let (fields, input, as_text) = match sent(&request.head, "message/rfc822")? {
        Sent::Json => {
            let json: MimeRequest = parse_json(&request.body)?;
            let fields = Fields {
                message_id: json.message_id,
                send_time: json.send_time,
                message_tags: json.message_tags,
                pixel: json.pixel,
                url_syntax: json.url_syntax,
                unsubscribe: json.unsubscribe,
            };
            let (input, as_text) = match (json.text, json.message_base64) {
                (Some(text), None) => (text.into_bytes(), true),
                (None, Some(encoded)) => (
                    STANDARD.decode(encoded.trim()).map_err(|e| {
                        AdminError::BadRequest(format!("message_base64 is not base64: {e}"))
                    })?,
                    false,
                ),
                _ => {
                    return Err(AdminError::BadRequest(
                        "give the message as exactly one of message (text) or message_base64"
                            .to_owned(),
                    ))
                }
            };
            (fields, Cow::Owned(input), as_text)
        }
        Sent::Document => (
            Fields::from_query(request.head.uri.query())?,
            Cow::Borrowed(&request.body[..]),
            true,
        ),
    };
    let options = fields.options(state)?;
    let rewritten = mime::rewrite_mime(&input, &options).map_err(refusal)?;
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
