//! HTTP(S) deliveries: one POST an attempt, signed per the Standard Webhooks specification,
//! and what its answer means for the delivery.
//!
//! - Success is a 2xx within the endpoint's timeout. The body is read (up to
//!   [`MAX_ANSWER_BYTES`]) so that the connection can be reused, and kept for `notify test`.
//! - 410 Gone disables the endpoint: the receiver said it wants no more.
//! - 429 and 503 are retried no sooner than their `Retry-After`.
//! - Anything else (a timeout, a refused connection, a 3xx, another status) is retried on the
//!   endpoint's schedule. No redirect is ever followed: a 3xx is an answer like any other.
//! - The receiver's address is checked when the connection is made, not only at start-up: a
//!   name that resolves to a loopback, private or link-local address is refused unless the
//!   endpoint allows it ([`AddressPolicy`]), so DNS cannot turn a delivery inward.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use url::Url;

use super::signature::sign;
use crate::config::notify::WebhookSecret;

/// The most of a receiver's answer that is read: enough for `notify test` to show an error
/// page's gist, and no receiver can make us hold more.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The longest `Retry-After` honoured: a receiver asking for more than a day is down, and
/// the schedule (then the dead letters) takes over.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What deliveries say they are.
const USER_AGENT: &str = concat!("mailtrack/", env!("CARGO_PKG_VERSION"));

/// Which addresses a receiver may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Public addresses only: no loopback, private, link-local, unique-local, shared
    /// (100.64/10), multicast or unspecified address.
    PublicOnly,
    /// Any address: for receivers on the same host or network, as tests have.
    AllowPrivate,
}

impl AddressPolicy {
    /// Whether a receiver at `ip` may be connected to.
    pub fn allows(self, ip: IpAddr) -> bool {
        self == AddressPolicy::AllowPrivate || is_public(ip)
    }
}

/// Whether `ip` is a public unicast address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

/// Resolves `url`'s host and refuses it unless every address it has is allowed: the start-up
/// check, which names the endpoint's key when it fails.
pub async fn check_receiver(url: &Url, policy: AddressPolicy) -> Result<(), String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .collect();
    match addrs.iter().find(|addr| !policy.allows(addr.ip())) {
        Some(addr) => Err(format!(
            "{host} resolves to {}, a loopback, private or link-local address; set \
             allow_private = true if this receiver is meant to be on your own network",
            addr.ip()
        )),
        None if addrs.is_empty() => Err(format!("{host} has no address")),
        None => Ok(()),
    }
}

/// The system resolver, with every address the policy refuses left out: a name with none
/// left fails to connect, as if it did not resolve.
#[derive(Debug, Clone)]
struct GuardedResolver {
    policy: AddressPolicy,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // The port is the connector's to set; 0 here only satisfies the lookup.
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(std::io::Error::other(format!(
                    "{host}: no address this endpoint may connect to"
                )));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// A pooled HTTP/1.1 and HTTP/2 client for one endpoint.
#[derive(Clone)]
pub struct WebhookClient {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    timeout: Duration,
    /// Checked here for a URL whose host is an address: the connector takes those as they
    /// are, without asking the resolver.
    policy: AddressPolicy,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One POST to send: the body's exact bytes and what signs them.
#[derive(Debug)]
pub struct Attempt<'a> {
    /// The receiver.
    pub url: &'a Url,
    /// The `webhook-id`, the same for every attempt of one delivery.
    pub id: &'a str,
    /// The body, sent exactly as signed.
    pub body: Bytes,
    /// Each signs the attempt.
    pub secrets: &'a [WebhookSecret],
    /// Further headers (SNS's `x-amz-sns-*`).
    pub headers: &'a [(&'static str, String)],
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What it means for the delivery.
    pub verdict: Verdict,
    /// The status, when the receiver answered.
    pub status: Option<u16>,
    /// How long the attempt took.
    pub latency: Duration,
    /// The start of the receiver's answer, or what went wrong on the way.
    pub detail: String,
}

/// What an attempt means for its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx in time: delivered.
    Delivered,
    /// 410 Gone: the receiver wants no more; the endpoint is disabled.
    Gone,
    /// Try again, on the schedule, or no sooner than `not_before` (a `Retry-After`).
    Retry {
        /// From `Retry-After`, on 429 and 503.
        not_before: Option<Duration>,
    },
}

