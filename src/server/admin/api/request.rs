//! What every rewrite API request carries, as the library takes it: the message id, the
//! send time and message tags, and the sender's choices (`pixel`: `body_end` or
//! `body_start`; `url_syntax`: `rfc3986` or `browser`); read from JSON, with an error that
//! names the field when a value is wrong.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::link::{LinkSigner, MessageId};
use crate::rewrite::{PixelPlacement, RewriteOptions, UrlSyntax};
use crate::server::admin::AdminError;

/// Where the pixel goes, in JSON.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Pixel {
    /// [`PixelPlacement::BodyEnd`].
    BodyEnd,
    /// [`PixelPlacement::BodyStart`].
    BodyStart,
}

/// Which hrefs are tracked, in JSON.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Syntax {
    /// [`UrlSyntax::Rfc3986`].
    Rfc3986,
    /// [`UrlSyntax::Browser`].
    Browser,
}

/// Reads a request's JSON body as `T`; the error says where it went wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| {
        AdminError::BadRequest(format!(
            "the request body is not the JSON this route takes: {e}"
        ))
    })
}

/// The message id, checked; the fields that links cannot carry yet (`send_time`,
/// `message_tags`: version 2 links), refused rather than silently dropped.
pub(crate) fn message_id(
    id: &str,
    send_time: Option<&str>,
    message_tags: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<MessageId, AdminError> {
    if send_time.is_some() {
        return Err(not_yet("send_time"));
    }
    if message_tags.is_some_and(|tags| !tags.is_empty()) {
        return Err(not_yet("message_tags"));
    }
    MessageId::new(id).map_err(|e| AdminError::BadRequest(format!("message_id {id:?}: {e}")))
}

/// The rewriter's options for `message_id`, with serve's signer and `tracking.max_links`,
/// and the sender's choices.
pub(crate) fn options(
    signer: &LinkSigner,
    max_links: usize,
    message_id: MessageId,
    pixel: Option<Pixel>,
    url_syntax: Option<Syntax>,
) -> RewriteOptions {
    let mut options = RewriteOptions::new(signer.clone(), message_id);
    options.max_links = max_links;
    if let Some(Pixel::BodyStart) = pixel {
        options.pixel = PixelPlacement::BodyStart;
    }
    if let Some(Syntax::Browser) = url_syntax {
        options.url_syntax = UrlSyntax::Browser;
    }
    options
}

/// The refusal of a field that version 2 links will carry.
fn not_yet(field: &str) -> AdminError {
    AdminError::BadRequest(format!(
        "{field}: this build writes version 1 links, which do not carry it; leave it out"
    ))
}
