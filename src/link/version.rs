//! The version segment: the format version and what that version carries besides the
//! target and the message id.
//!
//! ```text
//! version 1:  1[~{key}:{value}]*                               link tags
//! version 2:  2~{send time}[~{key}={value}]*[~{key}:{value}]*   send time, message tags, link tags
//! ```
//!
//! The send time is base-36 Unix seconds ([`SendTime`]). Message tags are written with `=`,
//! link tags with `:`, and message tags come first; neither character is in the tag alphabet,
//! so the segment splits back into exactly what was written, and only one text reads as a
//! given set of fields. Every character is in the link alphabet (`A-Z a-z 0-9 - _ ~ : =`),
//! none of which a mail client or proxy escapes or decodes.
//!
//! A version 1 open has no version segment at all (`/CI0/{message_id}/{mac}={kid}`); a
//! version 2 open has one, with no link tags: `/CI0/2~{send time}[~{key}={value}]*/{message_id}/…`.
//! The decoder tells them apart by the number of segments, which a message id (no `/`) and a
//! version segment (no `/`) keep fixed.

use super::send_time::SendTime;
use super::stamp::MessageStamp;
use super::tags::{is_canonical_number, LinkTags};

/// Separates the fields of the segment from each other.
const SEPARATOR: u8 = b'~';

/// Separates a message tag's key from its value; link tags use `:`.
pub(crate) const MESSAGE_TAG_SEPARATOR: u8 = b'=';

/// Separates a link tag's key from its value.
const LINK_TAG_SEPARATOR: u8 = b':';

/// What a version segment carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionSegment {
    /// The send time; `None` in version 1.
    pub(crate) send_time: Option<SendTime>,
    /// The message tags; empty in version 1.
    pub(crate) message_tags: LinkTags,
    /// The link tags.
    pub(crate) link_tags: LinkTags,
}

/// Appends the version segment for `stamp`'s version with `link_tags`.
pub(crate) fn write(stamp: &MessageStamp, link_tags: &LinkTags, out: &mut String) {
    match stamp.send_time() {
        None => out.push('1'),
        Some(send_time) => {
            out.push_str("2~");
            send_time.write_base36(out);
            if !stamp.tags().is_empty() {
                out.push(char::from(SEPARATOR));
                stamp.tags().write_joined(MESSAGE_TAG_SEPARATOR, out);
            }
        }
    }
    if !link_tags.is_empty() {
        out.push(char::from(SEPARATOR));
        link_tags.write_joined(LINK_TAG_SEPARATOR, out);
    }
}

/// Reads a segment written by [`write`], in version 1 or 2; `None` for anything else.
pub(crate) fn read(segment: &str) -> Option<VersionSegment> {
    let (number, rest) = split_at_separator(segment);
    if is_canonical_number(number, 1) {
        return Some(VersionSegment {
            send_time: None,
            message_tags: LinkTags::new(),
            link_tags: read_present(rest, LINK_TAG_SEPARATOR)?,
        });
    }
    if !is_canonical_number(number, 2) {
        return None;
    }
    let (send_time, tags) = split_at_separator(rest?);
    let send_time = SendTime::read_base36(send_time)?;
    let (message_tags, link_tags) = match tags {
        None => (LinkTags::new(), LinkTags::new()),
        Some(tags) => {
            let (message, link) = split_message_from_link_tags(tags);
            if message.is_none() && link.is_none() {
                return None;
            }
            (
                read_present(message, MESSAGE_TAG_SEPARATOR)?,
                read_present(link, LINK_TAG_SEPARATOR)?,
            )
        }
    };
    Some(VersionSegment {
        send_time: Some(send_time),
        message_tags,
        link_tags,
    })
}

/// Splits `text` at its first `~`; the rest is `None` when there is none.
fn split_at_separator(text: &str) -> (&str, Option<&str>) {
    match text.bytes().position(|b| b == SEPARATOR) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    }
}

/// Reads tags that are there: `None` (nothing written) is no tags, but an empty text (a `~`
/// with nothing after it) is never written.
fn read_present(text: Option<&str>, separator: u8) -> Option<LinkTags> {
    match text {
        None => Some(LinkTags::new()),
        Some("") => None,
        Some(text) => LinkTags::read_joined(text, separator),
    }
}

/// Splits the tags after the send time at the first tag holding a `:`: before it the message
/// tags, from it the link tags. Either is `None` when there are none.
fn split_message_from_link_tags(tags: &str) -> (Option<&str>, Option<&str>) {
    let mut start = 0;
    for piece in tags.split(char::from(SEPARATOR)) {
        if piece.as_bytes().contains(&LINK_TAG_SEPARATOR) {
            return match start {
                0 => (None, Some(tags)),
                _ => (Some(&tags[..start - 1]), Some(&tags[start..])),
            };
        }
        start += piece.len() + 1;
    }
    (Some(tags), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::MessageId;

    fn stamp(message_tags: &str) -> MessageStamp {
        MessageStamp::new(
            MessageId::new("m").unwrap(),
            SendTime::from_unix_seconds(1_796_227_200).unwrap(),
            LinkTags::parse(message_tags).unwrap(),
        )
    }

    fn written(stamp: &MessageStamp, link_tags: &str) -> String {
        let mut out = String::new();
        write(stamp, &LinkTags::parse(link_tags).unwrap(), &mut out);
        out
    }

    #[test]
    fn both_versions_round_trip() {
        let v1 = MessageStamp::version_1(MessageId::new("m").unwrap());
        let cases = [
            (v1.clone(), "", "1"),
            (v1, "a:1;b-c:d_e", "1~a:1~b-c:d_e"),
            (stamp(""), "", "2~tpfds0"),
            (stamp("campaign:spring"), "", "2~tpfds0~campaign=spring"),
            (stamp(""), "variant:b", "2~tpfds0~variant:b"),
            (
                stamp("campaign:spring;list:news"),
                "variant:b;pos:2",
                "2~tpfds0~campaign=spring~list=news~variant:b~pos:2",
            ),
        ];
        for (stamp, link_tags, text) in cases {
            assert_eq!(written(&stamp, link_tags), text);
            let read = read(text).unwrap_or_else(|| panic!("{text} does not read"));
            assert_eq!(read.send_time, stamp.send_time(), "{text}");
            assert_eq!(&read.message_tags, stamp.tags(), "{text}");
            assert_eq!(
                read.link_tags,
                LinkTags::parse(link_tags).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn only_what_write_makes_reads() {
        for text in [
            "",
            "0",
            "01",
            "3",
            "+1",
            "1~",
            "1~a",
            "1~a=b",
            "1~a:b~",
            "2",
            "2~",
            "2~~a=b",
            "2~TPFDS0",
            "2~0tpfds0",
            "2~tpfds0~",
            "2~tpfds0~a",
            "2~tpfds0~a=b~",
            "2~tpfds0~~a:b",
            // Message tags after a link tag: the one order is enforced.
            "2~tpfds0~a:b~c=d",
            "2~tpfds0~a=b:c",
            "2~tpfds0~a=b=c",
            "2~tpfds0~a b=c",
            "02~tpfds0",
            "2~zzzzzzzz",
        ] {
            assert_eq!(read(text), None, "{text:?}");
        }
    }
}
