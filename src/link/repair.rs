//! The bounded list of repairs tried on a target that a mail client or proxy may have mangled.
//!
//! Each repair turns the target segment as received into one candidate target. The decoder
//! follows the first candidate whose MAC verifies, so a repair can never make a link go
//! anywhere its sender did not sign. The list is fixed and short: a hostile path costs at most
//! [`MAX_CANDIDATES`] MACs over at most 8 KiB each.

use std::borrow::Cow;
use std::ops::ControlFlow;

use super::target;

/// The most candidates one request is checked against.
pub const MAX_CANDIDATES: usize = 8;

/// Which repair recovered a link. Used as a metric label and recorded in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Repair {
    /// The link arrived as we wrote it.
    AsReceived,
    /// The client percent-decoded the path once (China Mobile's 139 mail), so the target
    /// arrived as the URL itself, its `?` splitting our path from a query.
    DecodedOnce,
    /// A proxy decoded `%2F` to `/` and left every other escape alone.
    SlashDecoded,
    /// The client decoded the path once and something merged `//` into `/`, which a browser's
    /// URL parser puts back.
    MergedSlashes,
    /// A proxy wrote the escapes' hex digits in lower case.
    LowerCaseHex,
    /// The link was percent-encoded once more (`%` became `%25`).
    ExtraPercentLayer,
}

impl Repair {
    /// The label used in metrics, events and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Repair::AsReceived => "as_received",
            Repair::DecodedOnce => "decoded_once",
            Repair::SlashDecoded => "slash_decoded",
            Repair::MergedSlashes => "merged_slashes",
            Repair::LowerCaseHex => "lower_case_hex",
            Repair::ExtraPercentLayer => "extra_percent_layer",
        }
    }

    /// The label when trailing punctuation was also stripped from the link.
    pub fn as_str_with_trailing_junk(self) -> &'static str {
        match self {
            Repair::AsReceived => "trailing_junk",
            Repair::DecodedOnce => "decoded_once+trailing_junk",
            Repair::SlashDecoded => "slash_decoded+trailing_junk",
            Repair::MergedSlashes => "merged_slashes+trailing_junk",
            Repair::LowerCaseHex => "lower_case_hex+trailing_junk",
            Repair::ExtraPercentLayer => "extra_percent_layer+trailing_junk",
        }
    }
}

/// Offers each candidate target for the target segment `received` to `visit`, in order,
/// until `visit` breaks. At most [`MAX_CANDIDATES`] are offered.
///
/// Returns what `visit` broke with and the candidate it broke on, which is owned unless it is
/// `received` itself: the decoder keeps it as the target instead of copying it.
pub(crate) fn try_candidates<'a, T>(
    received: &'a str,
    mut visit: impl FnMut(Repair, &[u8]) -> ControlFlow<T>,
) -> ControlFlow<(T, Cow<'a, [u8]>)> {
    // Gives the candidate back when `visit` goes on, so the decoded form is offered by value
    // and still at hand for the repairs made from it.
    let mut offer = |repair, candidate: Cow<'a, [u8]>| match visit(repair, &candidate) {
        ControlFlow::Break(found) => ControlFlow::Break((found, candidate)),
        ControlFlow::Continue(()) => ControlFlow::Continue(candidate),
    };
    let received = received.as_bytes();
    // Our own encoding leaves neither `/` nor `?` in the target segment.
    let client_decoded = memchr::memchr2(b'/', b'?', received).is_some();
    let has_slash = client_decoded && memchr::memchr(b'/', received).is_some();

    // A client-decoded target is offered before it is decoded again, so a 139 mail link that
    // verifies as received is never decoded.
    let mut decoded = if !client_decoded {
        let (decoded, lower_case) = target::decode_once_noting_case(received);
        // Decoding ignores the case of hex digits, so this candidate also recovers a link whose
        // escapes a proxy wrote in lower case; we only ever write upper case, so that is the
        // repair to record.
        let repair = if lower_case {
            Repair::LowerCaseHex
        } else {
            Repair::AsReceived
        };
        offer(repair, Cow::Owned(decoded))?.into_owned()
    } else {
        offer(Repair::DecodedOnce, Cow::Borrowed(received))?;
        target::decode_once(received)
    };
    if has_slash {
        decoded = offer(Repair::SlashDecoded, Cow::Owned(decoded))?.into_owned();
    }
    // The received form is a target only if the client decoded our layer; otherwise it is
    // still in our encoding, which no signed target ever is.
    let received_form = client_decoded.then_some(received);
    for form in [received_form, Some(&decoded[..])].into_iter().flatten() {
        if target::has_lower_case_escape(form) {
            offer(
                Repair::LowerCaseHex,
                target::upper_case_escapes(form).into(),
            )?;
        }
    }
    for form in [received, &decoded] {
        if let Some(repaired) = restore_merged_slashes(form) {
            offer(Repair::MergedSlashes, repaired.into())?;
        }
    }
    // Encoding once more turns every `%` into `%25` but adds no `/` or `?`: a client-decoded
    // target is not double-encoded.
    if !client_decoded && memchr::memmem::find(received, b"%25").is_some() {
        offer(
            Repair::ExtraPercentLayer,
            target::decode_once(&decoded).into(),
        )?;
    }
    ControlFlow::Continue(())
}