impl WebhookClient {
    /// A client whose attempts each take at most `timeout` and connect only where `policy`
    /// allows.
    pub fn new(timeout: Duration, policy: AddressPolicy) -> std::io::Result<WebhookClient> {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { policy });
        // The connector takes https URLs too; hyper-rustls does their TLS.
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(tls);
        Ok(WebhookClient {
            client,
            timeout,
            policy,
        })
    }

    /// Sends `attempt`, signed now, and says what its answer means.
    pub async fn send(&self, attempt: Attempt<'_>) -> Answer {
        let started = Instant::now();
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = attempt.url.host() {
            let literal = attempt.url.host_str().unwrap_or_default();
            let ip = literal
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse();
            if !ip.is_ok_and(|ip| self.policy.allows(ip)) {
                let detail = format!("{literal}: not an address this endpoint may connect to");
                return retry(None, started, None, detail);
            }
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let request = match signed_request(&attempt, timestamp) {
            Ok(request) => request,
            Err(detail) => return retry(None, started, None, detail),
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| retry_after(v, SystemTime::now()));
            // A receiver that sends more than we read is cut: the status is what counts.
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => retry(
                None,
                started,
                None,
                format!("no answer within {:?}", self.timeout),
            ),
            Ok(Err(error)) => retry(None, started, None, describe(&error)),
            Ok(Ok((status, not_before, body))) => {
                let detail = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                let verdict = match status {
                    s if s.is_success() => Verdict::Delivered,
                    StatusCode::GONE => Verdict::Gone,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        Verdict::Retry { not_before }
                    }
                    _ => Verdict::Retry { not_before: None },
                };
                Answer {
                    verdict,
                    status: Some(status.as_u16()),
                    latency: started.elapsed(),
                    detail,
                }
            }
        }
    }
}

/// The POST for `attempt`, with its Standard Webhooks headers for `timestamp` when it has
/// secrets to sign with. `Content-Type` and `User-Agent` are mailtrack's unless the attempt's
/// own headers name them (SNS envelopes do).
fn signed_request(attempt: &Attempt<'_>, timestamp: u64) -> Result<Request<Full<Bytes>>, String> {
    let names = |wanted: &str| {
        attempt
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(wanted))
    };
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(attempt.url.as_str());
    if !names("content-type") {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    if !names("user-agent") {
        builder = builder.header(header::USER_AGENT, USER_AGENT);
    }
    if !attempt.secrets.is_empty() {
        let signature = sign(attempt.secrets, attempt.id, timestamp, &attempt.body);
        builder = builder
            .header("webhook-id", attempt.id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature);
    }
    for (name, value) in attempt.headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(Full::new(attempt.body.clone()))
        .map_err(|e| format!("the request could not be made: {e}"))
}

fn retry(
    status: Option<u16>,
    started: Instant,
    not_before: Option<Duration>,
    detail: String,
) -> Answer {
    Answer {
        verdict: Verdict::Retry { not_before },
        status,
        latency: started.elapsed(),
        detail,
    }
}

/// A client error with its causes, which say what actually failed (refused, reset, TLS).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
fn retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate(text)?.duration_since(now).unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only date form RFC 9110 lets a
/// sender write.
fn httpdate(text: &str) -> Option<SystemTime> {
    let rfc3339 = {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [_, day, month, year, time, "GMT"] = parts[..] else {
            return None;
        };
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS.iter().position(|m| *m == month)? + 1;
        format!("{year}-{month:02}-{day:0>2}T{time}Z")
    };
    humantime::parse_rfc3339(&rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_unless_allowed() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!AddressPolicy::PublicOnly.allows(ip), "{private}");
            assert!(AddressPolicy::AllowPrivate.allows(ip), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "100.128.0.1"] {
            assert!(
                AddressPolicy::PublicOnly.allows(public.parse().unwrap()),
                "{public}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = humantime::parse_rfc3339("2026-12-02T06:00:00Z").unwrap();
        let header = |text: &str| retry_after(&HeaderValue::from_str(text).unwrap(), now);
        assert_eq!(header("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            header("Wed, 02 Dec 2026 06:01:30 GMT"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            header("Wed, 02 Dec 2026 05:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(header("99999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(header("soon"), None);
    }
}
