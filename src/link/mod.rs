//! The link contract: how a tracked link is written, signed, and read back.
//!
//! Links live in sent mail for years, so this format is a public, versioned contract.
//! It is never changed in place; a new version is added beside it.
//!
//! ```text
//! click v2: {base}/CL0/{target}/2~{send time}[~{key}={value}]*[~{key}:{value}]*/{message_id}/{mac}={kid}
//! open v2:  {base}/CI0/2~{send time}[~{key}={value}]*/{message_id}/{mac}={kid}
//! unsubscribe v2: {base}/US0/2~{send time}[~{key}={value}]*/{message_id}/{mac}={kid}
//! click v1: {base}/CL0/{target}/1[~{key}:{value}]*/{message_id}/{mac}={kid}
//! open v1:  {base}/CI0/{message_id}/{mac}={kid}
//! ```
//!
//! - `target` is the destination exactly as it will appear in `Location`, percent-encoded so
//!   that only `A–Z a–z 0–9 - . _ ~ : =` stay literal ([`target`]).
//! - The version segment holds the version; in version 2 the send time (base-36 Unix
//!   seconds) and the message tags (`=`); then the link tags (`:`). The number of trailing
//!   segments is fixed for each kind and version, so the decoder can parse from the right
//!   ([`version`], [`tags`], [`send_time`]). The signer writes version 2; version 1 links,
//!   in mail sent before it, verify forever.
//! - `mac` is a truncated HMAC-SHA256 in base64url, `kid` the decimal key id ([`signature`]).
//!
//! # Layout
//!
//! - [`message_id`]: the validated message id.
//! - [`send_time`]: the send time, in whole seconds, and its base-36 form.
//! - [`tags`]: link and message tags, their parsing from `ses:tags` and their written form.
//! - [`stamp`]: [`MessageStamp`], what every link of one message carries.
//! - [`version`]: the version segment, version 1 or 2.
//! - [`target`]: normalising a destination and encoding it into a path segment.
//! - [`key_ring`]: the key file: ids, secrets and states.
//! - [`signature`]: the MAC over the link's fields.
//! - [`sign`]: [`LinkSigner`], which writes click, open and unsubscribe links.
//! - [`repair`]: the bounded list of repairs tried on a mangled target.
//! - [`decode`]: [`decode()`], the tolerant decoder.

pub mod decode;
pub mod key_ring;
pub mod message_id;
pub mod repair;
pub mod send_time;
pub mod sign;
pub mod signature;
pub mod stamp;
pub mod tags;
pub mod target;
pub mod version;

pub use decode::{decode, Decoded, InvalidReason, UnverifiedLink, UnverifiedReason, VerifiedLink};
pub(crate) use key_ring::describe_toml_error;
pub use key_ring::{KeyId, KeyRing, KeyRingError, KeyState};
pub use message_id::{MessageId, MessageIdError};
pub use repair::Repair;
pub use send_time::{SendTime, SendTimeError, MAX_SEND_TIME};
pub use sign::{LinkSigner, SignError};
pub use stamp::MessageStamp;
pub use tags::{LinkTags, TagError};
pub use target::TargetError;

/// The format version the signer writes (with a send time), covered by every link's MAC.
/// Version 1 links, without one, are still read and verified.
pub const FORMAT_VERSION: u32 = 2;

/// The longest request-target the decoder looks at, in bytes.
///
/// SES caps request headers at 8 KiB and so does the proxy; nothing longer can be a link we
/// wrote, and the cap bounds the decoder's work on hostile input.
pub const MAX_REQUEST_TARGET: usize = 8 * 1024;

/// What a tracked link records when it is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// A click on a link: answered with a redirect to the target.
    Click,
    /// An open of the message: answered with a 1×1 GIF.
    Open,
    /// A one-click unsubscribe (RFC 8058): a `POST` records it; a `GET` only shows the page
    /// whose button posts. Version 2 only, with the pixel's layout and its own kind byte
    /// under the MAC, so that no open link verifies as an unsubscribe.
    Unsubscribe,
}

impl LinkKind {
    /// The lower-case name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Click => "click",
            LinkKind::Open => "open",
            LinkKind::Unsubscribe => "unsubscribe",
        }
    }

    /// The route prefix this version writes.
    pub fn route(self) -> &'static str {
        match self {
            LinkKind::Click => "/CL0/",
            LinkKind::Open => "/CI0/",
            LinkKind::Unsubscribe => "/US0/",
        }
    }

    /// Splits a request-target into the link kind and the rest after the route prefix.
    ///
    /// `/CL0/` and `/CI0/` are what we write; `/L0/` and `/I0/` are SES's shorter forms,
    /// accepted so that links migrated from SES keep working. `/US0/` is ours alone: SES's
    /// unsubscribe links go to SES.
    pub fn split_route(request_target: &str) -> Option<(LinkKind, &str)> {
        const ROUTES: [(&str, LinkKind); 5] = [
            ("/CL0/", LinkKind::Click),
            ("/L0/", LinkKind::Click),
            ("/CI0/", LinkKind::Open),
            ("/I0/", LinkKind::Open),
            ("/US0/", LinkKind::Unsubscribe),
        ];
        ROUTES.iter().find_map(|&(prefix, kind)| {
            request_target.strip_prefix(prefix).map(|rest| (kind, rest))
        })
    }
}