/// Puts back the `//` after `http:` or `https:` that a client merged into `/`, and the `/` of
/// an empty path that was merged into the `/` before our version segment: what a browser's
/// URL parser would do. `None` when there is nothing to restore.
fn restore_merged_slashes(bytes: &[u8]) -> Option<Vec<u8>> {
    let scheme = [&b"https:"[..], b"http:"]
        .into_iter()
        .find(|scheme| bytes.starts_with(scheme))?;
    let rest = &bytes[scheme.len()..];
    let authority_and_path = rest
        .strip_prefix(b"//")
        .or_else(|| rest.strip_prefix(b"/"))?;
    let mut restored = Vec::with_capacity(bytes.len() + 2);
    restored.extend_from_slice(scheme);
    restored.extend_from_slice(b"//");
    restored.extend_from_slice(authority_and_path);
    if !authority_and_path
        .iter()
        .any(|&b| matches!(b, b'/' | b'?' | b'#'))
    {
        restored.push(b'/');
    }
    (restored != bytes).then_some(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(received: &str) -> Vec<(Repair, String)> {
        let mut candidates = Vec::new();
        let _: ControlFlow<((), _)> = try_candidates(received, |repair, bytes| {
            candidates.push((repair, String::from_utf8_lossy(bytes).into_owned()));
            ControlFlow::Continue(())
        });
        candidates
    }

    /// The candidate `visit` breaks on comes back with what it broke with.
    #[test]
    fn the_candidate_broken_on_is_returned() {
        for received in [
            "https:%2F%2Fa.example%2F",
            "https://a.example/p?q",
            "https:/a.example/p",
            "https:%2f%2fa.example%2f%25c3%25A4",
        ] {
            for (index, (_, expected)) in all(received).into_iter().enumerate() {
                let mut offered = 0;
                let found = try_candidates(received, |repair, _| {
                    offered += 1;
                    if offered > index {
                        ControlFlow::Break(repair)
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                let ControlFlow::Break((_, candidate)) = found else {
                    panic!("{received}: candidate {index} was not broken on");
                };
                assert_eq!(candidate, expected.as_bytes(), "{received}: {index}");
            }
        }
    }

    #[test]
    fn canonical_target_is_decoded_first() {
        let candidates = all("https:%2F%2Fa.example%2Fp%3Fq=1");
        assert_eq!(
            candidates[0],
            (Repair::AsReceived, "https://a.example/p?q=1".to_owned())
        );
    }

    #[test]
    fn client_decoded_target_is_taken_verbatim_first() {
        let candidates = all("https://a.example/p?q=a%40b");
        assert_eq!(
            candidates[0],
            (
                Repair::DecodedOnce,
                "https://a.example/p?q=a%40b".to_owned()
            )
        );
        assert_eq!(
            candidates[1],
            (Repair::SlashDecoded, "https://a.example/p?q=a@b".to_owned())
        );
    }

    #[test]
    fn merged_slashes_come_back() {
        let candidates = all("https:/a.example/p");
        assert!(candidates.contains(&(Repair::MergedSlashes, "https://a.example/p".to_owned())));
    }

    #[test]
    fn merged_slashes_restore_only_the_scheme_and_an_empty_path() {
        assert_eq!(
            restore_merged_slashes(b"https:/a.example/p"),
            Some(b"https://a.example/p".to_vec())
        );
        assert_eq!(
            restore_merged_slashes(b"http:/a.example"),
            Some(b"http://a.example/".to_vec())
        );
        assert_eq!(restore_merged_slashes(b"https://a.example?q"), None);
        assert_eq!(restore_merged_slashes(b"https://a.example/p"), None);
        assert_eq!(restore_merged_slashes(b"ftp:/a.example/p"), None);
    }

    #[test]
    fn lower_case_hex_and_extra_layers() {
        let candidates = all("https:%2f%2fa.example%2f%25c3%25a4");
        assert!(candidates.contains(&(Repair::LowerCaseHex, "https://a.example/%C3%A4".to_owned())));
        let candidates = all("https%253A%252F%252Fa.example%252F");
        assert!(candidates.contains(&(Repair::ExtraPercentLayer, "https://a.example/".to_owned())));
    }

    #[test]
    fn never_more_than_the_bound() {
        let hostile = "https:/a.example/%2f%25%3f?x".repeat(200);
        assert!(all(&hostile).len() <= MAX_CANDIDATES);
    }

    #[test]
    fn labels_are_distinct() {
        let repairs = [
            Repair::AsReceived,
            Repair::DecodedOnce,
            Repair::SlashDecoded,
            Repair::MergedSlashes,
            Repair::LowerCaseHex,
            Repair::ExtraPercentLayer,
        ];
        let mut labels: Vec<_> = repairs
            .iter()
            .flat_map(|r| [r.as_str(), r.as_str_with_trailing_junk()])
            .collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), 12);
    }
}
