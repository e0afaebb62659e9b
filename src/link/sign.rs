//! Writing tracked links: [`LinkSigner`].

use std::fmt::Write as _;
use std::sync::Arc;

use url::Url;

use super::key_ring::KeyRing;
use super::signature::{encode_mac, MacPrefix, SignedFields};
use super::stamp::MessageStamp;
use super::tags::LinkTags;
use super::target::{self, TargetError};
use super::{version, LinkKind, MessageId};

/// The link tags of a pixel, which has none.
static NO_TAGS: LinkTags = LinkTags::EMPTY;

/// Writes click, open and unsubscribe links for one tracking domain, signed with the ring's
/// active key.
///
/// Every link of a message carries its [`MessageStamp`]: the message id and, in version 2,
/// the send time and the message tags.
#[derive(Debug, Clone)]
pub struct LinkSigner {
    /// The tracking domain's origin, `https://track.example.com`, with no trailing slash.
    origin: String,
    ring: Arc<KeyRing>,
}

/// Why a link could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The destination is not a trackable URL.
    #[error("{url:?}: {reason}")]
    Target {
        /// The destination as given.
        url: String,
        /// Why it cannot be tracked.
        reason: TargetError,
    },
    /// The tracking base URL is not just a scheme and host.
    #[error(
        "tracking base URL {0:?} must be http(s)://host[:port] with no path, query or fragment"
    )]
    BadBaseUrl(String),
    /// An unsubscribe link was asked for with a version 1 stamp: the unsubscribe link exists
    /// only from version 2, so that every one carries its send time.
    #[error("message {0}: an unsubscribe link needs a version 2 stamp (with a send time)")]
    UnsubscribeNeedsVersion2(String),
}

impl LinkSigner {
    /// A signer for the tracking domain `base_url` (scheme, host and optional port).
    pub fn new(base_url: &Url, ring: Arc<KeyRing>) -> Result<LinkSigner, SignError> {
        let bad = || SignError::BadBaseUrl(base_url.to_string());
        let plain = matches!(base_url.scheme(), "http" | "https")
            && base_url.host().is_some()
            && base_url.path() == "/"
            && base_url.query().is_none()
            && base_url.fragment().is_none()
            && base_url.username().is_empty()
            && base_url.password().is_none();
        if !plain {
            return Err(bad());
        }
        Ok(LinkSigner {
            origin: base_url.origin().ascii_serialization(),
            ring,
        })
    }

    /// The tracked click link for `url`, with the link's own `tags`.
    ///
    /// `url` is normalised as a browser would before it is signed, so the redirect goes
    /// exactly where the original link went.
    pub fn click_url(
        &self,
        url: &str,
        stamp: &MessageStamp,
        tags: &LinkTags,
    ) -> Result<String, SignError> {
        let target = target::normalize(url).map_err(|reason| SignError::Target {
            url: url.to_owned(),
            reason,
        })?;
        Ok(self.click_url_for_normalized(&target, stamp, tags))
    }

    /// The tracked click link for a target already normalised by [`target::normalize`].
    pub fn click_url_for_normalized(
        &self,
        target: &str,
        stamp: &MessageStamp,
        tags: &LinkTags,
    ) -> String {
        let key = self.ring.signing_key();
        let fields = SignedFields::new(LinkKind::Click, stamp, tags);
        let mac = MacPrefix::new(key, &fields).mac(target.as_bytes());

        let mut link = String::with_capacity(self.origin.len() + target.len() * 3 / 2 + 96);
        link.push_str(&self.origin);
        link.push_str(LinkKind::Click.route());
        target::encode_into(target, &mut link);
        link.push('/');
        version::write(stamp, tags, &mut link);
        link.push('/');
        self.push_tail(&mut link, stamp.id(), &mac, key.id());
        link
    }

