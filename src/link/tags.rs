//! Link tags: `ses:tags="k:v;k2:v2"` on an anchor, carried inside the link under its MAC.
//!
//! Tags ride in the version segment, `1~k:v~k2:v2`, so the link keeps a fixed number of
//! trailing segments. Keys and values use SES's tag alphabet, `[A-Za-z0-9_-]`, which no mail
//! client or proxy ever rewrites, so the segment needs no percent-encoding.

use std::collections::BTreeMap;
use std::fmt;

/// The most tags one link carries.
///
/// Every tag lengthens every link it is on; ten covers campaign, variant and the like.
pub const MAX_TAGS: usize = 10;

/// The longest tag key or value, as in SES.
pub const MAX_TAG_LEN: usize = 256;

/// Separates tags from the version and from each other inside the version segment.
const TAG_SEPARATOR: u8 = b'~';

/// Separates a tag's key from its value.
const KEY_VALUE_SEPARATOR: u8 = b':';

/// The tags of one link, in the order they were written.
///
/// Held as the version segment writes them, `k:v~k2:v2`: one allocation however many tags
/// there are, and the decoder reads a link's tags with one copy. Neither separator is in the
/// tag alphabet, so the text splits back into exactly the tags pushed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LinkTags {
    /// The tags, each `key:value`, joined by `~`.
    written: String,
    /// How many tags `written` holds.
    len: usize,
}

/// Why a tag list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// A tag has no `:` between key and value.
    #[error("tag {0:?} has no ':' between name and value")]
    MissingColon(String),
    /// A key or value is empty or longer than [`MAX_TAG_LEN`].
    #[error("tag {0:?}: name and value must each be 1 to {MAX_TAG_LEN} characters")]
    BadLength(String),
    /// A key or value has a character outside `[A-Za-z0-9_-]`.
    #[error("tag {0:?}: only A-Z a-z 0-9 _ - are allowed in names and values")]
    BadCharacter(String),
    /// More than [`MAX_TAGS`] tags.
    #[error("too many tags; a link carries at most {MAX_TAGS}")]
    TooMany,
}

impl LinkTags {
    /// No tags, as a constant.
    pub const EMPTY: LinkTags = LinkTags {
        written: String::new(),
        len: 0,
    };

    /// No tags.
    pub fn new() -> LinkTags {
        LinkTags::EMPTY
    }

    /// Parses the value of an `ses:tags` attribute: `k:v;k2:v2`, with an optional trailing
    /// `;` and spaces around each tag.
    pub fn parse(list: &str) -> Result<LinkTags, TagError> {
        let mut tags = LinkTags::new();
        for tag in list.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, value) = tag
                .split_once(char::from(KEY_VALUE_SEPARATOR))
                .ok_or_else(|| TagError::MissingColon(tag.to_owned()))?;
            tags.push(key.trim(), value.trim())?;
        }
        Ok(tags)
    }

    /// Adds one tag after checking its key and value.
    pub fn push(&mut self, key: &str, value: &str) -> Result<(), TagError> {
        check_part(key, value, key)?;
        check_part(key, value, value)?;
        if self.len == MAX_TAGS {
            return Err(TagError::TooMany);
        }
        if self.len > 0 {
            self.written.push(char::from(TAG_SEPARATOR));
        }
        self.written.push_str(key);
        self.written.push(char::from(KEY_VALUE_SEPARATOR));
        self.written.push_str(value);
        self.len += 1;
        Ok(())
    }

    /// The tags as `(key, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        // `len` pieces, each checked to hold its `:`, so the fallbacks are never taken.
        let mut rest = self.written.as_str();
        (0..self.len).map(move |_| {
            let (tag, after) = split_at_ascii(rest, TAG_SEPARATOR).unwrap_or((rest, ""));
            rest = after;
            split_at_ascii(tag, KEY_VALUE_SEPARATOR).unwrap_or((tag, ""))
        })
    }

    /// The number of tags.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tags as SES writes `linkTags`: each key maps to its values, in order.
    pub fn to_map(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in self.iter() {
            map.entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
        map
    }

    /// Writes the tags as a link carries them: `key{separator}value`, joined by `~`.
    ///
    /// Link tags are written with `:`; version 2 writes message tags with `=`, so the two
    /// lists can share the version segment and still split apart (see [`super::version`]).
    pub(crate) fn write_joined(&self, separator: u8, out: &mut String) {
        if separator == KEY_VALUE_SEPARATOR {
            out.push_str(&self.written);
            return;
        }
        let at = out.len();
        out.push_str(&self.written);
        // Tag keys and values hold no `:` or other separator, so every `:` is one of ours.
        let replaced = out[at..].replace(
            char::from(KEY_VALUE_SEPARATOR),
            &char::from(separator).to_string(),
        );
        out.truncate(at);
        out.push_str(&replaced);
    }

    /// Reads tags written by [`LinkTags::write_joined`] with the same `separator`.
    ///
    /// Returns `None` unless every tag is well formed; an empty text is no tags.
    pub(crate) fn read_joined(text: &str, separator: u8) -> Option<LinkTags> {
        if text.is_empty() {
            return Some(LinkTags::new());
        }
        // Checked as `push` checks each tag, then kept as written: a checked tag is exactly
        // `key:value`, so this is the text that pushing them one by one builds.
        let mut len = 0;
        for tag in text.as_bytes().split(|&b| b == TAG_SEPARATOR) {
            let at = tag.iter().position(|&b| b == separator)?;
            let (key, value) = (&tag[..at], &tag[at + 1..]);
            if !is_tag_part(key) || !is_tag_part(value) || len == MAX_TAGS {
                return None;
            }
            len += 1;
        }
        let written = if separator == KEY_VALUE_SEPARATOR {
            text.to_owned()
        } else {
            text.replace(char::from(separator), ":")
        };
        Some(LinkTags { written, len })
    }
}

