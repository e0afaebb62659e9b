//! The MAC of a link: HMAC-SHA256 over a domain-separated, length-prefixed tuple of every
//! field the link carries, truncated to 128 bits and written in base64url.
//!
//! ```text
//! version 1: "mailtrack-link" 0x00 | kind | 1 u32 | kid u32 | len+message_id
//!              | tag count u32 | (len+key len+value)* | len+target
//! version 2: "mailtrack-link" 0x00 | kind | 2 u32 | kid u32 | len+message_id
//!              | send time u64 | message tag count u32 | (len+key len+value)*
//!              | tag count u32 | (len+key len+value)* | len+target
//! ```
//!
//! `kind` is one byte: `C` click, `O` open, `U` unsubscribe. An open and an unsubscribe link
//! carry the same fields (no tags, an empty target), so this byte alone keeps one from
//! verifying as the other.
//!
//! Every variable field is length-prefixed (u32, big-endian), and the version comes before
//! any field in which the two differ, so no two different links can feed the same bytes to
//! the HMAC.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

use super::key_ring::Key;
use super::send_time::SendTime;
use super::stamp::MessageStamp;
use super::tags::LinkTags;
use super::LinkKind;

/// Bytes of HMAC-SHA256 kept in a link: 128 bits, the contract's minimum, which keeps
/// links short while leaving forgery at 2^-128 per attempt.
pub const MAC_BYTES: usize = 16;

/// Length of the MAC in base64url without padding.
pub const MAC_CHARS: usize = 22;

const DOMAIN: &[u8] = b"mailtrack-link\0";

/// The fields a MAC covers, apart from the target, which is fed separately so the decoder can
/// try several candidate targets against one prepared prefix.
#[derive(Debug, Clone, Copy)]
pub struct SignedFields<'a> {
    /// Click, open or unsubscribe.
    pub kind: LinkKind,
    /// The message id.
    pub message_id: &'a str,
    /// The send time: `Some` makes this a version 2 link, whose MAC also covers the message
    /// tags; `None` is version 1.
    pub send_time: Option<SendTime>,
    /// The message tags; empty in version 1, which cannot carry them.
    pub message_tags: &'a LinkTags,
    /// The link tags.
    pub tags: &'a LinkTags,
}

impl<'a> SignedFields<'a> {
    /// The fields of a link of `kind` stamped with `stamp`, carrying `tags`.
    pub fn new(kind: LinkKind, stamp: &'a MessageStamp, tags: &'a LinkTags) -> SignedFields<'a> {
        SignedFields {
            kind,
            message_id: stamp.id().as_str(),
            send_time: stamp.send_time(),
            message_tags: stamp.tags(),
            tags,
        }
    }

    /// The format version these fields are signed in.
    pub fn version(&self) -> u32 {
        match self.send_time {
            None => 1,
            Some(_) => 2,
        }
    }
}

/// An HMAC context with every field but the target already fed in.
#[derive(Clone)]
pub struct MacPrefix {
    context: hmac::Context,
}

