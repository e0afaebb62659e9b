//! The tolerant decoder: from a raw request-target to a verified link, an unverified
//! destination, or a refusal.
//!
//! 1. Strip the route prefix and any punctuation a client glued on at the end.
//! 2. Peel `={kid}`, the MAC, the message id and the version segment (with its send time and
//!    tags) off the right. What is left is the target, in an unknown state. An open has a
//!    version segment only from version 2 on; an unsubscribe link always has one (it exists
//!    only from version 2) and, like an open, no target.
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
use super::send_time::SendTime;
use super::signature::{decode_mac, MacPrefix, SignedFields, MAC_BYTES};
use super::tags::{is_canonical_number, LinkTags};
use super::{target, version};
use super::{LinkKind, MessageId, MAX_REQUEST_TARGET};

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
    /// Click, open or unsubscribe.
    pub kind: LinkKind,
    /// The signed destination, exactly as it goes into `Location`. Empty for an open and an
    /// unsubscribe.
    pub target: String,
    /// The message the link was sent in.
    pub message_id: MessageId,
    /// When the message was sent; `None` for a version 1 link, which does not say.
    pub send_time: Option<SendTime>,
    /// The message's tags (SES's `mail.tags`); empty for a version 1 link.
    pub message_tags: LinkTags,
    /// The link's tags (SES's `click.linkTags`); always empty for an open and an unsubscribe.
    pub tags: LinkTags,
    /// The key that verified it.
    pub key_id: KeyId,
    /// Which repair recovered the target.
    pub repair: Repair,
    /// Whether punctuation glued on after the link was stripped.
    pub trimmed_tail: bool,
}

impl VerifiedLink {
    /// The format version the link was written in: 1 or 2.
    pub fn version(&self) -> u32 {
        match self.send_time {
            None => 1,
            Some(_) => 2,
        }
    }

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
    /// Click, open or unsubscribe.
    pub kind: LinkKind,
    /// The best-effort destination of a click, normalised as a browser would. `None` for
    /// an open and an unsubscribe.
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
    /// The link has no signature at all, and arrived still encoded: no mail client makes
    /// that from a link we signed, so it was written by hand.
    NoSignature,
    /// The link has no signature, and arrived decoded (`https://` where we wrote
    /// `https:%2F%2F`): a client decoded the path, turning a `%23` into `#`, and the browser
    /// dropped everything after it, the signature included.
    CutShort,
    /// The link ends in something shaped like a signature (`…={kid}`), but its MAC has the
    /// wrong length, or its message id or version segment is malformed: never one we signed.
    MalformedSignature,
    /// No candidate target matches the MAC: the link was changed.
    BadMac,
    /// The link names a key id the ring does not have.
    UnknownKey,
    /// The link's key is revoked.
    RevokedKey,
}

impl UnverifiedReason {
    /// Whether a link that failed this way may still be one we signed, which a mail client
    /// then changed on its way: its tail is intact and names a key of the ring (only its
    /// target fails the MAC), or it was cut short at a decoded `#`. Only such a link gets
    /// the interstitial; any other shape was never signed, and shows nobody a destination.
    pub fn may_have_been_signed(self) -> bool {
        matches!(self, UnverifiedReason::BadMac | UnverifiedReason::CutShort)
    }

    /// The label used in metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            UnverifiedReason::NoSignature => "no_signature",
            UnverifiedReason::CutShort => "cut_short",
            UnverifiedReason::MalformedSignature => "malformed_signature",
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
    /// Not under `/CL0/`, `/L0/`, `/CI0/`, `/I0/` or `/US0/`.
    NotALink,
    /// A click from which no http(s) destination could be read.
    NoDestination,
    /// An open whose message id, MAC or key id is missing or malformed.
    MalformedOpen,
    /// An unsubscribe link whose version segment, message id, MAC or key id is missing or
    /// malformed.
    MalformedUnsubscribe,
}

