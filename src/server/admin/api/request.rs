//! What every rewrite API request carries, as the library takes it: the message id, the
//! send time and message tags, and the sender's choices (`pixel`: `body_end` or
//! `body_start`; `url_syntax`: `rfc3986` or `browser`; `unsubscribe`); read from JSON, or
//! from the query string of a request whose body is the document itself, with an error that
//! names the field when a value is wrong.

use hyper::header::CONTENT_TYPE;
use hyper::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::link::{LinkSigner, LinkTags, MessageId, MessageStamp, SendTime};
use crate::rewrite::{PixelPlacement, RewriteOptions, UrlSyntax};
use crate::server::admin::AdminError;
use crate::server::State;

/// Where the pixel goes, in JSON.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Pixel {
    /// [`PixelPlacement::BodyEnd`].
    BodyEnd,
    /// [`PixelPlacement::BodyStart`].
    BodyStart,
}

impl Pixel {
    /// Each as the API spells it.
    const NAMES: &'static [(&'static str, Pixel)] = &[
        ("body_end", Pixel::BodyEnd),
        ("body_start", Pixel::BodyStart),
    ];
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

/// How a rewrite request carries its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// In a JSON body, beside the fields.
    Json,
    /// As the body itself, of the route's document type; the fields are in the query string.
    Document,
}

/// How `head` sends its document: as the body itself when its `Content-Type` is
/// `document_type` (`text/html`, `message/rfc822`), in JSON otherwise, as the API has always
/// read a body (`curl -d` sends `application/x-www-form-urlencoded`). A document sent as
/// itself is UTF-8 when it says a charset, and the fields are never in both places.
pub(crate) fn sent(head: &Parts, document_type: &str) -> Result<Sent, AdminError> {
    let value = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let mut parameters = value.split(';').map(str::trim);
    let media_type = parameters.next().unwrap_or("");
    if !media_type.eq_ignore_ascii_case(document_type) {
        if head.uri.query().is_some() {
            return Err(AdminError::BadRequest(format!(
                "a JSON request carries its fields in the body, not in the query string; \
                 send Content-Type: {document_type} to give them in the query"
            )));
        }
        return Ok(Sent::Json);
    }
    for parameter in parameters {
        let Some((name, charset)) = parameter.split_once('=') else {
            continue;
        };
        let charset = charset.trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !charset.eq_ignore_ascii_case("utf-8") {
            return Err(AdminError::UnsupportedMediaType(format!(
                "Content-Type {value:?}: a document sent as itself is UTF-8 (a message in \
                 another charset goes whole to /v1/rewrite/mime)"
            )));
        }
    }
    Ok(Sent::Document)
}

/// The fields beside the document, as a request gives them.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    /// The message every link records (1–128 of `[A-Za-z0-9._-]`).
    pub(crate) message_id: String,
    /// When the message is sent: RFC 3339 or Unix seconds; now when absent.
    pub(crate) send_time: Option<String>,
    /// The message's tags (SES `mail.tags`), `k:v;k2:v2`.
    pub(crate) message_tags: Option<String>,
    /// Where the pixel goes.
    pub(crate) pixel: Option<Pixel>,
    /// Which hrefs are tracked.
    pub(crate) url_syntax: Option<Syntax>,
    /// Whether the message gets a one-click unsubscribe link (`RewriteOptions::unsubscribe`).
    pub(crate) unsubscribe: bool,
}

/// The names [`Fields::from_query`] takes.
const QUERY_FIELDS: &str = "message_id, send_time, message_tags, pixel, url_syntax, unsubscribe";

impl Fields {
    /// The fields of a query string (`message_id=news-1&pixel=body_start`), each at most
    /// once; `message_id` is required.
    pub(crate) fn from_query(query: Option<&str>) -> Result<Fields, AdminError> {
        let bad = |message: String| AdminError::BadRequest(format!("the query string: {message}"));
        let mut fields = Fields::default();
        let mut seen = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if seen.contains(&name) {
                return Err(bad(format!("{name} is given twice")));
            }
            let value = value.into_owned();
            match &*name {
                "message_id" => fields.message_id = value,
                "send_time" => fields.send_time = Some(value),
                "message_tags" => fields.message_tags = Some(value),
                "pixel" => fields.pixel = Some(named(&name, &value, Pixel::NAMES)?),
                "url_syntax" => fields.url_syntax = Some(named(&name, &value, Syntax::NAMES)?),
                "unsubscribe" => {
                    fields.unsubscribe = named(&name, &value, &[("true", true), ("false", false)])?
                }
                _ => {
                    return Err(bad(format!(
                        "no field {name:?}; the fields are {QUERY_FIELDS}"
                    )))
                }
            }
            seen.push(name);
        }
        if !seen.iter().any(|name| name == "message_id") {
            return Err(bad("message_id is required".to_owned()));
        }
        Ok(fields)
    }

    /// The rewriter's options for these fields, with serve's signer and
    /// `tracking.max_links`; an error names the field that is wrong.
    pub(crate) fn options(self, state: &State) -> Result<RewriteOptions, AdminError> {
        let shared = state.shared();
        let stamp = stamp(
            &self.message_id,
            self.send_time.as_deref(),
            self.message_tags.as_deref(),
        )?;
        let mut options = options(
            &shared.signer,
            shared.max_links,
            stamp,
            self.pixel,
            self.url_syntax,
        );
        options.unsubscribe = self.unsubscribe;
        Ok(options)
    }
}

