//! Helpers shared by the tests, the fuzz targets and the benchmarks: a fixed key ring, the
//! manglings that mail clients and proxies apply to links, and the properties the fuzzers
//! check. Not part of the stable API.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use url::Url;

use crate::link::decode::{decode_counting, DecodeWork};
use crate::link::repair::MAX_CANDIDATES;
use crate::link::{
    decode, Decoded, KeyRing, LinkSigner, LinkTags, MessageId, MessageStamp, SendTime,
    MAX_REQUEST_TARGET,
};

/// A fixed ring: key 1 retired, key 2 active and signing, key 3 revoked.
pub fn fixed_ring() -> KeyRing {
    KeyRing::from_toml(&fixed_ring_toml(), Path::new("fixed-ring.toml"))
        .expect("the fixed ring is valid")
}

/// [`fixed_ring`] as a key file's text, for tests that start the binary.
pub fn fixed_ring_toml() -> String {
    let table = |id: u8, state: &str| {
        use base64::Engine as _;
        // 32 different bytes, different for every id: a repeated byte is refused as no secret.
        let bytes: [u8; 32] =
            std::array::from_fn(|i| id.wrapping_mul(61).wrapping_add(i as u8 * 7));
        let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!("[[key]]\nid = {id}\nsecret = \"{secret}\"\nstate = \"{state}\"\n")
    };
    format!(
        "sign_with = 2\n{}{}{}",
        table(1, "retired"),
        table(2, "active"),
        table(3, "revoked")
    )
}

/// A signer for `https://track.example.com` over [`fixed_ring`].
pub fn fixed_signer() -> LinkSigner {
    let base = Url::parse("https://track.example.com").expect("a valid base URL");
    LinkSigner::new(&base, Arc::new(fixed_ring())).expect("a plain origin")
}

/// The send time the tests sign with: 2026-12-02T16:00:00Z, `tpfds0` in base 36.
pub const FIXED_SEND_TIME: u64 = 1_796_227_200;

/// A version 2 stamp for `message_id`, sent at [`FIXED_SEND_TIME`], with the message tags
/// `message_tags` (`k:v;k2:v2`).
pub fn stamp_v2(message_id: &str, message_tags: &str) -> MessageStamp {
    MessageStamp::new(
        MessageId::new(message_id).expect("a valid message id"),
        SendTime::from_unix_seconds(FIXED_SEND_TIME).expect("a valid send time"),
        LinkTags::parse(message_tags).expect("valid message tags"),
    )
}

/// A version 1 stamp for `message_id`: links as they were signed before version 2.
pub fn stamp_v1(message_id: &str) -> MessageStamp {
    MessageStamp::version_1(MessageId::new(message_id).expect("a valid message id"))
}

/// The request-target of a full link: everything after the origin.
pub fn request_target(link: &str) -> &str {
    let after_scheme = link.split_once("://").map_or(link, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("/", |slash| &after_scheme[slash..])
}

/// A way a mail client, browser or proxy changes a link's path before it reaches us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mangling {
    /// Untouched.
    None,
    /// China Mobile's 139 mail: the path decoded once, then requested by a browser, which
    /// re-encodes what it must and treats the first `?` as the start of the query.
    ClientDecodedOnce,
    /// [`Mangling::ClientDecodedOnce`], with every `//` then merged into `/`.
    DecodedOnceMergedSlashes,
    /// Every escape's hex digits in lower case.
    LowerCaseHex,
    /// A proxy decoded `%2F` and nothing else.
    SlashDecoded,
    /// Percent-encoded once more: `%` became `%25`.
    ExtraPercentLayer,
    /// `)` glued on at the end, as when a link ends a parenthesis in plain text.
    TrailingParenthesis,
    /// `.` glued on at the end.
    TrailingPeriod,
    /// `,` glued on at the end.
    TrailingComma,
    /// `>` glued on at the end, as in `<https://…>`.
    TrailingAngle,
    /// `%3E`, the browser's encoding of a glued-on `>`.
    TrailingEncodedAngle,
}