impl fmt::Debug for LinkTags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As a list of pairs, the way the tags read.
        f.debug_tuple("LinkTags")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether `digits` is `number` written in decimal with no sign and no leading zero.
pub(crate) fn is_canonical_number(digits: &str, number: u32) -> bool {
    let canonical = digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'));
    canonical && digits.parse::<u32>().ok() == Some(number)
}

fn check_part(key: &str, value: &str, part: &str) -> Result<(), TagError> {
    let tag = || format!("{key}:{value}");
    if part.is_empty() || part.len() > MAX_TAG_LEN {
        return Err(TagError::BadLength(tag()));
    }
    if !part.bytes().all(is_tag_byte) {
        return Err(TagError::BadCharacter(tag()));
    }
    Ok(())
}

/// Whether `part` would pass [`check_part`] as a key or value.
fn is_tag_part(part: &[u8]) -> bool {
    (1..=MAX_TAG_LEN).contains(&part.len()) && part.iter().all(|&b| TAG_BYTES[usize::from(b)])
}

const fn is_tag_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// [`is_tag_byte`] for every byte: one load per byte when the decoder checks a link's tags,
/// where the comparisons showed in its profile.
static TAG_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_tag_byte(b as u8);
        b += 1;
    }
    table
};

/// Splits `text` at the first `separator`, which is ASCII, so both sides are whole characters.
///
/// `str::split_once` with a `char` calls `memcmp` for every match it checks, which showed in
/// the decoder's profile.
fn split_at_ascii(text: &str, separator: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == separator)?;
    Some((&text[..at], &text[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ses_tags_with_repeats_and_trailing_semicolon() {
        let tags = LinkTags::parse("campaign:spring; variant:b;campaign:sale;").unwrap();
        let pairs: Vec<_> = tags.iter().collect();
        assert_eq!(
            pairs,
            [
                ("campaign", "spring"),
                ("variant", "b"),
                ("campaign", "sale")
            ]
        );
        let map = tags.to_map();
        assert_eq!(map["campaign"], ["spring", "sale"]);
        assert_eq!(map["variant"], ["b"]);
    }

    #[test]
    fn refuses_malformed_tags() {
        assert!(matches!(
            LinkTags::parse("novalue"),
            Err(TagError::MissingColon(_))
        ));
        assert!(matches!(LinkTags::parse("k:"), Err(TagError::BadLength(_))));
        assert!(matches!(
            LinkTags::parse("k:v w"),
            Err(TagError::BadCharacter(_))
        ));
        assert!(matches!(
            LinkTags::parse("k:a~b"),
            Err(TagError::BadCharacter(_))
        ));
        let eleven = (0..11).map(|i| format!("k{i}:v")).collect::<Vec<_>>();
        assert!(matches!(
            LinkTags::parse(&eleven.join(";")),
            Err(TagError::TooMany)
        ));
    }

    #[test]
    fn joined_tags_round_trip_with_either_separator() {
        let tags = LinkTags::parse("a:1;b-c:d_e").unwrap();
        for (separator, text) in [(b':', "a:1~b-c:d_e"), (b'=', "a=1~b-c=d_e")] {
            let mut written = String::from("x");
            tags.write_joined(separator, &mut written);
            assert_eq!(written, format!("x{text}"));
            assert_eq!(LinkTags::read_joined(text, separator), Some(tags.clone()));
        }
        assert_eq!(LinkTags::read_joined("", b':'), Some(LinkTags::new()));
        for bad in ["a", "a:b c", "~", "a:b~", "a:b:c", "a=b", ":b", "a:"] {
            assert_eq!(LinkTags::read_joined(bad, b':'), None, "{bad:?}");
        }
        assert_eq!(LinkTags::read_joined("a:b", b'='), None);
        let ten = (0..10)
            .map(|i| format!("k{i}:v"))
            .collect::<Vec<_>>()
            .join("~");
        assert_eq!(LinkTags::read_joined(&ten, b':').map(|t| t.len()), Some(10));
        assert_eq!(LinkTags::read_joined(&format!("{ten}~k:v"), b':'), None);
    }

    #[test]
    fn read_tags_equal_pushed_tags_and_debug_as_pairs() {
        let mut pushed = LinkTags::new();
        pushed.push("a", "1").unwrap();
        pushed.push("b", "2").unwrap();
        let read = LinkTags::read_joined("a:1~b:2", b':').unwrap();
        assert_eq!(read, pushed);
        assert_eq!(read.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
        assert_ne!(read, LinkTags::parse("a:1").unwrap());
        assert_eq!(LinkTags::new().iter().count(), 0);
        assert_eq!(
            format!("{pushed:?}"),
            r#"LinkTags([("a", "1"), ("b", "2")])"#
        );
    }
}
