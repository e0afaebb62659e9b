//! The decoder against every repair it promises and every tampering it must refuse.

use std::path::Path;
use std::sync::Arc;

use url::Url;

use super::*;
use crate::link::repair::MAX_CANDIDATES;
use crate::link::LinkSigner;
use crate::link::{MessageStamp, SendTime};
use crate::testing::{
    fixed_ring, fixed_signer, request_target, stamp_v1, stamp_v2, Mangling, FIXED_SEND_TIME,
};

const MESSAGE_ID: &str = "0100018c7f3e1a2b-5a1f2c3d-aaaa-bbbb-cccc-0123456789ab-000000";

/// The message tags of the version 2 links these tests sign.
const MESSAGE_TAGS: &str = "list:news;campaign:winter";

/// The stamp of the version 2 links these tests sign.
fn stamp() -> MessageStamp {
    stamp_v2(MESSAGE_ID, MESSAGE_TAGS)
}

/// The request-target of a click link signed with `stamp`.
fn signed_with(stamp: &MessageStamp, url: &str, tags: &str) -> String {
    let tags = LinkTags::parse(tags).unwrap();
    let link = fixed_signer().click_url(url, stamp, &tags).unwrap();
    request_target(&link).to_owned()
}

/// The request-target of a version 2 click link, with the message tags [`MESSAGE_TAGS`].
fn signed(url: &str, tags: &str) -> String {
    signed_with(&stamp(), url, tags)
}

/// The request-target of a version 1 click link, as mail sent before version 2 holds.
fn signed_v1(url: &str, tags: &str) -> String {
    signed_with(&stamp_v1(MESSAGE_ID), url, tags)
}

/// Asserts that `link` carries the send time and message tags of [`stamp`] (version 2) or
/// none (version 1).
fn assert_stamp(link: &VerifiedLink, version: u32) {
    assert_eq!(link.version(), version);
    match version {
        1 => {
            assert_eq!(link.send_time, None);
            assert!(link.message_tags.is_empty());
        }
        _ => {
            assert_eq!(
                link.send_time,
                SendTime::from_unix_seconds(FIXED_SEND_TIME).ok()
            );
            assert_eq!(link.message_tags, LinkTags::parse(MESSAGE_TAGS).unwrap());
        }
    }
}

fn verified(request_target: &str) -> VerifiedLink {
    match decode(request_target, &fixed_ring()) {
        Decoded::Verified(link) => link,
        other => panic!("{request_target} did not verify: {other:?}"),
    }
}

fn unverified(request_target: &str) -> UnverifiedLink {
    match decode(request_target, &fixed_ring()) {
        Decoded::Unverified(link) => link,
        other => panic!("{request_target} is not unverified: {other:?}"),
    }
}

/// Targets with the characters that clients mangle: escapes, `&`, `+`, `=`, non-ASCII.
const TARGETS: [&str; 6] = [
    "https://example.com/",
    "https://example.com/a/b?x=1&y=2",
    "https://example.com/search?q=a+b%2Bc&lang=de",
    "http://example.com:8080/p%20q/r?next=%2Fhome%3Fa%3D1",
    "https://example.com/caf%C3%A9?name=J%C3%BCrgen&x=%7E",
    "https://bücher.example/ä?ü=1",
];

#[test]
fn every_promised_mangling_is_recovered_for_every_target_in_both_versions() {
    for (version, sign) in [(1, signed_v1 as fn(&str, &str) -> String), (2, signed)] {
        for url in TARGETS {
            let expected = target::normalize(url).unwrap();
            let original = sign(url, "campaign:spring;variant:b");
            for mangling in Mangling::ALL {
                let mangled = mangling.apply(&original);
                let link = verified(&mangled);
                assert_eq!(link.target, expected, "{mangling:?}: {mangled}");
                assert_eq!(link.message_id.as_str(), MESSAGE_ID);
                assert_eq!(
                    link.tags,
                    LinkTags::parse("campaign:spring;variant:b").unwrap()
                );
                assert_eq!(link.key_id, 2);
                assert_stamp(&link, version);
            }
        }
    }
}