impl Mangling {
    /// Every mangling, in a fixed order.
    pub const ALL: [Mangling; 11] = [
        Mangling::None,
        Mangling::ClientDecodedOnce,
        Mangling::DecodedOnceMergedSlashes,
        Mangling::LowerCaseHex,
        Mangling::SlashDecoded,
        Mangling::ExtraPercentLayer,
        Mangling::TrailingParenthesis,
        Mangling::TrailingPeriod,
        Mangling::TrailingComma,
        Mangling::TrailingAngle,
        Mangling::TrailingEncodedAngle,
    ];

    /// Applies the mangling to a request-target.
    pub fn apply(self, target: &str) -> String {
        match self {
            Mangling::None => target.to_owned(),
            Mangling::ClientDecodedOnce => browser_request(&decode_once(target)),
            Mangling::DecodedOnceMergedSlashes => {
                browser_request(&merge_slashes(&decode_once(target)))
            }
            Mangling::LowerCaseHex => lower_case_hex(target),
            Mangling::SlashDecoded => target.replace("%2F", "/"),
            Mangling::ExtraPercentLayer => target.replace('%', "%25"),
            Mangling::TrailingParenthesis => format!("{target})"),
            Mangling::TrailingPeriod => format!("{target}."),
            Mangling::TrailingComma => format!("{target},"),
            Mangling::TrailingAngle => format!("{target}>"),
            Mangling::TrailingEncodedAngle => format!("{target}%3E"),
        }
    }
}

fn decode_once(target: &str) -> String {
    percent_encoding::percent_decode_str(target)
        .decode_utf8_lossy()
        .into_owned()
}

fn merge_slashes(path: &str) -> String {
    let mut merged = path.to_owned();
    while merged.contains("//") {
        merged = merged.replace("//", "/");
    }
    merged
}

fn lower_case_hex(target: &str) -> String {
    let mut bytes = target.as_bytes().to_vec();
    for i in 0..bytes.len().saturating_sub(2) {
        if bytes[i] == b'%' {
            bytes[i + 1].make_ascii_lowercase();
            bytes[i + 2].make_ascii_lowercase();
        }
    }
    String::from_utf8(bytes).expect("ASCII case changes keep UTF-8")
}

/// What a browser sends as the request-target for `path` on the tracking domain.
fn browser_request(path: &str) -> String {
    match Url::parse(&format!("https://track.example.com{path}")) {
        Ok(url) => match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        },
        Err(_) => path.to_owned(),
    }
}

/// The decoder's fuzz property, over arbitrary bytes.
///
/// The first byte picks a mode. Mode 0 decodes the rest as a request-target: no panic, work
/// within the bound, and anything verified is a target we would have signed. Other modes read
/// the rest as a URL, sign it in version 1 (mode 1) or 2 (modes 2 and 3, with message tags in
/// 3), mangle it, and decode it: whatever verifies is exactly what was signed, and an
/// untouched link always verifies. The message's pixel (and in version 2 its unsubscribe
/// link), mangled the same way, too.
pub fn check_decoder(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if mode % 4 == 0 {
        check_decode_is_bounded(&text, &shared().1);
    } else {
        let mangling = Mangling::ALL[usize::from(mode / 4) % Mangling::ALL.len()];
        let stamp = match mode % 4 {
            1 => stamp_v1("fuzz-0001"),
            2 => stamp_v2("fuzz-0001", ""),
            _ => stamp_v2("fuzz-0001", "campaign:fuzz;list:news"),
        };
        check_round_trip(&text, &stamp, mangling);
        check_open_round_trip(&stamp, mangling);
        check_unsubscribe_round_trip(&stamp, mangling);
    }
}

/// One signer and ring for the whole fuzzing run: parsing the ring per input would dominate.
fn shared() -> &'static (LinkSigner, KeyRing) {
    static SHARED: OnceLock<(LinkSigner, KeyRing)> = OnceLock::new();
    SHARED.get_or_init(|| (fixed_signer(), fixed_ring()))
}

