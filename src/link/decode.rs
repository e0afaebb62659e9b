//! The tolerant decoder: from a raw request-target to a verified link, an unverified
//! destination, or a refusal.
//!
//! 1. Strip the route prefix and any punctuation a client glued on at the end.
//! 2. Peel `={kid}`, the MAC, the message id and the version segment (with its tags) off the
//!    right. What is left is the target, in an unknown state.
//! 3. Try the bounded list of [repairs](super::repair) and follow the first candidate whose
//!    MAC verifies.
//!
//! Nothing is ever returned as verified unless its MAC verifies under a key that is active or
//! retired.

use std::borrow::Cow;
use std::ops::ControlFlow;

use percent_encoding::percent_decode_str;

use super::key_ring::{KeyId, KeyRing, KeyState};
use super::repair::{try_candidates, Repair};
use super::signature::{decode_mac, MacPrefix, SignedFields, MAC_BYTES};
use super::tags::{is_canonical_number, LinkTags};
use super::target;
use super::{LinkKind, MessageId, FORMAT_VERSION, MAX_REQUEST_TARGET};

/// What the decoder made of a request-target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The MAC verified: follow it.
    Verified(VerifiedLink),
    /// A destination could be read but not verified: never redirect to it automatically.
    Unverified(UnverifiedLink),
    /// Not a link, or nothing usable could be read from it.
    Invalid(InvalidReason),
}

/// A link whose MAC verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLink {
    /// Click or open.
    pub kind: LinkKind,
    /// The signed destination, exactly as it goes into `Location`. Empty for an open.
    pub target: String,
    /// The message the link was sent in.
    pub message_id: MessageId,
    /// The link's tags.
    pub tags: LinkTags,
    /// The key that verified it.
    pub key_id: KeyId,
    /// Which repair recovered the target.
    pub repair: Repair,
    /// Whether punctuation glued on after the link was stripped.
    pub trimmed_tail: bool,
}

impl VerifiedLink {
    /// The repair label for metrics and events, including the stripping of trailing junk.
    pub fn repair_label(&self) -> &'static str {
        if self.trimmed_tail {
            self.repair.as_str_with_trailing_junk()
        } else {
            self.repair.as_str()
        }
    }
}

/// A link that could be read but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedLink {
    /// Click or open.
    pub kind: LinkKind,
    /// The best-effort destination of a click, normalised as a browser would. `None` for
    /// an open.
    pub target: Option<String>,
    /// The message id, when the link's tail was intact.
    pub message_id: Option<MessageId>,
    /// The key id the link names, when its tail was intact.
    pub key_id: Option<KeyId>,
    /// Why it did not verify.
    pub reason: UnverifiedReason,
}

/// Why a readable link did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnverifiedReason {
    /// The message id, MAC or key id is missing or malformed: typically a `#` that the client
    /// decoded from `%23`, after which the browser dropped the rest of the link.
    NoSignature,
    /// No candidate target matches the MAC: the link was changed.
    BadMac,
    /// The link names a key id the ring does not have.
    UnknownKey,
    /// The link's key is revoked.
    RevokedKey,
}

impl UnverifiedReason {
    /// The label used in metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            UnverifiedReason::NoSignature => "no_signature",
            UnverifiedReason::BadMac => "bad_mac",
            UnverifiedReason::UnknownKey => "unknown_key",
            UnverifiedReason::RevokedKey => "revoked_key",
        }
    }
}

/// Why a request-target is not a usable link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// Longer than [`MAX_REQUEST_TARGET`].
    TooLong,
    /// Not under `/CL0/`, `/L0/`, `/CI0/` or `/I0/`.
    NotALink,
    /// A click from which no http(s) destination could be read.
    NoDestination,
    /// An open whose message id, MAC or key id is missing or malformed.
    MalformedOpen,
}

impl InvalidReason {
    /// The label used in metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::TooLong => "too_long",
            InvalidReason::NotALink => "not_a_link",
            InvalidReason::NoDestination => "no_destination",
            InvalidReason::MalformedOpen => "malformed_open",
        }
    }
}

/// The work one decode did, for the fuzzer's bound on hostile input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeWork {
    /// MACs computed.
    pub macs: usize,
    /// Target bytes fed to those MACs.
    pub bytes_hashed: usize,
}

/// Decodes a raw request-target (path plus `?query`, as received) against `ring`.
pub fn decode(request_target: &str, ring: &KeyRing) -> Decoded {
    decode_counting(request_target, ring, &mut DecodeWork::default())
}

