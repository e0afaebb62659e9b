//! What each request gets.
//!
//! - `GET|HEAD /CL0/…`, `/L0/…`: a verified click is a 302 to its signed target. A readable
//!   but unverified one that may still have been signed by us (its tail intact and naming a
//!   live key, or cut short at a decoded `#`; see
//!   [`may_have_been_signed`](crate::link::UnverifiedReason::may_have_been_signed)) gets the
//!   interstitial (or, with `unverified = "reject"`, the 400 page); anything else the 400
//!   page. Nothing unverified is ever answered with a 3xx.
//! - HTTP/1.1 without exactly one `Host`: the 400 page (RFC 9112, section 3.2).
//! - `GET|HEAD /CI0/…`, `/I0/…`: always the 1×1 GIF; an event only when it verifies.
//! - `/US0/…`, the one-click unsubscribe link: `GET|HEAD` shows the page with the button,
//!   and records nothing; `POST` (which reads a body, so it is answered apart from
//!   [`respond`]) records the unsubscribe. See [`super::unsubscribe`].
//! - `/healthz`, `/readyz`, for a load balancer.
//! - `GET /.well-known/acme-challenge/{token}`: the key authorization of an open HTTP-01
//!   challenge (`[tls.acme]`), else 404. It is looked up before the link routes, in a small
//!   map under a read lock, so it costs the clicks and opens beside it nothing.
//! - Anything else 404 (`/metrics` too: it is on the admin listener, [`super::admin`]); a
//!   method other than GET or HEAD 405 (but POST to `/US0/…`).
//!
//! Links are decoded from the raw request-target exactly as received: hyper keeps the path
//! and query as bytes and decodes no `%`-escapes.
//!
//! Every answer is made at once, with nothing awaited, so that a connection answers from a
//! ready future rather than a boxed state machine per request. The one wait is a
//! `durability = "sync"` answer's, for its event's group commit ([`PendingCommit`]).

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Version};

use crate::classify::{self, is_prefetch, Verdict, PREFETCH_HEADERS};
use crate::config::{Durability, UnverifiedPolicy};
use crate::events::{
    Commit, CommitError, EncodedEvent, QueueError, RequestFacts, SubscriptionSource, VerdictFacts,
};
use crate::link::{decode, Decoded, LinkKind, MessageId, VerifiedLink};

use super::acme::HTTP01_PREFIX;
use super::client_ip::LoggedIp;
use super::event_budget::Spend;
use super::interstitial::{self, PAGE_HEADERS};
use super::state::{Shared, State};
use super::unsubscribe;

/// The 1×1 transparent GIF (43 bytes) every open is answered with.
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xFF, 0xFF, 0xFF, 0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
];

/// Every answer is built in memory: a full body.
pub type Answer = Response<Full<Bytes>>;

/// The longest `User-Agent` kept in an event; longer ones are cut (at a character boundary).
const MAX_USER_AGENT: usize = 1024;

/// What a request gets: its answer, built at once, and with `durability = "sync"` the
/// group commit of the event it recorded, which the answer must wait for.
pub struct Reply {
    /// The answer, counted and logged already.
    pub answer: Answer,
    /// The commit to wait for before the answer goes out: see [`PendingCommit::wait`].
    pub commit: Option<PendingCommit>,
}

/// A recorded event's group commit, which a `durability = "sync"` answer waits for.
#[derive(Debug)]
pub struct PendingCommit {
    commit: Commit,
    message_id: MessageId,
}

impl PendingCommit {
    /// Waits until the event is in the sink or fsynced to the spool; an event the writer
    /// could not commit is counted and logged, and the answer goes out all the same.
    pub async fn wait(self, state: &State) {
        let dropped = match self.commit.await {
            Ok(()) => return,
            // The pipeline counted it (a full spool) and logged it; the metrics read its count.
            Err(CommitError::Dropped) => return,
            Err(CommitError::WriterGone) => "closed",
        };
        event_dropped(state.shared(), dropped, &self.message_id);
    }
}