    /// The open pixel's URL for the message `stamp` describes.
    ///
    /// A version 2 pixel carries the version segment before the message id, without link
    /// tags; a version 1 pixel has none.
    pub fn open_url(&self, stamp: &MessageStamp) -> String {
        let key = self.ring.signing_key();
        let fields = SignedFields::new(LinkKind::Open, stamp, &NO_TAGS);
        let mac = MacPrefix::new(key, &fields).mac(b"");
        let mut link = String::with_capacity(self.origin.len() + 96);
        link.push_str(&self.origin);
        link.push_str(LinkKind::Open.route());
        if stamp.version() > 1 {
            version::write(stamp, &NO_TAGS, &mut link);
            link.push('/');
        }
        self.push_tail(&mut link, stamp.id(), &mac, key.id());
        link
    }

    /// The one-click unsubscribe link (RFC 8058) for the message `stamp` describes:
    /// `/US0/2~{send time}[~{key}={value}]*/{message_id}/{mac}={kid}`, the pixel's layout
    /// under its own route and kind byte.
    ///
    /// Version 2 only: a version 1 stamp is refused, so that every unsubscribe link carries
    /// its send time (and a scanner's quick GET can be told from a person's).
    pub fn unsubscribe_url(&self, stamp: &MessageStamp) -> Result<String, SignError> {
        if stamp.version() < 2 {
            return Err(SignError::UnsubscribeNeedsVersion2(
                stamp.id().as_str().to_owned(),
            ));
        }
        let key = self.ring.signing_key();
        let fields = SignedFields::new(LinkKind::Unsubscribe, stamp, &NO_TAGS);
        let mac = MacPrefix::new(key, &fields).mac(b"");
        let mut link = String::with_capacity(self.origin.len() + 96);
        link.push_str(&self.origin);
        link.push_str(LinkKind::Unsubscribe.route());
        version::write(stamp, &NO_TAGS, &mut link);
        link.push('/');
        self.push_tail(&mut link, stamp.id(), &mac, key.id());
        Ok(link)
    }