impl InvalidReason {
    /// The label used in metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::TooLong => "too_long",
            InvalidReason::NotALink => "not_a_link",
            InvalidReason::NoDestination => "no_destination",
            InvalidReason::MalformedOpen => "malformed_open",
            InvalidReason::MalformedUnsubscribe => "malformed_unsubscribe",
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
    let (received_target, tail) = match Tail::split(rest, kind) {
        Ok(split) => split,
        Err(TailError::Malformed) => {
            return unverified(kind, rest, None, UnverifiedReason::MalformedSignature)
        }
        Err(TailError::Absent) if arrived_decoded(rest) => {
            return unverified(kind, rest, None, UnverifiedReason::CutShort)
        }
        Err(TailError::Absent) => {
            return unverified(kind, rest, None, UnverifiedReason::NoSignature)
        }
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
            send_time: tail.send_time,
            message_tags: &tail.message_tags,
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
        // Neither has a target: the MAC is over the empty one, and only as received.
        LinkKind::Open | LinkKind::Unsubscribe => {
            check(Repair::AsReceived, b"").map_break(|repair| (repair, Cow::default()))
        }
    };
    match found {
        ControlFlow::Break((repair, target)) => Decoded::Verified(VerifiedLink {
            kind,
            // could_be_signed: printable ASCII, so always UTF-8.
            target: String::from_utf8(target.into_owned()).expect("printable ASCII is UTF-8"),
            message_id: tail.message_id,
            send_time: tail.send_time,
            message_tags: tail.message_tags,
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
        LinkKind::Open | LinkKind::Unsubscribe => candidate.is_empty(),
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
        LinkKind::Unsubscribe if tail.is_none() => {
            return Decoded::Invalid(InvalidReason::MalformedUnsubscribe)
        }
        LinkKind::Open | LinkKind::Unsubscribe => None,
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

/// Whether a click's target arrived with its `://` decoded: we write `https:%2F%2F…`, so a
/// literal `//` after the scheme means a client decoded the path on its way.
fn arrived_decoded(received: &str) -> bool {
    let bytes = received.as_bytes();
    ["http://", "https://"].iter().any(|scheme| {
        bytes.len() >= scheme.len() && bytes[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
    })
}

/// Why no tail could be peeled off a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TailError {
    /// The last segment is not shaped like a signature (`{base64url}={digits}`), or there
    /// are too few segments for one.
    Absent,
    /// The last segment is shaped like a signature, but the tail does not read: a MAC of the
    /// wrong length, a malformed message id or version segment.
    Malformed,
}

/// The fields peeled off the right of a link.
struct Tail {
    message_id: MessageId,
    send_time: Option<SendTime>,
    message_tags: LinkTags,
    tags: LinkTags,
    mac: [u8; MAC_BYTES],
    key_id: KeyId,
}

impl Tail {
    /// Splits `rest` (after the route prefix) into the received target segment and the tail.
    ///
    /// The tail's segments are decoded once before they are read: their canonical form never
    /// holds a `%`, so a proxy's extra escaping (`%3D` for `=`) is undone without ambiguity.
    fn split(rest: &str, kind: LinkKind) -> Result<(&str, Tail), TailError> {
        let (before_signature, signature) = rsplit_at_ascii(rest, b'/').ok_or(TailError::Absent)?;
        let segments = match kind {
            LinkKind::Click => {
                rsplit_at_ascii(before_signature, b'/').and_then(|(before_id, message_id)| {
                    let (received_target, version) = rsplit_at_ascii(before_id, b'/')?;
                    Some((received_target, message_id, Some(version)))
                })
            }
            // `{message_id}` in version 1, `{version segment}/{message_id}` from version 2.
            LinkKind::Open => match rsplit_at_ascii(before_signature, b'/') {
                Some((version, message_id)) => Some(("", message_id, Some(version))),
                None => Some(("", before_signature, None)),
            },
            // `{version segment}/{message_id}`, always: there is no version 1 unsubscribe.
            LinkKind::Unsubscribe => rsplit_at_ascii(before_signature, b'/')
                .map(|(version, message_id)| ("", message_id, Some(version))),
        };
        // One look for a `%` over the whole tail, rather than one per segment: there usually is
        // none, and then every segment reads as it is.
        let tail_start = segments.map_or(before_signature.len(), |(target, ..)| target.len());
        let escaped = memchr::memchr(b'%', &rest.as_bytes()[tail_start..]).is_some();
        let read = |segment| {
            if escaped {
                decoded(segment)
            } else {
                Some(Cow::Borrowed(segment))
            }
        };
        let signature = read(signature).ok_or(TailError::Absent)?;
        let (mac, key_id) = rsplit_at_ascii(&signature, b'=').ok_or(TailError::Absent)?;
        let key_id = parse_key_id(key_id).ok_or(TailError::Absent)?;
        if mac.is_empty() || !mac.bytes().all(is_base64url) {
            return Err(TailError::Absent);
        }
        // From here on the link claims a signature: whatever does not read is malformed.
        let malformed = TailError::Malformed;
        let (received_target, message_id, version) = segments.ok_or(malformed)?;
        let segment = match version {
            Some(version) => {
                let version = read(version).ok_or(malformed)?;
                let segment = version::read(&version).ok_or(malformed)?;
                // An open's (and an unsubscribe's) segment is version 2's, with no link tags.
                let open_ok = segment.send_time.is_some() && segment.link_tags.is_empty();
                if kind != LinkKind::Click && !open_ok {
                    return Err(malformed);
                }
                segment
            }
            None => version::VersionSegment {
                send_time: None,
                message_tags: LinkTags::new(),
                link_tags: LinkTags::new(),
            },
        };
        let message_id = read(message_id).ok_or(malformed)?;
        let tail = Tail {
            message_id: MessageId::new(&message_id).map_err(|_| malformed)?,
            send_time: segment.send_time,
            message_tags: segment.message_tags,
            tags: segment.link_tags,
            mac: decode_mac(mac).ok_or(malformed)?,
            key_id,
        };
        Ok((received_target, tail))
    }
}

/// A character of base64url, the MAC's alphabet.
fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
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
