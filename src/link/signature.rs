//! The MAC of a link: HMAC-SHA256 over a domain-separated, length-prefixed tuple of every
//! field the link carries, truncated to 128 bits and written in base64url.
//!
//! ```text
//! "mailtrack-link" 0x00 | kind | version u32 | kid u32 | len+message_id
//!   | tag count u32 | (len+key len+value)* | len+target
//! ```
//!
//! Every variable field is length-prefixed (u32, big-endian), so no two different links can
//! feed the same bytes to the HMAC.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

use super::key_ring::Key;
use super::tags::LinkTags;
use super::{LinkKind, MessageId, FORMAT_VERSION};

/// Bytes of HMAC-SHA256 kept in a link: 128 bits, the contract's minimum, which keeps
/// links short while leaving forgery at 2^-128 per attempt.
pub const MAC_BYTES: usize = 16;

/// Length of the MAC in base64url without padding.
pub const MAC_CHARS: usize = 22;

const DOMAIN: &[u8] = b"mailtrack-link\0";

/// The fields a MAC covers, apart from the target, which is fed separately so the decoder can
/// try several candidate targets against one prepared prefix.
pub struct SignedFields<'a> {
    /// Click or open.
    pub kind: LinkKind,
    /// The message id.
    pub message_id: &'a str,
    /// The link tags.
    pub tags: &'a LinkTags,
}

/// An HMAC context with every field but the target already fed in.
#[derive(Clone)]
pub struct MacPrefix {
    context: hmac::Context,
}

impl MacPrefix {
    /// Prepares the MAC of `fields` under `key`.
    pub fn new(key: &Key, fields: &SignedFields<'_>) -> MacPrefix {
        // Serialised first and fed in one update: many small updates cost more than the
        // hashing itself at these sizes.
        let mut prefix = Vec::with_capacity(64 + fields.message_id.len() + fields.tags.len() * 32);
        prefix.extend_from_slice(DOMAIN);
        prefix.push(match fields.kind {
            LinkKind::Click => b'C',
            LinkKind::Open => b'O',
        });
        prefix.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        prefix.extend_from_slice(&key.id().to_be_bytes());
        push_prefixed(&mut prefix, fields.message_id.as_bytes());
        prefix.extend_from_slice(&(fields.tags.len() as u32).to_be_bytes());
        for (tag_key, tag_value) in fields.tags.iter() {
            push_prefixed(&mut prefix, tag_key.as_bytes());
            push_prefixed(&mut prefix, tag_value.as_bytes());
        }
        let mut context = hmac::Context::with_key(key.hmac());
        context.update(&prefix);
        MacPrefix { context }
    }

    /// The truncated MAC over the prefix and `target`.
    pub fn mac(&self, target: &[u8]) -> [u8; MAC_BYTES] {
        let mut context = self.context.clone();
        update_prefixed(&mut context, target);
        let tag = context.sign();
        let mut mac = [0u8; MAC_BYTES];
        mac.copy_from_slice(&tag.as_ref()[..MAC_BYTES]);
        mac
    }

    /// Whether `mac` is the MAC of the prefix and `target`, compared in constant time.
    pub fn verifies(&self, target: &[u8], mac: &[u8; MAC_BYTES]) -> bool {
        // Fold every byte's difference so the time taken does not depend on where the first
        // mismatch is.
        let expected = self.mac(target);
        expected
            .iter()
            .zip(mac)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
    }
}

// Every field is bounded by the 8 KiB request-target cap long before u32 overflows.
fn update_prefixed(context: &mut hmac::Context, bytes: &[u8]) {
    context.update(&(bytes.len() as u32).to_be_bytes());
    context.update(bytes);
}

fn push_prefixed(buffer: &mut Vec<u8>, bytes: &[u8]) {
    buffer.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    buffer.extend_from_slice(bytes);
}

/// Writes a MAC in base64url without padding.
pub fn encode_mac(mac: &[u8; MAC_BYTES], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(mac, out);
}

/// Reads a MAC written by [`encode_mac`]; anything of another length is refused.
pub fn decode_mac(text: &str) -> Option<[u8; MAC_BYTES]> {
    if text.len() != MAC_CHARS {
        return None;
    }
    let mut mac = [0u8; MAC_BYTES];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut mac) {
        Ok(MAC_BYTES) => Some(mac),
        _ => None,
    }
}

/// The MAC of an open link for `message_id`, used by the signer.
pub(crate) fn open_fields(message_id: &MessageId) -> SignedFields<'_> {
    static NO_TAGS: LinkTags = LinkTags::EMPTY;
    SignedFields {
        kind: LinkKind::Open,
        message_id: message_id.as_str(),
        tags: &NO_TAGS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::key_ring::tests::test_ring;

    #[test]
    fn every_field_changes_the_mac() {
        let ring = test_ring();
        let key = ring.signing_key();
        let tags = LinkTags::parse("a:b").unwrap();
        let base = SignedFields {
            kind: LinkKind::Click,
            message_id: "m1",
            tags: &tags,
        };
        let mac = MacPrefix::new(key, &base).mac(b"https://a.example/");
        let no_tags = LinkTags::new();
        let variants = [
            MacPrefix::new(
                key,
                &SignedFields {
                    kind: LinkKind::Open,
                    ..base
                },
            ),
            MacPrefix::new(
                key,
                &SignedFields {
                    message_id: "m2",
                    ..base
                },
            ),
            MacPrefix::new(
                key,
                &SignedFields {
                    tags: &no_tags,
                    ..base
                },
            ),
            MacPrefix::new(ring.get(1).unwrap(), &base),
        ];
        for prefix in &variants {
            assert!(!prefix.verifies(b"https://a.example/", &mac));
        }
        let prefix = MacPrefix::new(key, &base);
        assert!(prefix.verifies(b"https://a.example/", &mac));
        assert!(!prefix.verifies(b"https://a.example/x", &mac));
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        let ring = test_ring();
        let key = ring.signing_key();
        let tags_ab = LinkTags::parse("a:bc").unwrap();
        let tags_abc = LinkTags::parse("ab:c").unwrap();
        let fields = |tags| SignedFields {
            kind: LinkKind::Click,
            message_id: "m",
            tags,
        };
        assert_ne!(
            MacPrefix::new(key, &fields(&tags_ab)).mac(b"t"),
            MacPrefix::new(key, &fields(&tags_abc)).mac(b"t")
        );
    }

    #[test]
    fn mac_text_is_22_base64url_characters() {
        let mut text = String::new();
        encode_mac(&[0xfb; MAC_BYTES], &mut text);
        assert_eq!(text.len(), MAC_CHARS);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(decode_mac(&text), Some([0xfb; MAC_BYTES]));
        assert_eq!(decode_mac(&text[1..]), None);
        assert_eq!(decode_mac(&format!("{text}A")), None);
        assert_eq!(decode_mac(&text.replace('-', "+")), None);
    }
}