/// Answers `request` from `peer`, and counts the answer. Nothing here waits: an answer that
/// must wait for its event's commit says so in [`Reply::commit`].
pub fn respond<B>(request: &Request<B>, peer: IpAddr, state: &State) -> Reply {
    let shared = state.shared();
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let (route, mut answer, commit) = route(request, target, peer, shared);
    if request.method() == Method::HEAD {
        without_body(&mut answer);
    }
    shared.metrics.request(route, answer.status().as_u16());
    tracing::debug!(
        route,
        status = answer.status().as_u16(),
        client = %LoggedIp::new(peer, shared.full_client_ip),
        "answered"
    );
    Reply { answer, commit }
}

fn route<B>(
    request: &Request<B>,
    target: &str,
    peer: IpAddr,
    shared: &Shared,
) -> (&'static str, Answer, Option<PendingCommit>) {
    // RFC 9112, section 3.2: an HTTP/1.1 request with no Host, or more than one, is a 400.
    // (HTTP/1.0 may omit it; HTTP/2 carries `:authority` instead.)
    if request.version() == Version::HTTP_11 && !has_one_host(request.headers()) {
        return (
            "other",
            page(StatusCode::BAD_REQUEST, interstitial::bad_request_page()),
            None,
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut answer = page(
            StatusCode::METHOD_NOT_ALLOWED,
            interstitial::method_not_allowed_page(),
        );
        // A POST to an unsubscribe link never comes here: `unsubscribe::respond_to_post`
        // answers it, having read its body.
        let allow = match LinkKind::split_route(target) {
            Some((LinkKind::Unsubscribe, _)) => "GET, HEAD, POST",
            _ => "GET, HEAD",
        };
        answer
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return ("other", answer, None);
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if let Some(token) = path.strip_prefix(HTTP01_PREFIX) {
        return ("acme_challenge", acme_challenge(shared, token), None);
    }
    match path {
        "/healthz" => return ("healthz", text(StatusCode::OK, "ok\n"), None),
        "/readyz" if is_ready(shared) => return ("readyz", text(StatusCode::OK, "ready\n"), None),
        "/readyz" => {
            let answer = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "event queue not accepting\n",
            );
            return ("readyz", answer, None);
        }
        _ => {}
    }
    match LinkKind::split_route(target) {
        Some((LinkKind::Click, _)) => {
            let (answer, commit) = click(request, target, peer, shared);
            ("click", answer, commit)
        }
        Some((LinkKind::Open, _)) => {
            let (answer, commit) = open(request, target, peer, shared);
            ("open", answer, commit)
        }
        Some((LinkKind::Unsubscribe, _)) => {
            (unsubscribe::ROUTE, unsubscribe::page(target, shared), None)
        }
        None => (
            "other",
            page(StatusCode::NOT_FOUND, interstitial::not_found_page()),
            None,
        ),
    }
}

fn click<B>(
    request: &Request<B>,
    target: &str,
    peer: IpAddr,
    shared: &Shared,
) -> (Answer, Option<PendingCommit>) {
    match decode(target, &shared.ring) {
        Decoded::Verified(link) => match HeaderValue::from_str(&link.target) {
            Ok(location) => {
                let commit = record(request, link, peer, shared);
                let mut answer = empty(StatusCode::FOUND);
                answer.headers_mut().insert(header::LOCATION, location);
                (answer, commit)
            }
            // The decoder hands out targets in the link alphabet, which is always a valid
            // header value; should that ever not hold, refuse rather than fail.
            Err(_) => (
                page(StatusCode::BAD_REQUEST, interstitial::bad_request_page()),
                None,
            ),
        },
        Decoded::Unverified(link) => {
            shared.metrics.unverified(link.reason.as_str());
            // Only a link that may have been ours names its destination: a forged shape gets
            // the 400 page, so the tracking domain is no landing page for anyone's phishing.
            let answer = match (shared.unverified, link.target) {
                (UnverifiedPolicy::Interstitial, Some(target))
                    if link.reason.may_have_been_signed() =>
                {
                    page(StatusCode::OK, interstitial::interstitial_page(&target))
                }
                _ => page(StatusCode::BAD_REQUEST, interstitial::bad_request_page()),
            };
            (answer, None)
        }
        Decoded::Invalid(reason) => {
            shared.metrics.unverified(reason.as_str());
            (
                page(StatusCode::BAD_REQUEST, interstitial::bad_request_page()),
                None,
            )
        }
    }
}

fn open<B>(
    request: &Request<B>,
    target: &str,
    peer: IpAddr,
    shared: &Shared,
) -> (Answer, Option<PendingCommit>) {
    let commit = verified(target, shared).and_then(|link| record(request, link, peer, shared));
    let mut answer = Response::new(Full::new(Bytes::from_static(PIXEL_GIF)));
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, private"),
    );
    (answer, commit)
}

