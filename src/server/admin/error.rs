//! What the admin listener answers when it does not do what was asked: a status and a JSON
//! body, `{"error": "..."}`, whose message says what was wrong and, where it can, what to do.
//! Scripts read the status; people read the message.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::server::routes::Answer;

/// Why an admin request was not served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// A token is configured, and the request carried none (no `Authorization: Bearer`).
    #[error("this listener needs `Authorization: Bearer <token>` (the token in admin.token_file)")]
    MissingToken,
    /// A token is configured, and the request carried another, or a malformed header.
    #[error("the bearer token is not the one in admin.token_file")]
    WrongToken,
    /// No route has this path.
    #[error("no admin route {path}")]
    NotFound {
        /// The request's path.
        path: String,
    },
    /// The route exists, but not for this method.
    #[error("{path} takes {allow}, not {method}")]
    MethodNotAllowed {
        /// The request's path.
        path: String,
        /// The request's method.
        method: String,
        /// The methods the route takes, as `Allow` lists them.
        allow: String,
    },
    /// The body is longer than `admin.max_body_bytes`.
    #[error("the request body is larger than admin.max_body_bytes ({limit} bytes)")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body did not arrive within the body deadline.
    #[error("the request body did not arrive within {seconds} s")]
    BodyTimeout {
        /// The deadline.
        seconds: u64,
    },
    /// The connection failed while the body was read.
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    /// The request is well-formed HTTP but not what the route takes: the message says what
    /// was wrong with it (a route's own validation).
    #[error("{0}")]
    BadRequest(String),
    /// The body's `Content-Type` is not one the route takes; the message names those it
    /// does.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request is well-formed, but what it holds cannot be done: a MIME message that is
    /// malformed or DKIM-signed, HTML the rewriter cannot rewrite safely. The message says
    /// why, and `part` names the MIME part when there is one.
    #[error("{message}")]
    Unprocessable {
        /// What was wrong, and where.
        message: String,
        /// The MIME part (IMAP number, `""` for the message itself), when it is about one.
        part: Option<String>,
    },
    /// A bug: the handler failed (it panicked). Not caused by the request.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AdminError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::MissingToken | AdminError::WrongToken => StatusCode::UNAUTHORIZED,
            AdminError::NotFound { .. } => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            AdminError::BodyRead(_) | AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AdminError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The answer: the status, `{"error": "<message>"}` (with `"part"` when a MIME part is
    /// named), and the headers the status calls for (`WWW-Authenticate` on 401, RFC 6750;
    /// `Allow` on 405; `Connection: close` when the body was not read).
    pub fn answer(&self) -> Answer {
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let AdminError::Unprocessable {
            part: Some(part), ..
        } = self
        {
            body["part"] = serde_json::Value::from(part.as_str());
        }
        let mut answer = json(self.status(), &body);
        let headers = answer.headers_mut();
        match self {
            AdminError::MissingToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mailtrack\""),
                );
            }
            AdminError::WrongToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mailtrack\", error=\"invalid_token\""),
                );
            }
            // The rest of a body not read is not worth reading: close the connection rather
            // than take it in to reach the next request.
            AdminError::BodyTooLarge { .. }
            | AdminError::BodyTimeout { .. }
            | AdminError::BodyRead(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            AdminError::MethodNotAllowed { allow, .. } => {
                // Method names joined by ", " are always a valid header value; should that
                // ever not hold, the JSON body still names them.
                if let Ok(allow) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            _ => {}
        }
        answer
    }
}

/// A JSON answer; operator answers are never cached.
///
/// `value` is serialised straight into the body. A route answers with a struct of borrowed
/// fields, not a `serde_json::Value`: building a `Value` would copy a rewritten document and
/// every entry of its report once more, and `Value`'s `to_string` writes through the
/// formatting machinery.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Answer {
    // Every answer is made of strings, numbers, lists and maps with string keys, which
    // always serialise.
    let body = serde_json::to_vec(value).expect("an answer serialises");
    json_body(status, body)
}

