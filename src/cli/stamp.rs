//! The message's stamp on the command line: `--message-id`, `--send-time` and
//! `--message-tag`, shared by `sign`, `pixel` and `rewrite`.

use mailtrack::link::{LinkTags, MessageStamp, SendTime};

use super::{parse_message_id, Failure};

/// What every link of the message carries.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct StampArgs {
    /// The message the links are sent in.
    #[arg(long, value_name = "ID")]
    message_id: String,
    /// When the message is sent: RFC 3339 (2026-12-02T16:00:00Z) or Unix seconds. Now if
    /// not given.
    #[arg(long, value_name = "TIME")]
    send_time: Option<String>,
    /// A message tag (SES's mail.tags), KEY:VALUE, or several as KEY:VALUE;KEY2:VALUE2;
    /// repeat for more. Every link and the pixel carry them.
    #[arg(long = "message-tag", value_name = "KEY:VALUE")]
    message_tags: Vec<String>,
}

impl StampArgs {
    /// The stamp the arguments describe, or a usage error naming the argument.
    pub(super) fn stamp(&self) -> Result<MessageStamp, Failure> {
        let id = parse_message_id(&self.message_id)?;
        let send_time = match &self.send_time {
            None => SendTime::now(),
            Some(text) => SendTime::parse(text)
                .map_err(|e| Failure::Usage(format!("--send-time {text:?}: {e}")))?,
        };
        let mut tags = LinkTags::new();
        for list in &self.message_tags {
            let bad =
                |e: &dyn std::fmt::Display| Failure::Usage(format!("--message-tag {list:?}: {e}"));
            for (key, value) in LinkTags::parse(list).map_err(|e| bad(&e))?.iter() {
                tags.push(key, value).map_err(|e| bad(&e))?;
            }
        }
        Ok(MessageStamp::new(id, send_time, tags))
    }
}