fn check_decode_is_bounded(request_target: &str, ring: &KeyRing) {
    let mut work = DecodeWork::default();
    let decoded = decode_counting(request_target, ring, &mut work);
    assert!(work.macs <= MAX_CANDIDATES, "{work:?}");
    assert!(
        work.bytes_hashed <= MAX_CANDIDATES * MAX_REQUEST_TARGET,
        "{work:?}"
    );
    if let Decoded::Verified(link) = decoded {
        assert!(link.kind != crate::link::LinkKind::Click || !link.target.is_empty());
        assert!(!link
            .target
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' '));
    }
}

fn check_round_trip(url: &str, stamp: &MessageStamp, mangling: Mangling) {
    let (signer, ring) = shared();
    let tags = LinkTags::parse("campaign:fuzz;variant:a").expect("valid tags");
    let Ok(link) = signer.click_url(url, stamp, &tags) else {
        return;
    };
    let signed_target = crate::link::target::normalize(url).expect("signing normalised it");
    let original = request_target(&link);
    if original.len() > MAX_REQUEST_TARGET {
        return;
    }
    let mangled = mangling.apply(original);
    match decode(&mangled, ring) {
        Decoded::Verified(verified) => {
            assert_eq!(verified.target, signed_target, "{mangling:?}: {mangled}");
            assert_stamped(&verified, stamp);
            assert_eq!(verified.tags, tags);
        }
        other => assert!(
            mangling != Mangling::None,
            "an untouched link must verify: {original} gave {other:?}"
        ),
    }
}

/// The pixel of `stamp`'s message, mangled: it verifies to the stamp whenever it verifies,
/// and always when untouched or only given trailing junk (a pixel has no target to mangle).
fn check_open_round_trip(stamp: &MessageStamp, mangling: Mangling) {
    let (signer, ring) = shared();
    let link = signer.open_url(stamp);
    let mangled = mangling.apply(request_target(&link));
    match decode(&mangled, ring) {
        Decoded::Verified(verified) => {
            assert_eq!(verified.kind, crate::link::LinkKind::Open);
            assert_stamped(&verified, stamp);
            assert!(verified.tags.is_empty() && verified.target.is_empty());
        }
        other => panic!("{mangling:?}: the pixel {mangled} gave {other:?}"),
    }
}

/// The unsubscribe link of `stamp`'s message (version 2 only), mangled: as the pixel, it
/// verifies to the stamp, as an unsubscribe.
fn check_unsubscribe_round_trip(stamp: &MessageStamp, mangling: Mangling) {
    let (signer, ring) = shared();
    let Ok(link) = signer.unsubscribe_url(stamp) else {
        assert_eq!(stamp.version(), 1, "only a version 1 stamp is refused");
        return;
    };
    let mangled = mangling.apply(request_target(&link));
    match decode(&mangled, ring) {
        Decoded::Verified(verified) => {
            assert_eq!(verified.kind, crate::link::LinkKind::Unsubscribe);
            assert_stamped(&verified, stamp);
            assert!(verified.tags.is_empty() && verified.target.is_empty());
        }
        other => panic!("{mangling:?}: the unsubscribe link {mangled} gave {other:?}"),
    }
}

/// The verified link carries exactly `stamp`'s message id, send time and message tags.
fn assert_stamped(verified: &crate::link::VerifiedLink, stamp: &MessageStamp) {
    assert_eq!(&verified.message_id, stamp.id());
    assert_eq!(verified.send_time, stamp.send_time());
    assert_eq!(&verified.message_tags, stamp.tags());
    assert_eq!(verified.version(), stamp.version());
}

