//! The decoder against every repair it promises and every tampering it must refuse.

use std::path::Path;
use std::sync::Arc;

use url::Url;

use super::*;
use crate::link::repair::MAX_CANDIDATES;
use crate::link::LinkSigner;
use crate::testing::{fixed_ring, fixed_signer, request_target, Mangling};

const MESSAGE_ID: &str = "0100018c7f3e1a2b-5a1f2c3d-aaaa-bbbb-cccc-0123456789ab-000000";

fn message_id() -> MessageId {
    MessageId::new(MESSAGE_ID).unwrap()
}

/// The request-target of a signed click link.
fn signed(url: &str, tags: &str) -> String {
    let tags = LinkTags::parse(tags).unwrap();
    let link = fixed_signer().click_url(url, &message_id(), &tags).unwrap();
    request_target(&link).to_owned()
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
fn every_promised_mangling_is_recovered_for_every_target() {
    for url in TARGETS {
        let expected = target::normalize(url).unwrap();
        let original = signed(url, "campaign:spring;variant:b");
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
        }
    }
}

#[test]
fn the_china_mobile_139_example_from_the_field() {
    let url = "https://id.example.com/signinverify?code=NZJUK4YMRJST&mail=kkbbzz1%40163.com&name=KOZ-AL00";
    let original = signed(url, "");
    let tail = original.rsplitn(3, '/').take(2).collect::<Vec<_>>();
    let (mac_and_kid, id) = (tail[0], tail[1]);
    assert_eq!(id, MESSAGE_ID);
    // Exactly what 139 mail requests: our path decoded once, `?` now splitting it.
    let as_requested = format!("/CL0/{url}/1/{MESSAGE_ID}/{mac_and_kid}");
    assert_eq!(Mangling::ClientDecodedOnce.apply(&original), as_requested);

    let link = verified(&as_requested);
    assert_eq!(link.target, url);
    assert_eq!(link.repair_label(), "decoded_once");
    assert_eq!(verified(&original).repair_label(), "as_received");
}

#[test]
fn each_repair_is_labelled() {
    let original = signed("https://example.com/p?a=%C3%A9&b=c", "");
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
    let original = signed(
        "https://example.com/reset?token=abc123&u=42",
        "campaign:spring",
    );
    for tampered in tamperings(&original) {
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
    let link = old_signer
        .click_url("https://example.com/", &message_id(), &LinkTags::new())
        .unwrap();
    let target = request_target(&link);

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
fn open_pixels_verify_and_refuse_tampering() {
    let link = fixed_signer().open_url(&message_id());
    let original = request_target(&link);
    let open = verified(original);
    assert_eq!(open.kind, LinkKind::Open);
    assert_eq!(open.message_id.as_str(), MESSAGE_ID);
    assert!(open.target.is_empty());

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
fn non_canonical_key_ids_and_versions_are_refused() {
    let original = signed("https://example.com/", "");
    for (from, to) in [
        ("=2", "=02"),
        ("=2", "=+2"),
        ("/1/", "/01/"),
        ("/1/", "/2/"),
    ] {
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
    let (_, tail) = original.split_at(original.find("/1/").unwrap());
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
        ("a bad version segment", original.replacen("/1/", "/7/", 1)),
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