/// [`decode`], adding the work it did to `work`.
pub fn decode_counting(request_target: &str, ring: &KeyRing, work: &mut DecodeWork) -> Decoded {
    if request_target.len() > MAX_REQUEST_TARGET {
        return Decoded::Invalid(InvalidReason::TooLong);
    }
    let Some((kind, rest)) = LinkKind::split_route(request_target) else {
        return Decoded::Invalid(InvalidReason::NotALink);
    };
    let (rest, trimmed_tail) = trim_trailing_junk(rest);
    let Some((received_target, tail)) = Tail::split(rest, kind) else {
        return unverified(kind, rest, None, UnverifiedReason::NoSignature);
    };
    let key = match ring.get(tail.key_id) {
        None => {
            return unverified(
                kind,
                received_target,
                Some(&tail),
                UnverifiedReason::UnknownKey,
            )
        }
        Some(key) if key.state() == KeyState::Revoked => {
            return unverified(
                kind,
                received_target,
                Some(&tail),
                UnverifiedReason::RevokedKey,
            )
        }
        Some(key) => key,
    };
    let prefix = MacPrefix::new(
        key,
        &SignedFields {
            kind,
            message_id: tail.message_id.as_str(),
            tags: &tail.tags,
        },
    );
    // The first candidate that could have been signed: the best-effort destination if none
    // verifies, kept so the candidates need not be made twice.
    let mut first_plausible: Option<Vec<u8>> = None;
    let mut check = |repair: Repair, candidate: &[u8]| {
        if !could_be_signed(kind, candidate) {
            return ControlFlow::Continue(());
        }
        work.macs += 1;
        work.bytes_hashed += candidate.len();
        if prefix.verifies(candidate, &tail.mac) {
            ControlFlow::Break(repair)
        } else {
            first_plausible.get_or_insert_with(|| candidate.to_vec());
            ControlFlow::Continue(())
        }
    };
    let found = match kind {
        LinkKind::Click => try_candidates(received_target, &mut check),
        LinkKind::Open => {
            check(Repair::AsReceived, b"").map_break(|repair| (repair, Cow::default()))
        }
    };
    match found {
        ControlFlow::Break((repair, target)) => Decoded::Verified(VerifiedLink {
            kind,
            // could_be_signed: printable ASCII, so always UTF-8.
            target: String::from_utf8(target.into_owned()).expect("printable ASCII is UTF-8"),
            message_id: tail.message_id,
            tags: tail.tags,
            key_id: tail.key_id,
            repair,
            trimmed_tail,
        }),
        ControlFlow::Continue(()) => {
            let plausible = first_plausible
                .as_deref()
                .and_then(|bytes| std::str::from_utf8(bytes).ok())
                .and_then(|text| target::normalize(text).ok());
            match plausible {
                Some(target) => Decoded::Unverified(UnverifiedLink {
                    kind,
                    target: Some(target),
                    message_id: Some(tail.message_id),
                    key_id: Some(tail.key_id),
                    reason: UnverifiedReason::BadMac,
                }),
                None => unverified(kind, received_target, Some(&tail), UnverifiedReason::BadMac),
            }
        }
    }
}

/// Whether a candidate could be a target this kind of link carries; others are refused
/// before their MAC is computed.
fn could_be_signed(kind: LinkKind, candidate: &[u8]) -> bool {
    match kind {
        LinkKind::Click => target::could_be_signed(candidate),
        LinkKind::Open => candidate.is_empty(),
    }
}

/// An unverified click with its best-effort destination, or an invalid link when there is
/// none to show.
fn unverified(
    kind: LinkKind,
    received_target: &str,
    tail: Option<&Tail>,
    reason: UnverifiedReason,
) -> Decoded {
    let target = match kind {
        LinkKind::Open if tail.is_none() => return Decoded::Invalid(InvalidReason::MalformedOpen),
        LinkKind::Open => None,
        LinkKind::Click => match best_effort_destination(received_target) {
            Some(target) => Some(target),
            None => return Decoded::Invalid(InvalidReason::NoDestination),
        },
    };
    Decoded::Unverified(UnverifiedLink {
        kind,
        target,
        message_id: tail.map(|t| t.message_id.clone()),
        key_id: tail.map(|t| t.key_id),
        reason,
    })
}

/// The first candidate that a browser would accept as an http(s) URL with a host.
fn best_effort_destination(received_target: &str) -> Option<String> {
    let found = try_candidates(received_target, |_, candidate| {
        let normalized = std::str::from_utf8(candidate)
            .ok()
            .and_then(|text| target::normalize(text).ok());
        match normalized {
            Some(url) => ControlFlow::Break(url),
            None => ControlFlow::Continue(()),
        }
    });
    match found {
        ControlFlow::Break((url, _)) => Some(url),
        ControlFlow::Continue(()) => None,
    }
}