#[test]
fn the_china_mobile_139_example_from_the_field() {
    let url = "https://id.example.com/signinverify?code=NZJUK4YMRJST&mail=kkbbzz1%40163.com&name=KOZ-AL00";
    for (version, original) in [(1, signed_v1(url, "")), (2, signed(url, ""))] {
        let tail = original.rsplitn(4, '/').take(3).collect::<Vec<_>>();
        let (mac_and_kid, id, segment) = (tail[0], tail[1], tail[2]);
        assert_eq!(id, MESSAGE_ID);
        let expected_segment = match version {
            1 => "1",
            _ => "2~tpfds0~list=news~campaign=winter",
        };
        assert_eq!(segment, expected_segment);
        // Exactly what 139 mail requests: our path decoded once, `?` now splitting it.
        let as_requested = format!("/CL0/{url}/{segment}/{MESSAGE_ID}/{mac_and_kid}");
        assert_eq!(Mangling::ClientDecodedOnce.apply(&original), as_requested);

        let link = verified(&as_requested);
        assert_eq!(link.target, url);
        assert_eq!(link.repair_label(), "decoded_once");
        assert_stamp(&link, version);
        assert_eq!(verified(&original).repair_label(), "as_received");
    }
}

#[test]
fn each_repair_is_labelled_in_both_versions() {
    for (version, original) in [
        (1, signed_v1("https://example.com/p?a=%C3%A9&b=c", "")),
        (2, signed("https://example.com/p?a=%C3%A9&b=c", "")),
    ] {
        each_repair_is_labelled(&original, version);
    }
}

fn each_repair_is_labelled(original: &str, version: u32) {
    let original = original.to_owned();
    let cases = [
        (Mangling::None, "as_received"),
        (Mangling::ClientDecodedOnce, "decoded_once"),
        (Mangling::DecodedOnceMergedSlashes, "merged_slashes"),
        (Mangling::LowerCaseHex, "lower_case_hex"),
        (Mangling::SlashDecoded, "slash_decoded"),
        (Mangling::ExtraPercentLayer, "extra_percent_layer"),
        (Mangling::TrailingParenthesis, "trailing_junk"),
        (Mangling::TrailingPeriod, "trailing_junk"),
        (Mangling::TrailingComma, "trailing_junk"),
        (Mangling::TrailingAngle, "trailing_junk"),
        (Mangling::TrailingEncodedAngle, "trailing_junk"),
    ];
    for (mangling, label) in cases {
        let link = verified(&mangling.apply(&original));
        assert_eq!(link.repair_label(), label, "{mangling:?}");
        assert_stamp(&link, version);
    }
    // The client decoded once, then a proxy lower-cased the target's own escapes.
    let decoded_then_lowered =
        Mangling::LowerCaseHex.apply(&Mangling::ClientDecodedOnce.apply(&original));
    assert!(
        decoded_then_lowered.contains("%c3%a9"),
        "{decoded_then_lowered}"
    );
    assert_eq!(
        verified(&decoded_then_lowered).repair_label(),
        "lower_case_hex"
    );
    let both = format!("{}).", Mangling::ClientDecodedOnce.apply(&original));
    assert_eq!(verified(&both).repair_label(), "decoded_once+trailing_junk");
    let with_query = format!("{original}?utm_source=scanner");
    assert_eq!(verified(&with_query).repair_label(), "trailing_junk");
    // A proxy that escapes the version segment's `~`, `:` and `=`: the tail is decoded once.
    let (head, tail) = original.split_at(original.rfind("/0100").unwrap());
    let (before_segment, segment) = head.rsplit_once('/').unwrap();
    let escaped = segment
        .replace('~', "%7E")
        .replace(':', "%3A")
        .replace('=', "%3D");
    let link = verified(&format!("{before_segment}/{escaped}{tail}"));
    assert_eq!(link.repair_label(), "as_received");
    assert_stamp(&link, version);
}

#[test]
fn ses_short_routes_are_accepted() {
    let original = signed("https://example.com/x", "");
    let short = original.replacen("/CL0/", "/L0/", 1);
    assert_eq!(verified(&short).target, "https://example.com/x");
}

/// Every single-character change to each part of the link.
fn tamperings(original: &str) -> Vec<String> {
    let mut changed = Vec::new();
    for (i, c) in original.char_indices().skip("/CL0/".len()) {
        let replacement = match c {
            'a' => 'b',
            '0' => '1',
            '=' | '/' | '%' | '~' | ':' => continue,
            _ => 'a',
        };
        let mut tampered = original.to_owned();
        tampered.replace_range(i..i + c.len_utf8(), &replacement.to_string());
        changed.push(tampered);
    }
    changed
}

