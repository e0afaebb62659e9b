//! What every rewrite API request carries, as the library takes it: the message id, the
//! send time and message tags, and the sender's choices (`pixel`: `body_end` or
//! `body_start`; `url_syntax`: `rfc3986` or `browser`); read from JSON, with an error that
//! names the field when a value is wrong.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::link::{LinkSigner, LinkTags, MessageId, MessageStamp, SendTime};
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

/// What every link of the message carries: its id, its send time and its tags.
#[derive(Debug)]
pub(crate) struct Stamp {
    /// The message id.
    message_id: MessageId,
    /// When it is sent; now unless the request says.
    send_time: SendTime,
    /// The message's tags (SES `mail.tags`).
    message_tags: LinkTags,
}

/// The request's `message_id`, `send_time` (RFC 3339 or Unix seconds; now when absent) and
/// `message_tags` (`k:v;k2:v2`, as `ses:tags` writes link tags), each checked; an error
/// names the field.
pub(crate) fn stamp(
    id: &str,
    send_time: Option<&str>,
    message_tags: Option<&str>,
) -> Result<Stamp, AdminError> {
    let message_id = MessageId::new(id)
        .map_err(|e| AdminError::BadRequest(format!("message_id {id:?}: {e}")))?;
    let send_time = match send_time {
        Some(text) => SendTime::parse(text)
            .map_err(|e| AdminError::BadRequest(format!("send_time {text:?}: {e}")))?,
        None => SendTime::now(),
    };
    let message_tags = match message_tags {
        Some(list) => LinkTags::parse(list)
            .map_err(|e| AdminError::BadRequest(format!("message_tags {list:?}: {e}")))?,
        None => LinkTags::new(),
    };
    Ok(Stamp {
        message_id,
        send_time,
        message_tags,
    })
}

impl Stamp {
    /// What the signer takes.
    pub(crate) fn message_stamp(self) -> MessageStamp {
        MessageStamp::new(self.message_id, self.send_time, self.message_tags)
    }
}

/// The rewriter's options for the message `stamp` describes, with serve's signer and
/// `tracking.max_links`, and the sender's choices.
pub(crate) fn options(
    signer: &LinkSigner,
    max_links: usize,
    stamp: Stamp,
    pixel: Option<Pixel>,
    url_syntax: Option<Syntax>,
) -> RewriteOptions {
    let mut options = RewriteOptions::new(signer.clone(), stamp.message_id);
    options.send_time = stamp.send_time;
    options.message_tags = stamp.message_tags;
    options.max_links = max_links;
    if let Some(Pixel::BodyStart) = pixel {
        options.pixel = PixelPlacement::BodyStart;
    }
    if let Some(Syntax::Browser) = url_syntax {
        options.url_syntax = UrlSyntax::Browser;
    }
    options
}