    /// The tracking domain's origin, as links start.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Appends `{message_id}/{mac}={kid}`.
    fn push_tail(&self, link: &mut String, message_id: &MessageId, mac: &[u8; 16], kid: u32) {
        link.push_str(message_id.as_str());
        link.push('/');
        encode_mac(mac, link);
        // Writing to a String cannot fail.
        let _ = write!(link, "={kid}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::link::key_ring::tests::test_ring;
    use crate::link::SendTime;

    fn v2(id: &str, message_tags: &str) -> MessageStamp {
        MessageStamp::new(
            MessageId::new(id).unwrap(),
            SendTime::from_unix_seconds(1_796_227_200).unwrap(),
            LinkTags::parse(message_tags).unwrap(),
        )
    }

    pub(crate) fn test_signer() -> LinkSigner {
        let base = Url::parse("https://track.example.com").unwrap();
        LinkSigner::new(&base, Arc::new(test_ring())).unwrap()
    }

    #[test]
    fn click_link_has_the_contract_layout() {
        let signer = test_signer();
        let v1 = MessageStamp::version_1(MessageId::new("msg-1").unwrap());
        let cases = [
            (v1, "/1/msg-1/"),
            (v2("msg-1", ""), "/2~tpfds0/msg-1/"),
            (
                v2("msg-1", "campaign:spring"),
                "/2~tpfds0~campaign=spring/msg-1/",
            ),
        ];
        for (stamp, segments) in cases {
            let link = signer
                .click_url("https://a.example/p?q=1&r=2#top", &stamp, &LinkTags::new())
                .unwrap();
            let rest = link
                .strip_prefix(
                    "https://track.example.com/CL0/https:%2F%2Fa.example%2Fp%3Fq=1%26r=2%23top",
                )
                .and_then(|rest| rest.strip_prefix(segments))
                .unwrap_or_else(|| panic!("unexpected layout: {link}"));
            let (mac, kid) = rest.split_once('=').unwrap();
            assert_eq!(mac.len(), 22);
            assert_eq!(kid, "2");
        }
    }

    /// The bytes version 2 adds to a click link over version 1, as docs/link-contract.md
    /// states them: 7 for the send time, and each message tag's `~key=value`.
    #[test]
    fn version_2_adds_the_documented_bytes() {
        let signer = test_signer();
        let v1 = MessageStamp::version_1(MessageId::new("msg-1").unwrap());
        let len = |stamp: &MessageStamp| {
            signer
                .click_url(
                    "https://a.example/",
                    stamp,
                    &LinkTags::parse("pos:1").unwrap(),
                )
                .unwrap()
                .len()
        };
        assert_eq!(len(&v2("msg-1", "")) - len(&v1), 7);
        assert_eq!(len(&v2("msg-1", "campaign:spring")) - len(&v1), 7 + 16);
        let open_len = |stamp: &MessageStamp| signer.open_url(stamp).len();
        assert_eq!(open_len(&v2("msg-1", "")) - open_len(&v1), 9);
        assert_eq!(
            open_len(&v2("msg-1", "campaign:spring")) - open_len(&v1),
            9 + 16
        );
    }

    #[test]
    fn tags_ride_in_the_version_segment() {
        let signer = test_signer();
        let tags = LinkTags::parse("campaign:spring;variant:b").unwrap();
        let link = signer
            .click_url("https://a.example/", &v2("m", "list:news"), &tags)
            .unwrap();
        assert!(
            link.contains("%2F/2~tpfds0~list=news~campaign:spring~variant:b/m/"),
            "{link}"
        );
    }

    #[test]
    fn open_link_has_the_contract_layout() {
        let signer = test_signer();
        let link = signer.open_url(&MessageStamp::version_1(MessageId::new("msg-1").unwrap()));
        assert!(
            link.starts_with("https://track.example.com/CI0/msg-1/"),
            "{link}"
        );
        assert!(link.ends_with("=2"), "{link}");
        let link = signer.open_url(&v2("msg-1", "campaign:spring"));
        assert!(
            link.starts_with("https://track.example.com/CI0/2~tpfds0~campaign=spring/msg-1/"),
            "{link}"
        );
    }

    #[test]
    fn refuses_untrackable_targets_and_bad_bases() {
        let signer = test_signer();
        let err = signer
            .click_url("ftp://a.example/", &v2("m", ""), &LinkTags::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"ftp://a.example/\": scheme \"ftp\" is not tracked; only http and https are"
        );
        for base in [
            "https://t.example/path",
            "ftp://t.example",
            "https://t.example/?q",
        ] {
            let url = Url::parse(base).unwrap();
            assert!(
                LinkSigner::new(&url, Arc::new(test_ring())).is_err(),
                "{base}"
            );
        }
        let with_port = Url::parse("http://127.0.0.1:8080/").unwrap();
        let signer = LinkSigner::new(&with_port, Arc::new(test_ring())).unwrap();
        assert_eq!(signer.origin(), "http://127.0.0.1:8080");
    }

    /// An unsubscribe link of `stamp` from the fixed signer, as a request-target.
    fn unsubscribe_target(stamp: &MessageStamp) -> String {
        let link = crate::testing::fixed_signer()
            .unsubscribe_url(stamp)
            .unwrap();
        crate::testing::request_target(&link).to_owned()
    }

    fn decoded(request_target: &str) -> crate::link::Decoded {
        crate::link::decode(request_target, &crate::testing::fixed_ring())
    }

    #[test]
    fn unsubscribe_link_round_trips_with_the_pixels_layout() {
        let stamp = crate::testing::stamp_v2("msg-1", "campaign:spring");
        let target = unsubscribe_target(&stamp);
        assert!(
            target.starts_with("/US0/2~tpfds0~campaign=spring/msg-1/"),
            "{target}"
        );
        let crate::link::Decoded::Verified(link) = decoded(&target) else {
            panic!("{target} does not verify");
        };
        assert_eq!(link.kind, LinkKind::Unsubscribe);
        assert_eq!(&link.message_id, stamp.id());
        assert_eq!(link.send_time, stamp.send_time());
        assert_eq!(&link.message_tags, stamp.tags());
        assert!(link.target.is_empty() && link.tags.is_empty());
        // The same parts as the pixel's, apart from the route and the MAC.
        let pixel = crate::testing::fixed_signer().open_url(&stamp);
        let pixel = crate::testing::request_target(&pixel);
        let without_mac = |t: &str| t[5..t.rfind('/').unwrap()].to_owned();
        assert_eq!(without_mac(&target), without_mac(pixel));
        assert_ne!(target[5..], pixel[5..]);
    }

    #[test]
    fn unsubscribe_link_needs_version_2() {
        let v1 = MessageStamp::version_1(MessageId::new("msg-1").unwrap());
        assert_eq!(
            test_signer().unsubscribe_url(&v1),
            Err(SignError::UnsubscribeNeedsVersion2("msg-1".into()))
        );
    }

    #[test]
    fn a_tampered_unsubscribe_link_never_verifies() {
        use crate::link::{Decoded, InvalidReason, UnverifiedReason};
        let stamp = crate::testing::stamp_v2("msg-1", "campaign:spring");
        let target = unsubscribe_target(&stamp);
        let (before_mac, mac_and_kid) = target.rsplit_once('/').unwrap();
        let mut flipped_mac = mac_and_kid.to_owned();
        // The first character carries six bits of the MAC: any other letter changes it.
        let first = if flipped_mac.starts_with('A') {
            "B"
        } else {
            "A"
        };
        flipped_mac.replace_range(..1, first);
        let pixel = crate::testing::fixed_signer().open_url(&stamp);
        let pixel = crate::testing::request_target(&pixel);
        let bad_mac = [
            // The send time, one second later.
            target.replace("/2~tpfds0~", "/2~tpfds1~"),
            // A message tag changed, and one dropped.
            target.replace("=spring", "=autumn"),
            target.replace("~campaign=spring", ""),
            target.replace("/msg-1/", "/msg-2/"),
            format!("{before_mac}/{flipped_mac}"),
            // The pixel's parts and MAC, under /US0/: an open never unsubscribes.
            pixel.replacen("/CI0/", "/US0/", 1),
        ];
        for request in bad_mac {
            match decoded(&request) {
                Decoded::Unverified(link) => {
                    assert_eq!(link.reason, UnverifiedReason::BadMac, "{request}");
                    assert_eq!(link.kind, LinkKind::Unsubscribe, "{request}");
                }
                other => panic!("{request}: {other:?}"),
            }
        }
        // And the reverse: the unsubscribe link's parts are no open.
        let as_open = target.replacen("/US0/", "/CI0/", 1);
        assert!(matches!(decoded(&as_open), Decoded::Unverified(_)));
        let malformed = [
            // No version segment (version 1's layout), a link tag, a bad MAC length.
            format!("/US0/msg-1/{mac_and_kid}"),
            target.replace("~campaign=spring", "~campaign=spring~a:b"),
            format!("{before_mac}/{}", &mac_and_kid[1..]),
            "/US0/".to_owned(),
        ];
        for request in malformed {
            assert!(
                matches!(
                    decoded(&request),
                    Decoded::Invalid(InvalidReason::MalformedUnsubscribe)
                ),
                "{request}: {:?}",
                decoded(&request)
            );
        }
        // A click link's MAC under /US0/ does not verify either.
        let click = crate::testing::fixed_signer()
            .click_url("https://example.com/", &stamp, &LinkTags::new())
            .unwrap();
        let (_, click_mac) = click.rsplit_once('/').unwrap();
        let forged = format!("{before_mac}/{click_mac}");
        assert!(!matches!(decoded(&forged), Decoded::Verified(_)));
    }
}
