//! What the classifier reads of a request: borrowed from it, nothing copied.
//!
//! The server fills this in from the verified link and the request's headers; the classifier
//! knows nothing of HTTP libraries, so tests and benchmarks build it directly.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::link::LinkKind;

/// One verified open or click, as the classifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// An open (the pixel) or a click.
    pub kind: LinkKind,
    /// The request method, `GET` or `HEAD`.
    pub method: &'a str,
    /// The `User-Agent` header, or empty.
    pub user_agent: &'a str,
    /// The client's address, through trusted proxies (`server::client_ip`).
    pub client_ip: IpAddr,
    /// Whether the request says it is a prefetch: `Sec-Purpose: prefetch` (Chromium's
    /// speculation rules), `Purpose: prefetch` (older Chromium, Safari) or
    /// `X-Moz: prefetch` (Firefox). See [`is_prefetch`].
    pub prefetch: bool,
    /// The message the link was sent in.
    pub message_id: &'a str,
    /// Which link of the message: its destination (empty for the pixel).
    pub target: &'a str,
    /// Seconds from the send time (in version 2 links) to this request; `None` when the
    /// link does not carry a send time.
    pub seconds_since_send: Option<u64>,
    /// When the request arrived.
    pub received: SystemTime,
}

/// The request headers that announce a prefetch, in lower case, as hyper names them.
pub const PREFETCH_HEADERS: [&str; 4] = ["sec-purpose", "purpose", "x-purpose", "x-moz"];

/// Whether a value of one of [`PREFETCH_HEADERS`] announces a prefetch: it holds the token
/// `prefetch` (`Sec-Purpose: prefetch;prerender` too), in any case.
pub fn is_prefetch(value: &[u8]) -> bool {
    value
        .split(|&b| b == b';' || b == b',' || b == b' ')
        .any(|token| {
            token.eq_ignore_ascii_case(b"prefetch") || token.eq_ignore_ascii_case(b"preview")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_values() {
        assert!(is_prefetch(b"prefetch"));
        assert!(is_prefetch(b"prefetch;prerender"));
        assert!(is_prefetch(b"Prefetch"));
        assert!(is_prefetch(b"preview"));
        assert!(!is_prefetch(b""));
        assert!(!is_prefetch(b"prefetched"));
    }
}