/// A rewrite's 200 answer, `{"<field>": "<document>", "report": <report>}`.
///
/// It is written by `sonic-rs`, whose string escaping is SIMD, rather than by serde_json,
/// which escapes byte by byte: HTML has a `"` or a line break every 25 bytes or so, and a
/// report's hundreds of URLs are as long as a third of the document; escaping the two took
/// serde_json more of the API's time than all of its HTTP (benches/README.md, "api").
/// Both write the same JSON (the tests below).
pub(crate) fn document_json(field: &str, document: &str, report: &impl Serialize) -> Answer {
    json_body(StatusCode::OK, document_body(field, document, report))
}

/// The body of [`document_json`]'s answer.
fn document_body(field: &str, document: &str, report: &impl Serialize) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(field.as_bytes());
    body.extend_from_slice(b"\":");
    push_json_string(&mut body, document);
    body.extend_from_slice(b",\"report\":");
    // A report is strings, numbers, lists and maps with string keys, which always serialise.
    sonic_rs::to_writer(&mut body, report).expect("a report serialises");
    body.push(b'}');
    body
}

/// The most of a document escaped at once: `sonic-rs` reserves six bytes for each byte of a
/// string it escapes, and a 64 MiB message must not ask for 384 MiB.
const ESCAPE_CHUNK: usize = 1024 * 1024;

/// Appends `text` to `body` as one JSON string.
///
/// Each chunk is written as a quoted string. A document longer than [`ESCAPE_CHUNK`] is
/// escaped a chunk at a time, cut on character boundaries, and each chunk's quotes where it
/// meets the next are dropped.
fn push_json_string(body: &mut Vec<u8>, text: &str) {
    let mut rest = text;
    let mut first = true;
    loop {
        let mut end = rest.len().min(ESCAPE_CHUNK);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        if !first {
            body.pop(); // the closing quote of the chunk before
        }
        let start = body.len();
        // Writing a string into a Vec does not fail.
        sonic_rs::to_writer(&mut *body, chunk).expect("a string serialises");
        if !first {
            body.remove(start); // this chunk's opening quote
        }
        first = false;
        rest = tail;
        if rest.is_empty() {
            return;
        }
    }
}

/// An answer of `body`, already JSON.
fn json_body(status: StatusCode, body: Vec<u8>) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::MessageId;
    use crate::rewrite::{rewrite_str, RewriteOptions};
    use crate::testing::fixed_signer;

    fn escaped(text: &str) -> String {
        let mut body = Vec::new();
        push_json_string(&mut body, text);
        String::from_utf8(body).expect("escaped JSON is UTF-8")
    }

    #[test]
    fn a_document_escapes_as_serde_json_escapes_it() {
        for text in [
            "",
            "plain",
            "<a href=\"x\">\n\t\u{1}</a>",
            "中文 \\ \"quoted\"",
        ] {
            assert_eq!(escaped(text), serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn an_answer_is_what_serde_json_writes() {
        // In the report, a URL with escapes and tags, and one skipped for its "é"; in the
        // document, quotes, a control character and Chinese.
        let html = "<p>中文 \u{1}\t</p><a href=\"https://example.com/a?q=%22a%5C\" \
                    ses:tags=\"k:v\">x</a><a href=\"https://example.com/é\">y</a>";
        let options = RewriteOptions::new(fixed_signer(), MessageId::new("m-1").unwrap());
        let rewritten = rewrite_str(html, &options).unwrap();
        assert_eq!(rewritten.report.tracked.len(), 1);
        assert_eq!(rewritten.report.skipped.len(), 1);
        let body = document_body("html", &rewritten.html, &rewritten.report);
        let expected = format!(
            "{{\"html\":{},\"report\":{}}}",
            serde_json::to_string(&rewritten.html).unwrap(),
            serde_json::to_string(&rewritten.report).unwrap()
        );
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }

    #[test]
    fn a_document_longer_than_a_chunk_is_one_string() {
        // "é" is two bytes and "中" three, so chunk ends fall inside characters; quotes and
        // line breaks fall on both sides of each cut.
        let text = "<p class=\"é\">中\n".repeat(ESCAPE_CHUNK / 7);
        assert!(text.len() > 2 * ESCAPE_CHUNK);
        let body = escaped(&text);
        assert_eq!(body, serde_json::to_string(&text).unwrap());
        assert_eq!(serde_json::from_str::<String>(&body).unwrap(), text);
    }
}
