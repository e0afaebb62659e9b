//! `POST /v1/rewrite/html`: one HTML document, rewritten as `mailtrack rewrite` does.
//!
//! Takes `{"message_id", "html", "send_time"?, "message_tags"?, "pixel"?, "url_syntax"?,
//! "unsubscribe"?}`, or the document itself as a `text/html` body (UTF-8) with the same
//! fields in the query string, which spares the sender escaping it and the server
//! unescaping it; answers `{"html": …, "report": …}`, the report being the CLI's `--report`.

use std::sync::Arc;

use serde::Deserialize;

use super::request::{parse_json, sent, Fields, Pixel, Sent, Syntax};
use crate::rewrite::rewrite_str;
use crate::server::admin::error::document_json;
use crate::server::admin::router::{AdminRequest, RouteFuture};
use crate::server::admin::{AdminContext, AdminError};
use crate::server::routes::Answer;
use crate::server::State;

/// The request, in JSON.
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
    super::rewrite(request, admin, answer)
}

fn answer(request: &AdminRequest, state: &State) -> Result<Answer, AdminError> {
    let json;
    let (fields, html) = match sent(&request.head, "text/html")? {
        Sent::Json => {
            json = parse_json::<HtmlRequest>(&request.body)?;
            let fields = Fields {
                message_id: json.message_id,
                send_time: json.send_time,
                message_tags: json.message_tags,
                pixel: json.pixel,
                url_syntax: json.url_syntax,
                unsubscribe: json.unsubscribe,
            };
            (fields, json.html.as_str())
        }
        Sent::Document => {
            let html = simdutf8::compat::from_utf8(&request.body).map_err(|e| {
                AdminError::BadRequest(format!(
                    "the text/html body is not UTF-8 (from byte {}); a message in another \
                     charset goes whole to /v1/rewrite/mime",
                    e.valid_up_to()
                ))
            })?;
            (Fields::from_query(request.head.uri.query())?, html)
        }
    };
    let options = fields.options(state)?;
    let rewritten = rewrite_str(html, &options).map_err(|e| AdminError::Unprocessable {
        message: format!("html: {e}"),
        part: None,
    })?;
    Ok(document_json("html", &rewritten.html, &rewritten.report))
}
