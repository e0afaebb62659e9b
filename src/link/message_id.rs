//! The message id that every link carries.

use std::fmt;

/// The longest message id a link may carry.
///
/// SES message ids are 60 characters; 128 leaves room for other senders' ids while keeping
/// links short.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// A message id: 1 to 128 characters of `[A-Za-z0-9._-]`.
///
/// These characters survive every mangling a mail client does to a path, so the id never
/// needs percent-encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

/// Why a message id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageIdError {
    /// The id is the empty string.
    #[error("message id is empty")]
    Empty,
    /// The id is longer than [`MAX_MESSAGE_ID_LEN`].
    #[error("message id is {0} characters long; the limit is {MAX_MESSAGE_ID_LEN}")]
    TooLong(usize),
    /// The id holds a character outside `[A-Za-z0-9._-]`.
    #[error("message id has {0:?} at byte {1}; only A-Z a-z 0-9 . _ - are allowed")]
    BadCharacter(char, usize),
}

impl MessageId {
    /// Validates `id` as a message id.
    pub fn new(id: &str) -> Result<MessageId, MessageIdError> {
        Self::check(id)?;
        Ok(MessageId(id.to_owned()))
    }

    /// Checks `id` without allocating.
    pub fn check(id: &str) -> Result<(), MessageIdError> {
        if id.is_empty() {
            return Err(MessageIdError::Empty);
        }
        if id.len() > MAX_MESSAGE_ID_LEN {
            return Err(MessageIdError::TooLong(id.chars().count()));
        }
        // The alphabet is ASCII, so a valid id is checked byte by byte, with no early exit so
        // that the compiler checks many bytes at once; decoding characters is only needed to
        // name a bad one.
        if id
            .bytes()
            .fold(true, |valid, b| valid & is_message_id_byte(b))
        {
            return Ok(());
        }
        match id.char_indices().find(|&(_, c)| !is_message_id_char(c)) {
            Some((at, c)) => Err(MessageIdError::BadCharacter(c, at)),
            None => Ok(()),
        }
    }

    /// The id as written in the link.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_message_id_char(c: char) -> bool {
    u8::try_from(c).is_ok_and(is_message_id_byte)
}

fn is_message_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for MessageId {
    type Err = MessageIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ses_style_ids() {
        let id = "0100018c7f3e1a2b-5a1f2c3d-aaaa-bbbb-cccc-0123456789ab-000000";
        assert_eq!(MessageId::new(id).unwrap().as_str(), id);
        assert!(MessageId::new("a").is_ok());
        assert!(MessageId::new(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn refuses_empty_long_and_odd_characters() {
        assert_eq!(MessageId::new(""), Err(MessageIdError::Empty));
        assert_eq!(
            MessageId::new(&"x".repeat(129)),
            Err(MessageIdError::TooLong(129))
        );
        assert_eq!(
            MessageId::new("abc/def"),
            Err(MessageIdError::BadCharacter('/', 3))
        );
        assert_eq!(
            MessageId::new("é"),
            Err(MessageIdError::BadCharacter('é', 0))
        );
        assert_eq!(
            MessageId::new("ab€"),
            Err(MessageIdError::BadCharacter('€', 2))
        );
        assert!(MessageId::new("a b").is_err());
        assert!(MessageId::new("a%20b").is_err());
    }
}
