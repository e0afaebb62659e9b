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
