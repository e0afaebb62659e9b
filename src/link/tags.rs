//! Link tags: `ses:tags="k:v;k2:v2"` on an anchor, carried inside the link under its MAC.
//!
//! Tags ride in the version segment, `1~k:v~k2:v2`, so the link keeps a fixed number of
//! trailing segments. Keys and values use SES's tag alphabet, `[A-Za-z0-9_-]`, which no mail
//! client or proxy ever rewrites, so the segment needs no percent-encoding.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The most tags one link carries.
///
/// Every tag lengthens every link it is on; ten covers campaign, variant and the like.
pub const MAX_TAGS: usize = 10;

/// The longest tag key or value, as in SES.
pub const MAX_TAG_LEN: usize = 256;

/// Separates tags from the version and from each other inside the version segment.
const TAG_SEPARATOR: char = '~';

/// Separates a tag's key from its value.
const KEY_VALUE_SEPARATOR: char = ':';

/// The tags of one link, in the order they were written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkTags(Vec<(String, String)>);

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
    pub const EMPTY: LinkTags = LinkTags(Vec::new());

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
                .split_once(KEY_VALUE_SEPARATOR)
                .ok_or_else(|| TagError::MissingColon(tag.to_owned()))?;
            tags.push(key.trim(), value.trim())?;
        }
        Ok(tags)
    }

    /// Adds one tag after checking its key and value.
    pub fn push(&mut self, key: &str, value: &str) -> Result<(), TagError> {
        check_part(key, value, key)?;
        check_part(key, value, value)?;
        if self.0.len() == MAX_TAGS {
            return Err(TagError::TooMany);
        }
        self.0.push((key.to_owned(), value.to_owned()));
        Ok(())
    }

    /// The tags as `(key, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags as SES writes `linkTags`: each key maps to its values, in order.
    pub fn to_map(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in &self.0 {
            map.entry(key.clone()).or_default().push(value.clone());
        }
        map
    }

    /// Writes the version segment: the version, then `~key:value` for each tag.
    pub(crate) fn write_version_segment(&self, version: u32, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{version}");
        for (key, value) in &self.0 {
            out.push(TAG_SEPARATOR);
            out.push_str(key);
            out.push(KEY_VALUE_SEPARATOR);
            out.push_str(value);
        }
    }

    /// Reads a version segment written by [`LinkTags::write_version_segment`].
    ///
    /// Returns `None` unless the segment starts with `version` and every tag is well formed.
    pub(crate) fn read_version_segment(segment: &str, version: u32) -> Option<LinkTags> {
        let mut parts = segment.split(TAG_SEPARATOR);
        if !is_canonical_number(parts.next()?, version) {
            return None;
        }
        let mut tags = LinkTags::new();
        for tag in parts {
            let (key, value) = tag.split_once(KEY_VALUE_SEPARATOR)?;
            tags.push(key, value).ok()?;
        }
        Some(tags)
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
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(TagError::BadCharacter(tag()));
    }
    Ok(())
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
    fn version_segment_round_trips() {
        let tags = LinkTags::parse("a:1;b-c:d_e").unwrap();
        let mut segment = String::new();
        tags.write_version_segment(1, &mut segment);
        assert_eq!(segment, "1~a:1~b-c:d_e");
        assert_eq!(LinkTags::read_version_segment(&segment, 1), Some(tags));
        assert_eq!(
            LinkTags::read_version_segment("1", 1),
            Some(LinkTags::new())
        );
        assert_eq!(LinkTags::read_version_segment("2~a:1", 1), None);
        assert_eq!(LinkTags::read_version_segment("01", 1), None);
        assert_eq!(LinkTags::read_version_segment("+1", 1), None);
        assert_eq!(LinkTags::read_version_segment("1~a", 1), None);
        assert_eq!(LinkTags::read_version_segment("1~a:b c", 1), None);
    }
}