/// The rewriter's fuzz property, over arbitrary bytes as HTML.
///
/// The first byte picks the options (URL syntax, pixel placement, a link limit) and the size
/// of the pieces the input is also fed in; the rest is the HTML. Rewriting never panics and
/// only refuses markup lol_html finds ambiguous; every tracked link verifies to its target,
/// message and tags and is in the output; there is exactly one pixel more than in the input;
/// and feeding the input in pieces gives the same output as feeding it whole, as do bytes and
/// a string.
pub fn check_rewriter(data: &[u8]) {
    use crate::rewrite::{rewrite_bytes, rewrite_str, RewriteError};

    let Some((&mode, html)) = data.split_first() else {
        return;
    };
    let options = rewriter_options(mode);
    let whole = match rewrite_bytes(html, &options) {
        Ok(whole) => whole,
        Err(RewriteError::Html(_)) => return,
        Err(e) => panic!("only lol_html may refuse the input: {e}"),
    };
    check_rewritten(html, &whole, &options);

    // The streaming rewriter always looks for the marker in text, and lol_html then writes text
    // back from its UTF-8 decoding; `rewrite_bytes` skips that when there is no marker. So
    // the two agree byte for byte on UTF-8 input, and on what they report for any input.
    let streamed = rewrite_in_pieces(html, html.len().max(1), &options).expect("it rewrote");
    let piece = 1 + usize::from(mode >> 4) * 5;
    let pieces = rewrite_in_pieces(html, piece, &options).expect("it rewrote whole");
    assert_eq!(pieces, streamed, "fed in pieces of {piece}");
    assert_eq!(streamed.report, whole.report);
    if let Ok(text) = std::str::from_utf8(html) {
        assert_eq!(streamed.html, whole.html);
        let as_str = rewrite_str(text, &options).expect("it rewrote as bytes");
        assert_eq!(as_str.html.as_bytes(), whole.html);
    }
}

/// The options a fuzz input's first byte picks.
fn rewriter_options(mode: u8) -> crate::rewrite::RewriteOptions {
    use crate::rewrite::{PixelPlacement, RewriteOptions, UrlSyntax};

    static SIGNER: std::sync::OnceLock<LinkSigner> = std::sync::OnceLock::new();
    let signer = SIGNER.get_or_init(fixed_signer).clone();
    let mut options = RewriteOptions::new(signer, MessageId::new("fuzz-0001").expect("valid"));
    options.send_time = SendTime::from_unix_seconds(FIXED_SEND_TIME).expect("a valid time");
    if mode & 0x10 == 0x10 {
        options.message_tags = LinkTags::parse("campaign:fuzz").expect("valid tags");
    }
    if mode & 1 == 1 {
        options.url_syntax = UrlSyntax::Browser;
    }
    if mode & 2 == 2 {
        options.pixel = PixelPlacement::BodyStart;
    }
    options.max_links = [250, 0, 1, 3][usize::from(mode >> 2) & 3];
    options
}

fn rewrite_in_pieces(
    html: &[u8],
    piece: usize,
    options: &crate::rewrite::RewriteOptions,
) -> Result<crate::rewrite::Rewritten<Vec<u8>>, crate::rewrite::RewriteError> {
    let mut rewriter = crate::rewrite::Rewriter::new(Vec::new(), options);
    for chunk in html.chunks(piece) {
        rewriter.write(chunk)?;
    }
    let (html, report) = rewriter.end()?;
    Ok(crate::rewrite::Rewritten { html, report })
}

/// Every tracked link verifies and is in the output; one pixel was added.
fn check_rewritten(
    input: &[u8],
    rewritten: &crate::rewrite::Rewritten<Vec<u8>>,
    options: &crate::rewrite::RewriteOptions,
) {
    static RING: std::sync::OnceLock<KeyRing> = std::sync::OnceLock::new();
    let ring = RING.get_or_init(fixed_ring);
    let output = String::from_utf8_lossy(&rewritten.html);
    let report = &rewritten.report;
    assert!(report.tracked.len() <= options.max_links);
    for link in &report.tracked {
        match decode(request_target(&link.tracked_url), ring) {
            Decoded::Verified(verified) => {
                assert_eq!(verified.target, link.target);
                assert_stamped(&verified, &options.stamp());
                assert_eq!(verified.tags, link.tags);
            }
            other => panic!("{} did not verify: {other:?}", link.tracked_url),
        }
        let href = format!("\"{}\"", htmlize::escape_attribute(&link.tracked_url));
        assert!(output.contains(&href), "{href} is not in the output");
    }
    let open_url = options.signer.open_url(&options.stamp());
    let before = String::from_utf8_lossy(input).matches(&open_url).count();
    assert_eq!(output.matches(&open_url).count(), before + 1, "one pixel");
}