#[test]
fn no_tampered_field_ever_verifies() {
    let url = "https://example.com/reset?token=abc123&u=42";
    let v1 = signed_v1(url, "campaign:spring");
    let v2 = signed(url, "campaign:spring");
    for tampered in tamperings(&v1).into_iter().chain(tamperings(&v2)) {
        for mangling in [Mangling::None, Mangling::ClientDecodedOnce] {
            let request = mangling.apply(&tampered);
            let decoded = decode(&request, &fixed_ring());
            assert!(
                !matches!(decoded, Decoded::Verified(_)),
                "tampered link verified: {request}"
            );
        }
    }
}

#[test]
fn tampering_by_field() {
    let original = signed("https://example.com/x", "campaign:spring");
    let (head, mac_and_kid) = original.rsplit_once('/').unwrap();
    let (mac, _kid) = mac_and_kid.split_once('=').unwrap();
    let cases = [
        (
            "target",
            original.replace("example.com", "examp1e.com"),
            UnverifiedReason::BadMac,
        ),
        (
            "message id",
            original.replace(MESSAGE_ID, "other-id"),
            UnverifiedReason::BadMac,
        ),
        (
            "tag",
            original.replace("spring", "autumn"),
            UnverifiedReason::BadMac,
        ),
        (
            "tag dropped",
            original.replace("~campaign:spring", ""),
            UnverifiedReason::BadMac,
        ),
        (
            "send time",
            original.replace("~tpfds0~", "~tpfds1~"),
            UnverifiedReason::BadMac,
        ),
        (
            "send time, a second earlier",
            original.replace("~tpfds0~", "~tpfdrz~"),
            UnverifiedReason::BadMac,
        ),
        (
            "send time and message tags dropped: version 1",
            original.replace("/2~tpfds0~list=news~campaign=winter~", "/1~"),
            UnverifiedReason::BadMac,
        ),
        (
            "message tag value",
            original.replace("campaign=winter", "campaign=summer"),
            UnverifiedReason::BadMac,
        ),
        (
            "message tag name",
            original.replace("list=news", "lost=news"),
            UnverifiedReason::BadMac,
        ),
        (
            "message tag dropped",
            original.replace("~list=news", ""),
            UnverifiedReason::BadMac,
        ),
        (
            "message tag added",
            original.replace("~tpfds0~", "~tpfds0~a=b~"),
            UnverifiedReason::BadMac,
        ),
        (
            "message tag made a link tag",
            original.replace("campaign=winter", "campaign:winter"),
            UnverifiedReason::BadMac,
        ),
        (
            "message tags swapped",
            original.replace("list=news~campaign=winter", "campaign=winter~list=news"),
            UnverifiedReason::BadMac,
        ),
        (
            "mac",
            format!("{head}/{}={}", "A".repeat(22), 2),
            UnverifiedReason::BadMac,
        ),
        (
            "key id (retired key)",
            format!("{head}/{mac}=1"),
            UnverifiedReason::BadMac,
        ),
        (
            "key id (revoked key)",
            format!("{head}/{mac}=3"),
            UnverifiedReason::RevokedKey,
        ),
        (
            "key id (unknown key)",
            format!("{head}/{mac}=9"),
            UnverifiedReason::UnknownKey,
        ),
    ];
    for (field, request, reason) in cases {
        let link = unverified(&request);
        assert_eq!(link.reason, reason, "{field}");
        assert!(
            link.target.is_some(),
            "{field}: an interstitial needs a destination"
        );
    }
}