/// The link `target` verifies as, or `None`, counted in the metrics by why it did not: for
/// the routes whose answer is the same either way (the pixel; the unsubscribe page's 400).
pub(super) fn verified(target: &str, shared: &Shared) -> Option<VerifiedLink> {
    match decode(target, &shared.ring) {
        Decoded::Verified(link) => Some(link),
        Decoded::Unverified(link) => {
            shared.metrics.unverified(link.reason.as_str());
            None
        }
        Decoded::Invalid(reason) => {
            shared.metrics.unverified(reason.as_str());
            None
        }
    }
}

/// Builds the event for a verified open or click and offers it to the queue: see
/// [`record_with`].
fn record<B>(
    request: &Request<B>,
    link: VerifiedLink,
    peer: IpAddr,
    shared: &Shared,
) -> Option<PendingCommit> {
    // An open or a click has no source; the argument is only read for an unsubscribe.
    record_with(
        request,
        link,
        SubscriptionSource::UnsubscribeHeader,
        peer,
        shared,
    )
}

/// Builds the event for a verified link (an unsubscribe's from `source`) and offers it to
/// the queue, without waiting, unless its (message id, client address) pair is past its
/// budget. With `durability = "sync"` it returns the batch's group commit, for the answer to
/// wait on, so that the answer goes out only once the event is in the sink or fsynced to the
/// spool.
pub(super) fn record_with<B>(
    request: &Request<B>,
    link: VerifiedLink,
    source: SubscriptionSource,
    peer: IpAddr,
    shared: &Shared,
) -> Option<PendingCommit> {
    shared.metrics.repair(link.repair_label());
    let client_ip = shared.client_ip.client_ip(peer, request.headers());
    let received = SystemTime::now();
    match shared.budget.spend(&link.message_id, client_ip, received) {
        Spend::Within => {}
        Spend::Over => {
            shared.metrics.event_over_budget();
            return None;
        }
        Spend::Untracked => shared.metrics.event_budget_untracked(),
    }
    let user_agent = user_agent(request.headers());
    let user_agent = truncate(&user_agent, MAX_USER_AGENT);
    // Version 2 links carry their send time under the MAC; version 1 links none.
    let seconds_since_send = link.send_time.map(|sent| sent.seconds_until(received));
    let verdict = shared.classifier.as_ref().map(|classifier| {
        let verdict = classifier.classify(&classify::RequestFacts {
            kind: link.kind,
            method: request.method().as_str(),
            user_agent,
            client_ip,
            prefetch: announces_prefetch(request.headers()),
            message_id: link.message_id.as_str(),
            target: &link.target,
            seconds_since_send,
            received,
        });
        shared
            .metrics
            .classified(link.kind, verdict.class, verdict.certainty);
        verdict
    });
    let signals = verdict
        .as_ref()
        .map(Verdict::signal_names)
        .unwrap_or_default();
    let facts = RequestFacts {
        client_ip,
        user_agent,
        tracking_domain: &tracking_domain(request),
        method: request.method().as_str(),
        received,
        verdict: verdict.as_ref().map(|verdict| VerdictFacts {
            class: verdict.class.as_str(),
            certainty: verdict.certainty.as_str(),
            signals: &signals,
        }),
        seconds_since_send,
    };
    let event = EncodedEvent::subscription(&link, &facts, source);
    let offered = match shared.durability {
        Durability::Batch => shared.events.offer(event).map(|()| None),
        Durability::Sync => shared.events.offer_durable(event).map(Some),
    };
    match offered {
        Ok(commit) => commit.map(|commit| PendingCommit {
            commit,
            message_id: link.message_id,
        }),
        Err(error) => {
            let reason = match error {
                QueueError::Full => "full",
                QueueError::Closed => "closed",
            };
            event_dropped(shared, reason, &link.message_id);
            None
        }
    }
}