impl MacPrefix {
    /// Prepares the MAC of `fields` under `key`.
    pub fn new(key: &Key, fields: &SignedFields<'_>) -> MacPrefix {
        let mut context = hmac::Context::with_key(key.hmac());
        let mut prefix = Gathered::new(&mut context);
        prefix.push(DOMAIN);
        prefix.push(&[match fields.kind {
            LinkKind::Click => b'C',
            LinkKind::Open => b'O',
            LinkKind::Unsubscribe => b'U',
        }]);
        prefix.push(&fields.version().to_be_bytes());
        prefix.push(&key.id().to_be_bytes());
        prefix.push_prefixed(fields.message_id.as_bytes());
        if let Some(send_time) = fields.send_time {
            prefix.push(&send_time.unix_seconds().to_be_bytes());
            prefix.push_tags(fields.message_tags);
        }
        prefix.push_tags(fields.tags);
        prefix.finish();
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

/// Small writes gathered on the stack and fed to an HMAC context in few updates.
///
/// Many small updates cost more than the hashing itself at these sizes, and a heap buffer
/// showed in the decoder's profile. The buffer holds a typical prefix (an SES message id and a
/// few tags) whole.
struct Gathered<'a> {
    context: &'a mut hmac::Context,
    buffer: [u8; 256],
    len: usize,
}

impl<'a> Gathered<'a> {
    fn new(context: &'a mut hmac::Context) -> Gathered<'a> {
        Gathered {
            context,
            buffer: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buffer.len() {
            self.flush();
            if bytes.len() > self.buffer.len() {
                self.context.update(bytes);
                return;
            }
        }
        self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    // Bounded by the 8 KiB request-target cap, like every field.
    fn push_prefixed(&mut self, bytes: &[u8]) {
        self.push(&(bytes.len() as u32).to_be_bytes());
        self.push(bytes);
    }

    /// The tag count, then each key and value length-prefixed.
    fn push_tags(&mut self, tags: &LinkTags) {
        // At most MAX_TAGS.
        self.push(&(tags.len() as u32).to_be_bytes());
        for (tag_key, tag_value) in tags.iter() {
            self.push_prefixed(tag_key.as_bytes());
            self.push_prefixed(tag_value.as_bytes());
        }
    }

    fn flush(&mut self) {
        self.context.update(&self.buffer[..self.len]);
        self.len = 0;
    }

    /// Feeds what is left; until then the context has not seen every byte pushed.
    fn finish(mut self) {
        self.flush();
    }
}

/// Writes a MAC in base64url without padding.
pub fn encode_mac(mac: &[u8; MAC_BYTES], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(mac, out);
}

/// Reads a MAC written by [`encode_mac`]; anything of another length is refused.
///
/// Exactly what `URL_SAFE_NO_PAD` accepts at this length: 22 characters of the base64url
/// alphabet, the last carrying 4 unused bits that must be zero. Written out because the
/// general decoder took about 3% of decoding a link in the decoder's profile.
pub fn decode_mac(text: &str) -> Option<[u8; MAC_BYTES]> {
    let text: &[u8; MAC_CHARS] = text.as_bytes().try_into().ok()?;
    let mut mac = [0u8; MAC_BYTES];
    // Four characters to three bytes, five times; the last two characters make the last byte.
    for (chars, bytes) in text.chunks(4).zip(mac.chunks_mut(3)) {
        let mut bits = 0u32;
        for &c in chars {
            bits = bits << 6 | u32::from(base64url_value(c)?);
        }
        let bits = if chars.len() == 4 {
            bits
        } else if bits & 0xf == 0 {
            bits >> 4
        } else {
            return None;
        };
        let be = bits.to_be_bytes();
        bytes.copy_from_slice(&be[be.len() - bytes.len()..]);
    }
    Some(mac)
}

/// The six bits a base64url character stands for.
fn base64url_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::key_ring::tests::test_ring;

    static NO_TAGS: LinkTags = LinkTags::EMPTY;

    fn sent(seconds: u64) -> Option<SendTime> {
        Some(SendTime::from_unix_seconds(seconds).unwrap())
    }

    #[test]
    fn every_field_changes_the_mac() {
        let ring = test_ring();
        let key = ring.signing_key();
        let tags = LinkTags::parse("a:b").unwrap();
        let message_tags = LinkTags::parse("campaign:spring").unwrap();
        let other_message_tags = LinkTags::parse("campaign:autumn").unwrap();
        let v1 = SignedFields {
            kind: LinkKind::Click,
            message_id: "m1",
            send_time: None,
            message_tags: &NO_TAGS,
            tags: &tags,
        };
        let v2 = SignedFields {
            send_time: sent(1_796_227_200),
            message_tags: &message_tags,
            ..v1
        };
        for base in [v1, v2] {
            let mac = MacPrefix::new(key, &base).mac(b"https://a.example/");
            let mut variants = vec![
                SignedFields {
                    kind: LinkKind::Open,
                    ..base
                },
                SignedFields {
                    kind: LinkKind::Unsubscribe,
                    ..base
                },
                SignedFields {
                    message_id: "m2",
                    ..base
                },
                SignedFields {
                    tags: &NO_TAGS,
                    ..base
                },
            ];
            match base.send_time {
                // A version 1 link read as version 2 at time 0, and the reverse.
                None => variants.push(SignedFields {
                    send_time: sent(0),
                    ..base
                }),
                Some(_) => variants.extend([
                    SignedFields {
                        send_time: None,
                        message_tags: &NO_TAGS,
                        ..base
                    },
                    SignedFields {
                        send_time: sent(1_796_227_201),
                        ..base
                    },
                    SignedFields {
                        message_tags: &other_message_tags,
                        ..base
                    },
                    SignedFields {
                        message_tags: &NO_TAGS,
                        ..base
                    },
                    // The same tag as a link tag, not a message tag.
                    SignedFields {
                        message_tags: &NO_TAGS,
                        tags: &message_tags,
                        ..base
                    },
                ]),
            }
            for fields in &variants {
                let prefix = MacPrefix::new(key, fields);
                assert!(!prefix.verifies(b"https://a.example/", &mac));
            }
            assert!(
                !MacPrefix::new(ring.get(1).unwrap(), &base).verifies(b"https://a.example/", &mac)
            );
            let prefix = MacPrefix::new(key, &base);
            assert!(prefix.verifies(b"https://a.example/", &mac));
            assert!(!prefix.verifies(b"https://a.example/x", &mac));
        }
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
            send_time: None,
            message_tags: &NO_TAGS,
            tags,
        };
        assert_ne!(
            MacPrefix::new(key, &fields(&tags_ab)).mac(b"t"),
            MacPrefix::new(key, &fields(&tags_abc)).mac(b"t")
        );
    }

    fn push_tags(expected: &mut Vec<u8>, tags: &LinkTags) {
        expected.extend_from_slice(&(tags.len() as u32).to_be_bytes());
        for (k, v) in tags.iter() {
            for part in [k, v] {
                expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
                expected.extend_from_slice(part.as_bytes());
            }
        }
    }

    #[test]
    fn prefix_is_the_documented_bytes_however_long_the_fields() {
        let ring = test_ring();
        let key = ring.signing_key();
        let long_id = "m".repeat(128);
        let tags = (0..10)
            .map(|i| format!("k{i}{}:{}", "x".repeat(200), "v".repeat(256)))
            .collect::<Vec<_>>()
            .join(";");
        let tags = LinkTags::parse(&tags).unwrap();
        let message_tags = LinkTags::parse("campaign:spring;list:news").unwrap();
        let cases = [
            ("m1", LinkTags::new(), None, LinkTags::new()),
            (&long_id[..], tags.clone(), None, LinkTags::new()),
            ("m1", LinkTags::new(), sent(1_796_227_200), LinkTags::new()),
            (
                &long_id[..],
                tags,
                sent(super::super::send_time::MAX_SEND_TIME),
                message_tags,
            ),
        ];
        for (message_id, tags, send_time, message_tags) in cases {
            let mut expected = DOMAIN.to_vec();
            expected.push(b'C');
            let version: u32 = if send_time.is_some() { 2 } else { 1 };
            expected.extend_from_slice(&version.to_be_bytes());
            expected.extend_from_slice(&key.id().to_be_bytes());
            expected.extend_from_slice(&(message_id.len() as u32).to_be_bytes());
            expected.extend_from_slice(message_id.as_bytes());
            if let Some(send_time) = send_time {
                expected.extend_from_slice(&send_time.unix_seconds().to_be_bytes());
                push_tags(&mut expected, &message_tags);
            }
            push_tags(&mut expected, &tags);
            expected.extend_from_slice(&3u32.to_be_bytes());
            expected.extend_from_slice(b"t/x");
            let fields = SignedFields {
                kind: LinkKind::Click,
                message_id,
                send_time,
                message_tags: &message_tags,
                tags: &tags,
            };
            let tag = hmac::sign(key.hmac(), &expected);
            assert_eq!(
                MacPrefix::new(key, &fields).mac(b"t/x"),
                tag.as_ref()[..MAC_BYTES]
            );
        }
    }

    #[test]
    fn mac_reading_accepts_exactly_what_the_base64_crate_does() {
        let crate_decode = |text: &str| {
            let mut mac = [0u8; MAC_BYTES];
            match URL_SAFE_NO_PAD.decode_slice(text, &mut mac) {
                Ok(MAC_BYTES) if text.len() == MAC_CHARS => Some(mac),
                _ => None,
            }
        };
        let mut valid = String::new();
        encode_mac(&[0x5a; MAC_BYTES], &mut valid);
        let alphabet = (0u8..=0x7f)
            .chain([0xc3, 0xff])
            .map(char::from)
            .collect::<Vec<_>>();
        let mut texts = vec![valid.clone(), String::new(), format!("{valid}A")];
        for at in 0..MAC_CHARS {
            for &c in &alphabet {
                let mut text = valid.clone();
                text.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
                texts.push(text);
            }
        }
        for mac in [
            [0x00; MAC_BYTES],
            [0xff; MAC_BYTES],
            *b"\x01\x23\x45\x67\x89\xab\xcd\xef\xfe\xdc\xba\x98\x76\x54\x32\x10",
        ] {
            let mut text = String::new();
            encode_mac(&mac, &mut text);
            texts.push(text);
        }
        for text in &texts {
            assert_eq!(decode_mac(text), crate_decode(text), "{text:?}");
        }
        assert!(texts.iter().filter(|t| decode_mac(t).is_some()).count() > 64);
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
