//! The one-click unsubscribe link, `/US0/…` (RFC 8058).
//!
//! - `POST`, verified, with the one-click form (`List-Unsubscribe=One-Click`, see `form`):
//!   200 and one `Subscription` event. A mail client's `POST` records the source
//!   `UnsubscribeHeader`; the page's button, which adds a field of its own,
//!   `UnsubscribeLink`.
//! - `GET`/`HEAD`, verified: 200 and the page with one button that posts the form back to
//!   the same link. Link scanners fetch every link they find, so opening the page records
//!   nothing and unsubscribes no one.
//! - A link that does not verify (tampered, malformed, under a revoked key), a `POST` whose
//!   body is not the form, or one whose body is too long or too slow: 400 and no event. Never
//!   a redirect: there is nowhere to send anyone.
//!
//! A `POST` is the only request mailtrack reads a body for. Its link is decoded and verified
//! before a byte of the body is read, and the body is read to at most [`MAX_FORM_BYTES`]
//! within [`FORM_READ_TIMEOUT`], so a POST costs a stranger no more than a GET does.
//! Unsubscribes count against the event budget like opens and clicks (a person's few never
//! come near it).

mod form;

use std::error::Error;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};

use crate::events::SubscriptionSource;
use crate::link::{LinkKind, VerifiedLink};

use self::form::FormEncoding;
use super::client_ip::LoggedIp;
use super::interstitial::{self, UNSUBSCRIBE_PAGE_CSP};
use super::routes::{self, Answer, PendingCommit, Reply};
use super::state::{Shared, State};

/// The route label of every unsubscribe answer, in metrics and logs.
pub const ROUTE: &str = "unsubscribe";

/// The longest body read from a `POST`: 1 KiB. The one-click form is 26 bytes, and its
/// `multipart/form-data` form, boundaries and headers included, under 200; anything near this
/// long is not the form.
pub const MAX_FORM_BYTES: usize = 1024;

/// How long a `POST`'s body may take to arrive once its headers are in: 10 s. A mail
/// provider's server sends 26 bytes at once; a client on a slow phone link still has time,
/// while a body that trickles in holds its connection no longer than that.
pub const FORM_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `request` is a `POST` to an unsubscribe link, which [`respond_to_post`] answers
/// (it reads the body; every other request is answered by [`routes::respond`] at once).
pub fn is_post<B>(request: &Request<B>) -> bool {
    request.method() == Method::POST
        && matches!(
            LinkKind::split_route(request.uri().path()),
            Some((LinkKind::Unsubscribe, _))
        )
}

/// The answer to `GET`/`HEAD` of an unsubscribe link: the page, if the link verifies, else
/// the 400 page. Neither records anything.
pub(super) fn page(target: &str, shared: &Shared) -> Answer {
    if verified(target, shared).is_none() {
        return bad_request();
    }
    let mut answer = routes::page(StatusCode::OK, interstitial::unsubscribe_page());
    answer.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(UNSUBSCRIBE_PAGE_CSP),
    );
    answer
}

/// Answers a `POST` to an unsubscribe link from `peer`, and counts the answer: reads the
/// body (bounded in size and time) only once the link has verified, and records the
/// unsubscribe only when the body is the one-click form.
pub async fn respond_to_post<B>(request: Request<B>, peer: IpAddr, state: &State) -> Reply
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let shared = state.shared();
    let (parts, body) = request.into_parts();
    let head = Request::from_parts(parts, ());
    let (answer, commit) = post(&head, body, peer, shared).await;
    shared.metrics.request(ROUTE, answer.status().as_u16());
    tracing::debug!(
        route = ROUTE,
        status = answer.status().as_u16(),
        client = %LoggedIp::new(peer, shared.full_client_ip),
        "answered"
    );
    Reply { answer, commit }
}

async fn post<B>(
    head: &Request<()>,
    body: B,
    peer: IpAddr,
    shared: &Shared,
) -> (Answer, Option<PendingCommit>)
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    // RFC 9112, section 3.2, as for every other request (see `routes`).
    if head.version() == Version::HTTP_11 && !routes::has_one_host(head.headers()) {
        return (bad_request(), None);
    }
    let target = head.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Some(link) = verified(target, shared) else {
        return (bad_request(), None);
    };
    let Some(encoding) = FormEncoding::of(head.headers().get(header::CONTENT_TYPE)) else {
        return (bad_request(), None);
    };
    let body = match tokio::time::timeout(
        FORM_READ_TIMEOUT,
        Limited::new(body, MAX_FORM_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        // Too long, or the client went away mid-body.
        Ok(Err(_)) => return (bad_request(), None),
        Err(_elapsed) => return (bad_request(), None),
    };
    let Some(source) = encoding.source(&body) else {
        return (bad_request(), None);
    };
    let commit = routes::record_with(head, link, source, peer, shared);
    let answer = match source {
        SubscriptionSource::UnsubscribeHeader => routes::text(StatusCode::OK, "unsubscribed\n"),
        SubscriptionSource::UnsubscribeLink => {
            routes::page(StatusCode::OK, interstitial::unsubscribed_page())
        }
    };
    (answer, commit)
}

/// The verified unsubscribe link `target` is, or `None` (counted by why).
fn verified(target: &str, shared: &Shared) -> Option<VerifiedLink> {
    // Only `/US0/` comes here, and the decoder keeps the kind of the route.
    routes::verified(target, shared).filter(|link| link.kind == LinkKind::Unsubscribe)
}

fn bad_request() -> Answer {
    routes::page(StatusCode::BAD_REQUEST, interstitial::bad_request_page())
}