/// Counts and logs an event that did not reach the queue or the sink.
fn event_dropped(shared: &Shared, reason: &'static str, message_id: &MessageId) {
    shared.metrics.event_dropped(reason);
    tracing::warn!(reason, message_id = message_id.as_str(), "event dropped");
}

/// Ready when the event queue takes events and, behind a pipeline, the sink is up or the
/// spool has room.
fn is_ready(shared: &Shared) -> bool {
    match &shared.pipeline {
        Some(pipeline) => pipeline.is_ready(),
        None => shared.events.is_accepting(),
    }
}

/// The host the request was sent to: `:authority` (HTTP/2) or `Host`, without the port, in
/// lower case.
fn tracking_domain<B>(request: &Request<B>) -> Cow<'_, str> {
    let host = match request.uri().host() {
        Some(host) => host,
        None => without_port(header_text(request, header::HOST)),
    };
    let host = truncate(host, 253);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// `example.com:8443` → `example.com`; `[2001:db8::1]:8443` → `[2001:db8::1]`.
fn without_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => &authority[..colon],
        _ => authority,
    }
}

/// [`PREFETCH_HEADERS`] as header names, made once.
static PREFETCH_HEADER_NAMES: [HeaderName; 4] = [
    HeaderName::from_static(PREFETCH_HEADERS[0]),
    HeaderName::from_static(PREFETCH_HEADERS[1]),
    HeaderName::from_static(PREFETCH_HEADERS[2]),
    HeaderName::from_static(PREFETCH_HEADERS[3]),
];

/// Whether a header says the request is a prefetch (see [`classify::is_prefetch`]).
///
/// One pass over the request's headers, comparing names: a request has a dozen, most of
/// them standard names that differ from these at the first comparison. Four lookups by
/// `&str` parsed, lower-cased and hashed each name, and were a quarter of what the
/// classifier cost a click (callgrind: about 1,000 of 4,000 instructions).
fn announces_prefetch(headers: &HeaderMap) -> bool {
    headers
        .iter()
        .any(|(name, value)| PREFETCH_HEADER_NAMES.contains(name) && is_prefetch(value.as_bytes()))
}

/// Whether `headers` hold exactly one `Host`.
pub(super) fn has_one_host(headers: &HeaderMap) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    hosts.next().is_some() && hosts.next().is_none()
}

/// The `User-Agent` as UTF-8. A header value is bytes, and apps with localized names send
/// them in UTF-8 (or, rarely, Latin-1): invalid sequences become U+FFFD, and the rest is
/// kept, never dropped whole.
fn user_agent(headers: &HeaderMap) -> Cow<'_, str> {
    headers
        .get(header::USER_AGENT)
        .map_or(Cow::Borrowed(""), |value| {
            String::from_utf8_lossy(value.as_bytes())
        })
}

fn header_text<B>(request: &Request<B>, name: HeaderName) -> &str {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A HEAD answer: the GET answer's headers and length, no body. hyper drops the body of a
/// HEAD answer on HTTP/1 but sends it on HTTP/2, where the client then resets the stream.
fn without_body(answer: &mut Answer) {
    let length = answer.body().size_hint().exact().unwrap_or(0);
    answer
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    *answer.body_mut() = Full::new(Bytes::new());
}

/// The key authorization for an open HTTP-01 `token` (RFC 8555, section 8.3), else 404.
fn acme_challenge(shared: &Shared, token: &str) -> Answer {
    match shared.acme_challenges.http01(token) {
        Some(key_authorization) => {
            let mut answer = empty(StatusCode::OK);
            *answer.body_mut() = Full::new(Bytes::from(key_authorization));
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            answer
        }
        None => page(StatusCode::NOT_FOUND, interstitial::not_found_page()),
    }
}

fn empty(status: StatusCode) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, private"),
    );
    answer
}

pub(super) fn text(status: StatusCode, body: &'static str) -> Answer {
    let mut answer = empty(status);
    *answer.body_mut() = Full::new(Bytes::from_static(body.as_bytes()));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

pub(super) fn page(status: StatusCode, html: String) -> Answer {
    let mut answer = empty(status);
    *answer.body_mut() = Full::new(Bytes::from(html));
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    answer
}
