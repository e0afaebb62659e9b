//! Writing tracked links: [`LinkSigner`].

use std::fmt::Write as _;
use std::sync::Arc;

use url::Url;

use super::key_ring::KeyRing;
use super::signature::{encode_mac, open_fields, MacPrefix, SignedFields};
use super::tags::LinkTags;
use super::target::{self, TargetError};
use super::{LinkKind, MessageId, FORMAT_VERSION};

/// Writes click and open links for one tracking domain, signed with the ring's active key.
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

    /// The tracked click link for `url`.
    ///
    /// `url` is normalised as a browser would before it is signed, so the redirect goes
    /// exactly where the original link went.
    pub fn click_url(
        &self,
        url: &str,
        message_id: &MessageId,
        tags: &LinkTags,
    ) -> Result<String, SignError> {
        let target = target::normalize(url).map_err(|reason| SignError::Target {
            url: url.to_owned(),
            reason,
        })?;
        Ok(self.click_url_for_normalized(&target, message_id, tags))
    }

    /// The tracked click link for a target already normalised by [`target::normalize`].
    pub fn click_url_for_normalized(
        &self,
        target: &str,
        message_id: &MessageId,
        tags: &LinkTags,
    ) -> String {
        let key = self.ring.signing_key();
        let fields = SignedFields {
            kind: LinkKind::Click,
            message_id: message_id.as_str(),
            tags,
        };
        let mac = MacPrefix::new(key, &fields).mac(target.as_bytes());

        let mut link = String::with_capacity(self.origin.len() + target.len() * 3 / 2 + 80);
        link.push_str(&self.origin);
        link.push_str(LinkKind::Click.route());
        target::encode_into(target, &mut link);
        link.push('/');
        tags.write_version_segment(FORMAT_VERSION, &mut link);
        link.push('/');
        self.push_tail(&mut link, message_id, &mac, key.id());
        link
    }

    /// The open pixel's URL for `message_id`.
    pub fn open_url(&self, message_id: &MessageId) -> String {
        let key = self.ring.signing_key();
        let mac = MacPrefix::new(key, &open_fields(message_id)).mac(b"");
        let mut link = String::with_capacity(self.origin.len() + 64);
        link.push_str(&self.origin);
        link.push_str(LinkKind::Open.route());
        self.push_tail(&mut link, message_id, &mac, key.id());
        link
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

    pub(crate) fn test_signer() -> LinkSigner {
        let base = Url::parse("https://track.example.com").unwrap();
        LinkSigner::new(&base, Arc::new(test_ring())).unwrap()
    }

    #[test]
    fn click_link_has_the_contract_layout() {
        let signer = test_signer();
        let id = MessageId::new("msg-1").unwrap();
        let link = signer
            .click_url("https://a.example/p?q=1&r=2#top", &id, &LinkTags::new())
            .unwrap();
        let rest = link
            .strip_prefix("https://track.example.com/CL0/https:%2F%2Fa.example%2Fp%3Fq=1%26r=2%23top/1/msg-1/")
            .unwrap_or_else(|| panic!("unexpected layout: {link}"));
        let (mac, kid) = rest.split_once('=').unwrap();
        assert_eq!(mac.len(), 22);
        assert_eq!(kid, "2");
    }

    #[test]
    fn tags_ride_in_the_version_segment() {
        let signer = test_signer();
        let id = MessageId::new("m").unwrap();
        let tags = LinkTags::parse("campaign:spring;variant:b").unwrap();
        let link = signer.click_url("https://a.example/", &id, &tags).unwrap();
        assert!(
            link.contains("%2F/1~campaign:spring~variant:b/m/"),
            "{link}"
        );
    }

    #[test]
    fn open_link_has_the_contract_layout() {
        let signer = test_signer();
        let link = signer.open_url(&MessageId::new("msg-1").unwrap());
        assert!(
            link.starts_with("https://track.example.com/CI0/msg-1/"),
            "{link}"
        );
        assert!(link.ends_with("=2"), "{link}");
    }

    #[test]
    fn refuses_untrackable_targets_and_bad_bases() {
        let signer = test_signer();
        let id = MessageId::new("m").unwrap();
        let err = signer
            .click_url("ftp://a.example/", &id, &LinkTags::new())
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
}