/// The fields peeled off the right of a link.
struct Tail {
    message_id: MessageId,
    tags: LinkTags,
    mac: [u8; MAC_BYTES],
    key_id: KeyId,
}

impl Tail {
    /// Splits `rest` (after the route prefix) into the received target segment and the tail.
    ///
    /// The tail's segments are decoded once before they are read: their canonical form never
    /// holds a `%`, so a proxy's extra escaping (`%3D` for `=`) is undone without ambiguity.
    fn split(rest: &str, kind: LinkKind) -> Option<(&str, Tail)> {
        let (before_signature, signature) = rsplit_at_ascii(rest, b'/')?;
        let (received_target, message_id, version) = match kind {
            LinkKind::Click => {
                let (before_id, message_id) = rsplit_at_ascii(before_signature, b'/')?;
                let (received_target, version) = rsplit_at_ascii(before_id, b'/')?;
                (received_target, message_id, Some(version))
            }
            LinkKind::Open => ("", before_signature, None),
        };
        // One look for a `%` over the whole tail, rather than one per segment: there usually is
        // none, and then every segment reads as it is.
        let escaped = memchr::memchr(b'%', &rest.as_bytes()[received_target.len()..]).is_some();
        let read = |segment| {
            if escaped {
                decoded(segment)
            } else {
                Some(Cow::Borrowed(segment))
            }
        };
        let tags = match version {
            Some(version) => LinkTags::read_version_segment(&read(version)?, FORMAT_VERSION)?,
            None => LinkTags::new(),
        };
        let signature = read(signature)?;
        let (mac, key_id) = rsplit_at_ascii(&signature, b'=')?;
        let tail = Tail {
            message_id: MessageId::new(&read(message_id)?).ok()?,
            tags,
            mac: decode_mac(mac)?,
            key_id: parse_key_id(key_id)?,
        };
        Some((received_target, tail))
    }
}

/// Splits `text` at the last `byte`, which is ASCII, so both sides are whole characters.
///
/// `str::rsplit_once` with a `char` calls `memcmp` for every match it checks, which showed in
/// the decoder's profile.
fn rsplit_at_ascii(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = memchr::memrchr(byte, text.as_bytes())?;
    Some((&text[..at], &text[at + 1..]))
}

fn decoded(segment: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(segment).decode_utf8().ok()
}

/// Reads a key id written in canonical decimal.
fn parse_key_id(digits: &str) -> Option<KeyId> {
    let id = digits.parse::<KeyId>().ok()?;
    is_canonical_number(digits, id).then_some(id)
}

/// Punctuation that clients glue onto a link in text, longest first so `&gt;` goes whole.
const TRAILING_JUNK: [&str; 16] = [
    "&gt;", "%3E", "%3e", "%29", "%22", "%27", "%5D", "%5d", ")", ".", ",", ">", ";", "]", "'",
    "\"",
];

/// The most junk tokens stripped from one link.
const MAX_JUNK_TOKENS: usize = 8;

/// Strips punctuation glued on after the key id, and a query appended after it.
///
/// Neither the key id (digits) nor a base64url MAC ever ends in any of these, so stripping is
/// safe; the MAC still decides whether the result is ours.
fn trim_trailing_junk(rest: &str) -> (&str, bool) {
    let mut trimmed = rest;
    for _ in 0..MAX_JUNK_TOKENS {
        // Only tokens ending in the last byte are compared whole: sixteen `memcmp` calls on
        // every link showed in the decoder's profile.
        let last = trimmed.as_bytes().last();
        match TRAILING_JUNK
            .iter()
            .filter(|junk| junk.as_bytes().last() == last)
            .find_map(|junk| trimmed.strip_suffix(junk))
        {
            Some(shorter) => trimmed = shorter,
            None => break,
        }
    }
    // A query we strip holds no `/`, so only the last segment is searched for its `?`.
    let last_segment = memchr::memrchr(b'/', trimmed.as_bytes()).map_or(0, |at| at + 1);
    if let Some(at) = memchr::memrchr(b'?', &trimmed.as_bytes()[last_segment..]) {
        let before = &trimmed[..last_segment + at];
        if ends_with_key_id(before) {
            trimmed = before;
        }
    }
    (trimmed, trimmed.len() != rest.len())
}

/// Whether `text` ends in `={digits}`.
fn ends_with_key_id(text: &str) -> bool {
    let digits = text.len() - text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    digits > 0 && text[..text.len() - digits].ends_with('=')
}

#[cfg(test)]
mod tests;
