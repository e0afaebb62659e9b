//! [`MessageStamp`]: what every link of one message carries, whichever link it is.

use super::send_time::SendTime;
use super::tags::LinkTags;
use super::MessageId;

/// The message id, the send time and the message tags (SES's `mail.tags`) that every click
/// link and the pixel of one message carry under their MAC.
///
/// A stamp with a send time signs version 2 links. [`MessageStamp::version_1`] signs links as
/// they were written before version 2, with the message id alone: for tests and for tools that
/// must reproduce old mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStamp {
    /// The message the links are in.
    id: MessageId,
    /// When it was sent; `None` only for version 1.
    send_time: Option<SendTime>,
    /// Its message tags; always empty for version 1, which cannot carry them.
    tags: LinkTags,
}

impl MessageStamp {
    /// The stamp of message `id`, sent at `send_time`, tagged with `tags`: version 2 links.
    pub fn new(id: MessageId, send_time: SendTime, tags: LinkTags) -> MessageStamp {
        MessageStamp {
            id,
            send_time: Some(send_time),
            tags,
        }
    }

    /// The stamp of message `id` as version 1 links carry it: no send time, no message tags.
    pub fn version_1(id: MessageId) -> MessageStamp {
        MessageStamp {
            id,
            send_time: None,
            tags: LinkTags::new(),
        }
    }

    /// The message id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The send time; `None` for a version 1 stamp.
    pub fn send_time(&self) -> Option<SendTime> {
        self.send_time
    }

    /// The message tags; empty for a version 1 stamp.
    pub fn tags(&self) -> &LinkTags {
        &self.tags
    }

    /// The format version the stamp's links are written in: 1 or 2.
    pub fn version(&self) -> u32 {
        match self.send_time {
            None => 1,
            Some(_) => 2,
        }
    }
}
