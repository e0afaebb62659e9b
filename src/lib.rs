//! mailtrack: a self-hosted email open/click tracking proxy.
//!
//! Senders pass each HTML email through the [rewriter](crate::rewrite) before sending,
//! so its links point at their own tracking domain. When a recipient opens the mail or clicks a
//! link, the proxy answers with a 1×1 pixel or a redirect, and records the open or click; a
//! one-click unsubscribe (RFC 8058) is recorded too.
//!
//! Every link is signed; the [tolerant decoder](crate::link::decode()) recovers links that mail
//! clients and proxies mangled, and follows nothing that does not verify.
//!
//! ```
//! use mailtrack::link::{decode, Decoded, LinkTags, MessageId, MessageStamp, SendTime};
//! use mailtrack::testing::{fixed_ring, fixed_signer, request_target};
//!
//! let signer = fixed_signer();
//! let message = MessageStamp::new(
//!     MessageId::new("msg-1").unwrap(),
//!     SendTime::now(),
//!     LinkTags::parse("campaign:spring").unwrap(),
//! );
//! let link = signer.click_url("https://example.com/?a=1&b=2", &message, &LinkTags::new()).unwrap();
//! match decode(request_target(&link), &fixed_ring()) {
//!     Decoded::Verified(link) => {
//!         assert_eq!(link.target, "https://example.com/?a=1&b=2");
//!         assert_eq!(link.send_time, message.send_time());
//!         assert_eq!(&link.message_tags, message.tags());
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! # Layout
//!
//! - [`config`]: the configuration file, its defaults and their reasons, validation.
//! - [`link`]: the link contract (versions 1 and 2): message ids, send times, tags, targets,
//!   the key ring, signing (clicks, the pixel, the unsubscribe link), and the tolerant
//!   decoder with its repairs.
//! - [`server`]: `mailtrack serve`: accept loop, TLS with SNI and ACME certificates, routes
//!   (the unsubscribe link's page and one-click `POST` among them), client addresses,
//!   timeouts and limits (the per-client connection cap among them), metrics, the admin
//!   listener for operators, graceful drain.
//! - [`events`]: the SES-shaped open, click and unsubscribe (`Subscription`) events, the
//!   bounded queue that hands them from the request path to the writer, the sinks (JSONL
//!   file, Redis stream, stdout), the disk spool, and a stream consumer (`events tail`).
//! - [`notify`]: delivering events to subscribers: rules, Standard Webhooks signatures, the
//!   retry schedule (growing with `mailtrack notify`).
//! - [`classify`]: people, proxies and machines: the verdict on every open and click, from
//!   user-agent patterns, network lists (Apple's egress, Microsoft EOP, the user's), `HEAD`
//!   and prefetch headers, bursts and the time since sending.
//! - [`rewrite`]: the HTML rewriter: tracked links, the open pixel, the unsubscribe link
//!   (on request), and the report of what was left untracked and why; whole MIME messages
//!   ([`rewrite::mime`]).
//! - [`testing`]: a fixed key ring, link manglings and fuzz properties, for tests, fuzzers and
//!   benchmarks.

pub mod classify;
pub mod config;
pub mod events;
pub mod link;
pub mod notify;
pub mod rewrite;
pub mod server;
#[doc(hidden)]
pub mod testing;

pub use config::{Config, ConfigError};
pub use link::{decode, Decoded, KeyRing, LinkSigner, LinkTags, MessageId, MessageStamp, SendTime};