#[test]
fn retired_keys_verify_and_revoked_keys_do_not() {
    let secret = |id: u8| {
        use base64::Engine as _;
        let bytes: [u8; 32] =
            std::array::from_fn(|i| id.wrapping_mul(61).wrapping_add(i as u8 * 7));
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let ring_with = |state_of_1: &str| {
        let text = format!(
            "sign_with = 1\n[[key]]\nid = 1\nsecret = \"{}\"\nstate = \"{state_of_1}\"\n",
            secret(1)
        );
        KeyRing::from_toml(&text, Path::new("k.toml")).unwrap()
    };
    let base = Url::parse("https://track.example.com").unwrap();
    let old_signer = LinkSigner::new(&base, Arc::new(ring_with("active"))).unwrap();
    for stamp in [stamp_v1(MESSAGE_ID), stamp()] {
        let link = old_signer
            .click_url("https://example.com/", &stamp, &LinkTags::new())
            .unwrap();
        a_retired_key_verifies_and_a_revoked_one_does_not(request_target(&link), &secret);
    }
}

fn a_retired_key_verifies_and_a_revoked_one_does_not(target: &str, secret: &dyn Fn(u8) -> String) {
    // The fixed ring holds the same secret as key 1, retired.
    assert!(matches!(decode(target, &fixed_ring()), Decoded::Verified(l) if l.key_id == 1));

    let revoked = {
        let text = format!(
            "[[key]]\nid = 1\nsecret = \"{}\"\nstate = \"revoked\"\n[[key]]\nid = 2\nsecret = \"{}\"\nstate = \"active\"\n",
            secret(1),
            secret(2)
        );
        KeyRing::from_toml(&text, Path::new("k.toml")).unwrap()
    };
    assert!(matches!(
        decode(target, &revoked),
        Decoded::Unverified(UnverifiedLink {
            reason: UnverifiedReason::RevokedKey,
            ..
        })
    ));
}

#[test]
fn a_decoded_hash_loses_the_tail_and_gets_a_best_effort_destination() {
    let original = signed("https://example.com/docs#install", "");
    // The client decodes %23 to '#'; the browser never sends what follows it.
    let decoded_once = Mangling::ClientDecodedOnce.apply(&original);
    assert_eq!(decoded_once, "/CL0/https://example.com/docs");
    let link = unverified(&decoded_once);
    assert_eq!(link.reason, UnverifiedReason::CutShort);
    assert_eq!(link.target.as_deref(), Some("https://example.com/docs"));
    assert_eq!(link.message_id, None);
}

#[test]
fn unreadable_clicks_and_other_paths_are_invalid() {
    let ring = fixed_ring();
    let cases = [
        ("/", InvalidReason::NotALink),
        ("/cl0/https:%2F%2Fexample.com", InvalidReason::NotALink),
        ("/CL0/not-a-url/1/m/x=1", InvalidReason::NoDestination),
        (
            "/CL0/javascript:alert(1)/1/m/x=1",
            InvalidReason::NoDestination,
        ),
        ("/CL0/", InvalidReason::NoDestination),
        ("/CI0/only-an-id", InvalidReason::MalformedOpen),
    ];
    for (request, reason) in cases {
        assert_eq!(
            decode(request, &ring),
            Decoded::Invalid(reason),
            "{request}"
        );
    }
    let long = format!("/CL0/{}", "a".repeat(MAX_REQUEST_TARGET));
    assert_eq!(
        decode(&long, &ring),
        Decoded::Invalid(InvalidReason::TooLong)
    );
}

#[test]
fn open_pixels_verify_and_refuse_tampering_in_both_versions() {
    for (version, stamp) in [(1, stamp_v1(MESSAGE_ID)), (2, stamp())] {
        let link = fixed_signer().open_url(&stamp);
        open_pixel_verifies_and_refuses_tampering(request_target(&link), version);
    }
}

fn open_pixel_verifies_and_refuses_tampering(original: &str, version: u32) {
    let open = verified(original);
    assert_eq!(open.kind, LinkKind::Open);
    assert_eq!(open.message_id.as_str(), MESSAGE_ID);
    assert!(open.target.is_empty());
    assert_stamp(&open, version);
    for mangling in Mangling::ALL {
        assert_stamp(&verified(&mangling.apply(original)), version);
    }

    assert_eq!(
        verified(&format!("{original})")).repair_label(),
        "trailing_junk"
    );
    assert_eq!(
        verified(&original.replacen("/CI0/", "/I0/", 1)).kind,
        LinkKind::Open
    );

    let other_id = original.replace(MESSAGE_ID, "another-message");
    assert_eq!(unverified(&other_id).reason, UnverifiedReason::BadMac);
    // A click's MAC is never accepted for an open, nor the reverse.
    let click = signed("https://example.com/", "");
    let (_, click_mac) = click.rsplit_once('/').unwrap();
    let forged = format!("/CI0/{MESSAGE_ID}/{click_mac}");
    assert_eq!(unverified(&forged).reason, UnverifiedReason::BadMac);
}

#[test]
fn version_2_pixels_refuse_each_tampered_field() {
    let original = fixed_signer().open_url(&stamp());
    let original = request_target(&original);
    assert!(
        original.starts_with(&format!(
            "/CI0/2~tpfds0~list=news~campaign=winter/{MESSAGE_ID}/"
        )),
        "{original}"
    );
    let (_, mac_and_kid) = original.rsplit_once('/').unwrap();
    let bad_mac = [
        original.replace("~tpfds0~", "~tpfds1~"),
        original.replace("=winter", "=summer"),
        original.replace("~list=news", ""),
        original.replace(MESSAGE_ID, "another-message"),
        // Version 1's layout with version 2's MAC.
        format!("/CI0/{MESSAGE_ID}/{mac_and_kid}"),
    ];
    for request in bad_mac {
        assert_eq!(
            unverified(&request).reason,
            UnverifiedReason::BadMac,
            "{request}"
        );
    }
    let malformed = [
        // A link tag, or version 1's segment, on a pixel: never written.
        original.replace("~campaign=winter", "~campaign=winter~a:b"),
        original.replacen("/2~tpfds0~list=news~campaign=winter/", "/1/", 1),
        original.replace("~tpfds0~", "~TPFDS0~"),
        original.replacen("/CI0/", "/CI0/x/", 1),
    ];
    for request in malformed {
        assert_eq!(
            decode(&request, &fixed_ring()),
            Decoded::Invalid(InvalidReason::MalformedOpen),
            "{request}"
        );
    }
    for request in tamperings(original) {
        assert!(
            !matches!(decode(&request, &fixed_ring()), Decoded::Verified(_)),
            "{request}"
        );
    }
}

#[test]
fn non_canonical_key_ids_versions_and_send_times_are_refused() {
    let v1 = signed_v1("https://example.com/", "");
    let v2 = signed("https://example.com/", "");
    let cases = [
        (&v1, "=2", "=02"),
        (&v1, "=2", "=+2"),
        (&v1, "/1/", "/01/"),
        (&v1, "/1/", "/2/"),
        (&v1, "/1/", "/2~tpfds0/"),
        (&v2, "/2~", "/02~"),
        (&v2, "/2~", "/1~"),
        (&v2, "/2~", "/3~"),
        (&v2, "~tpfds0~", "~0tpfds0~"),
        (&v2, "~tpfds0~", "~TPFDS0~"),
        (&v2, "~tpfds0~", "~~"),
        (&v2, "~tpfds0~", "~"),
    ];
    for (original, from, to) in cases {
        assert!(original.contains(from), "{original} has no {from}");
        let changed = original.replacen(from, to, 1);
        assert!(
            !matches!(decode(&changed, &fixed_ring()), Decoded::Verified(_)),
            "{changed}"
        );
    }
}

#[test]
fn hostile_paths_cost_a_bounded_number_of_macs() {
    let ring = fixed_ring();
    let original = signed("https://example.com/", "");
    let (_, tail) = original.split_at(original.find("/2~").unwrap());
    let fillers = [
        "%25",
        "%2f",
        "/",
        "?",
        "https:/",
        "%",
        "a",
        "a%2f%252f%2541?/",
    ];
    for (filler, head) in fillers
        .iter()
        .flat_map(|f| [(f, "https:/"), (f, "https://a.example/")])
    {
        let body = filler.repeat((MAX_REQUEST_TARGET - 200) / filler.len());
        let request = format!("/CL0/{head}{body}{tail}");
        let mut work = DecodeWork::default();
        assert!(!matches!(
            decode_counting(&request, &ring, &mut work),
            Decoded::Verified(_)
        ));
        assert!(work.macs <= MAX_CANDIDATES, "{filler}: {work:?}");
        assert!(work.macs >= 1, "{filler}: the MAC was checked");
    }
}

#[test]
fn verified_targets_never_carry_control_characters() {
    let original = signed(
        "https://example.com/a\r\nLocation: https://evil.example/",
        "",
    );
    let link = verified(&original);
    assert!(
        target::is_safe_location(link.target.as_bytes()),
        "{}",
        link.target
    );
    assert!(!link.target.contains('\n'));
}

/// A tail with no `%` is read as it is; escaping its `=` and `:` sends it through the
/// per-segment decoding instead, which must read the same link.
#[test]
fn an_escaped_tail_reads_like_a_plain_one() {
    let ring = fixed_ring();
    for url in TARGETS {
        let original = signed(url, "campaign:spring;variant:b");
        let tampered = tamperings(&original).into_iter().step_by(9);
        let requests = Mangling::ALL
            .iter()
            .map(|mangling| mangling.apply(&original))
            .chain(tampered);
        for plain in requests {
            for byte in ['=', ':'] {
                let at = plain.rfind(byte).unwrap();
                let escape = if byte == '=' { "%3D" } else { "%3A" };
                let escaped = format!("{}{escape}{}", &plain[..at], &plain[at + 1..]);
                assert_eq!(decode(&escaped, &ring), decode(&plain, &ring), "{escaped}");
            }
        }
    }
}

#[test]
fn only_a_query_after_the_key_id_is_stripped() {
    let original = signed("https://example.com/p?a=1", "");
    assert_eq!(
        verified(&format!("{original}?utm=1&x=2).")).repair_label(),
        "trailing_junk"
    );
    // A `/` after the `?` makes it part of the path: the link's tail is gone.
    let slash_in_query = format!("{original}?next=/home");
    assert_eq!(
        unverified(&slash_in_query).reason,
        UnverifiedReason::NoSignature
    );
    // A `?` that does not follow the key id stays, and the key id no longer reads.
    let (head, mac_and_kid) = original.rsplit_once('/').unwrap();
    let inside = format!("{head}/{}", mac_and_kid.replacen('=', "?=", 1));
    assert!(!matches!(
        decode(&inside, &fixed_ring()),
        Decoded::Verified(_)
    ));
}

#[test]
fn a_link_as_we_wrote_it_costs_one_mac() {
    let original = signed("https://example.com/a/b?x=1&y=%C3%A9", "campaign:spring");
    for mangling in [Mangling::None, Mangling::ClientDecodedOnce] {
        let mut work = DecodeWork::default();
        let request = mangling.apply(&original);
        assert!(matches!(
            decode_counting(&request, &fixed_ring(), &mut work),
            Decoded::Verified(_)
        ));
        assert_eq!(work.macs, 1, "{mangling:?}");
    }
}

#[test]
fn only_links_that_may_have_been_signed_are_offered_an_interstitial() {
    let original = signed("https://example.com/docs", "");
    let (head, mac_and_kid) = original.rsplit_once('/').unwrap();
    let (mac, _kid) = mac_and_kid.split_once('=').unwrap();
    let (before_id, _message_id) = head.rsplit_once('/').unwrap();
    let forged = [
        (
            "no signature at all",
            "/CL0/https:%2F%2Fevil.example%2F".to_owned(),
        ),
        ("an empty MAC", format!("{head}/=2")),
        ("a short MAC", format!("{head}/{}=2", &mac[..21])),
        ("a long MAC", format!("{head}/{mac}A=2")),
        (
            "a malformed message id",
            format!("{before_id}/bad!id/{mac}=2"),
        ),
        ("a bad version segment", original.replacen("/2~", "/7~", 1)),
        (
            "a bad send time",
            original.replacen("~tpfds0~", "~TPFDS0~", 1),
        ),
        ("an unknown key", format!("{head}/{mac}=9")),
        ("a revoked key", format!("{head}/{mac}=3")),
    ];
    for (shape, request) in forged {
        let link = unverified(&request);
        assert!(
            !link.reason.may_have_been_signed(),
            "{shape}: {request} {link:?}"
        );
    }
    assert_eq!(
        decode(&format!("/CL0/{mac}=2"), &fixed_ring()),
        Decoded::Invalid(InvalidReason::NoDestination)
    );
    let shape_of = |request: &str| unverified(request).reason;
    assert_eq!(
        shape_of(&forged_target(&original)),
        UnverifiedReason::BadMac
    );
    assert_eq!(
        shape_of(&format!("{head}/{}=2", "A".repeat(22))),
        UnverifiedReason::BadMac
    );
    assert_eq!(
        shape_of(&format!("{head}/{mac}A=2")),
        UnverifiedReason::MalformedSignature
    );
    assert_eq!(
        shape_of("/CL0/https:%2F%2Fevil.example%2F"),
        UnverifiedReason::NoSignature
    );

    // A real link, cut at the `#` its client decoded from `%23`, may have been ours.
    let cut = Mangling::ClientDecodedOnce.apply(&signed("https://example.com/docs#install", ""));
    let link = unverified(&cut);
    assert_eq!(link.reason, UnverifiedReason::CutShort);
    assert!(link.reason.may_have_been_signed());
    assert_eq!(link.target.as_deref(), Some("https://example.com/docs"));
}

/// `original` with its destination changed: the shape of a signed link, a MAC that fails.
fn forged_target(original: &str) -> String {
    original.replace("example.com", "evil.example")
}
