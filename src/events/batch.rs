//! A batch of events as JSON lines: the unit the writer commits, every sink takes, and the
//! spool stores in one frame.
//!
//! Each event is serialised once, where it happens (an [`EncodedEvent`]); a batch only puts
//! the lines side by side. The file and stdout sinks and the spool write the lines as they
//! are; the Redis sink sends each line as one stream entry, with the event type and message
//! id beside it for consumers that filter without parsing.

use std::ops::Range;

use serde::Deserialize;

use super::{EncodedEvent, EventType};

/// Events serialised as JSON lines, with where each one is.
///
/// Message ids sit side by side in one string rather than one allocation each: a batch is
/// made for every few hundred events, and allocations were a visible share of its cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Every event's JSON followed by `\n`.
    jsonl: Vec<u8>,
    /// Every event's message id, one after the other.
    message_ids: String,
    /// One per event, in order.
    records: Vec<Record>,
}

/// Where one event sits in a batch, and the fields a stream entry carries beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// The event's JSON in `jsonl`, without its newline.
    json: Range<usize>,
    /// `Open`, `Click` or `Subscription`.
    event_type: &'static str,
    /// The message id in `message_ids`.
    message_id: Range<usize>,
}

/// One event of a batch, as the Redis sink sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The event as JSON.
    pub json: &'a [u8],
    /// `Open`, `Click` or `Subscription`.
    pub event_type: &'a str,
    /// The message id.
    pub message_id: &'a str,
}

/// Why spooled bytes did not read back as a batch. The frame checksum makes this a bug or a
/// disk that returns wrong data, not a crash: torn writes are caught before this.
#[derive(Debug, thiserror::Error)]
#[error("a spooled event is not valid JSON: {0}")]
pub struct BatchError(#[from] serde_json::Error);

/// The two fields of an event that a stream entry repeats, read back from its JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keys {
    event_type: EventType,
    mail: MailKeys,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MailKeys {
    message_id: String,
}

impl Batch {
    /// An empty batch, with room for `capacity` events.
    pub fn with_capacity(capacity: usize) -> Batch {
        Batch {
            jsonl: Vec::with_capacity(capacity * 512),
            message_ids: String::with_capacity(capacity * 32),
            records: Vec::with_capacity(capacity),
        }
    }

    /// Appends `event`.
    pub fn push(&mut self, event: &EncodedEvent) {
        let start = self.jsonl.len();
        self.jsonl.extend_from_slice(event.json());
        let end = self.jsonl.len();
        self.jsonl.push(b'\n');
        self.push_record(start..end, event.event_type(), event.message_id());
    }

    /// The batch whose JSON lines are `jsonl`, as the spool stored it.
    pub fn from_jsonl(jsonl: Vec<u8>) -> Result<Batch, BatchError> {
        let mut records = Vec::new();
        let mut start = 0;
        for line in jsonl.split_inclusive(|&b| b == b'\n') {
            let end = start + line.len() - usize::from(line.ends_with(b"\n"));
            let keys: Keys = serde_json::from_slice(&jsonl[start..end])?;
            records.push((start..end, keys));
            start += line.len();
        }
        let mut batch = Batch {
            jsonl,
            message_ids: String::new(),
            records: Vec::with_capacity(records.len()),
        };
        for (json, keys) in records {
            batch.push_record(json, keys.event_type, &keys.mail.message_id);
        }
        Ok(batch)
    }

    fn push_record(&mut self, json: Range<usize>, event_type: EventType, message_id: &str) {
        let start = self.message_ids.len();
        self.message_ids.push_str(message_id);
        self.records.push(Record {
            json,
            event_type: event_type.as_str(),
            message_id: start..self.message_ids.len(),
        });
    }

    /// The events as JSON lines, each ending in `\n`.
    pub fn jsonl(&self) -> &[u8] {
        &self.jsonl
    }

    /// The events one by one.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.records.iter().map(|record| Entry {
            json: &self.jsonl[record.json.clone()],
            event_type: record.event_type,
            message_id: &self.message_ids[record.message_id.clone()],
        })
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Empties the batch, keeping its memory for the next one.
    pub fn clear(&mut self) {
        self.jsonl.clear();
        self.message_ids.clear();
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::sample::sample_event;

    #[test]
    fn a_batch_reads_back_from_its_lines() {
        let mut batch = Batch::with_capacity(2);
        batch.push(&sample_event("m-1").into());
        batch.push(&sample_event("m-2").into());
        assert_eq!(batch.len(), 2);
        let back = Batch::from_jsonl(batch.jsonl().to_vec()).unwrap();
        assert_eq!(back, batch);
        let entries: Vec<_> = back.entries().collect();
        assert_eq!(entries[1].message_id, "m-2");
        assert_eq!(entries[0].event_type, "Open");
        assert!(entries[0].json.starts_with(b"{\"eventType\":\"Open\""));
        assert!(!entries[0].json.ends_with(b"\n"));
    }
}