/// The value of `names` that query field `name` names as `value`.
fn named<T: Copy>(name: &str, value: &str, names: &[(&str, T)]) -> Result<T, AdminError> {
    match names.iter().find(|(text, _)| *text == value) {
        Some((_, named)) => Ok(*named),
        None => {
            let expected: Vec<&str> = names.iter().map(|(text, _)| *text).collect();
            Err(AdminError::BadRequest(format!(
                "the query string: {name} {value:?} is not one of {}",
                expected.join(", ")
            )))
        }
    }
}

/// Reads a request's JSON body as `T`; the error says where it went wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| {
        AdminError::BadRequest(format!(
            "the request body is not the JSON this route takes: {e}"
        ))
    })
}

impl Syntax {
    /// Each as the API spells it.
    const NAMES: &'static [(&'static str, Syntax)] =
        &[("rfc3986", Syntax::Rfc3986), ("browser", Syntax::Browser)];
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
fn options(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(content_type: Option<&str>, uri: &str) -> Parts {
        let mut request = hyper::Request::post(uri);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn error(result: Result<impl std::fmt::Debug, AdminError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn a_document_is_sent_as_itself_only_under_its_own_type() {
        let sent_as = |content_type, uri| sent(&head(content_type, uri), "text/html");
        assert_eq!(sent_as(None, "/h").unwrap(), Sent::Json);
        assert_eq!(sent_as(Some("application/json"), "/h").unwrap(), Sent::Json);
        // curl -d sends this, with a JSON body.
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(sent_as(form, "/h").unwrap(), Sent::Json);
        for document in [
            "text/html",
            "Text/HTML",
            "text/html; charset=UTF-8",
            "text/html;charset=\"utf-8\"",
        ] {
            assert_eq!(
                sent_as(Some(document), "/h?message_id=m").unwrap(),
                Sent::Document,
                "{document}"
            );
        }
        let gbk = sent_as(Some("text/html; charset=gbk"), "/h?message_id=m");
        assert!(
            matches!(gbk, Err(AdminError::UnsupportedMediaType(_))),
            "{gbk:?}"
        );
        let both = error(sent_as(Some("application/json"), "/h?message_id=m"));
        assert!(both.contains("not in the query string"), "{both}");
    }

    #[test]
    fn fields_are_read_from_the_query_string() {
        let query = "message_id=news-1&send_time=2026-12-02T09%3A00%3A00Z\
                     &message_tags=campaign%3Aspring%3Blist%3Anews&pixel=body_start\
                     &url_syntax=browser&unsubscribe=true";
        let fields = Fields::from_query(Some(query)).unwrap();
        assert_eq!(fields.message_id, "news-1");
        assert_eq!(fields.send_time.as_deref(), Some("2026-12-02T09:00:00Z"));
        assert_eq!(
            fields.message_tags.as_deref(),
            Some("campaign:spring;list:news")
        );
        assert!(matches!(fields.pixel, Some(Pixel::BodyStart)));
        assert!(matches!(fields.url_syntax, Some(Syntax::Browser)));
        assert!(fields.unsubscribe);
        let fields = Fields::from_query(Some("message_id=m")).unwrap();
        assert!(fields.pixel.is_none() && fields.url_syntax.is_none() && !fields.unsubscribe);
    }

    #[test]
    fn a_wrong_query_string_names_the_field() {
        let cases = [
            (None, "message_id is required"),
            (Some("pixel=body_end"), "message_id is required"),
            (
                Some("message_id=m&message_id=n"),
                "message_id is given twice",
            ),
            (Some("message_id=m&pixle=body_end"), "no field \"pixle\""),
            (
                Some("message_id=m&pixel=top"),
                "pixel \"top\" is not one of body_end, body_start",
            ),
            (
                Some("message_id=m&url_syntax=html5"),
                "url_syntax \"html5\" is not one of rfc3986, browser",
            ),
            (
                Some("message_id=m&unsubscribe=yes"),
                "unsubscribe \"yes\" is not one of true, false",
            ),
        ];
        for (query, expected) in cases {
            let message = error(Fields::from_query(query));
            assert!(message.starts_with("the query string: "), "{message}");
            assert!(message.contains(expected), "{query:?}: {message}");
        }
    }
}
