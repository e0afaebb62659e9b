//! The spool's on-disk framing: each batch is one frame, and a frame that a crash cut short
//! (or a disk that returned wrong bytes) is detected and skipped, never misread.
//!
//! ```text
//! magic "MTS1" (4 bytes) | payload length (u32 LE) | CRC-32 of payload (u32 LE) | payload
//! ```
//!
//! The payload is the batch's JSON lines. A reader walks frames from the start of a segment
//! and stops at the first one that is incomplete or whose checksum does not match: appends
//! are sequential, so only the tail of a segment can be torn, and whatever follows a bad frame
//! cannot be trusted to start on a frame boundary.

use std::ops::Range;

/// Marks the start of a frame, and the format's version.
const MAGIC: [u8; 4] = *b"MTS1";

/// Magic, length and checksum.
pub(crate) const HEADER_LEN: usize = 12;

/// `payload` as a frame, ready to append.
pub(crate) fn encode(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&MAGIC);
    // A batch is at most a few MiB (batch_max_events events of bounded size), far below 4 GiB.
    let len = u32::try_from(payload.len()).expect("a batch is smaller than 4 GiB");
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The frames in a segment's bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Frames {
    /// Where each good frame's payload is, in order.
    pub(crate) payloads: Vec<Range<usize>>,
    /// How many bytes at the end were skipped: a torn or corrupt frame and what followed it.
    pub(crate) corrupt_bytes: u64,
}

/// Walks the frames of a segment, stopping at the first bad one.
pub(crate) fn decode(segment: &[u8]) -> Frames {
    let mut frames = Frames::default();
    let mut at = 0;
    while at < segment.len() {
        match payload_at(segment, at) {
            Some(payload) => {
                at = payload.end;
                frames.payloads.push(payload);
            }
            None => {
                frames.corrupt_bytes = (segment.len() - at) as u64;
                break;
            }
        }
    }
    frames
}

/// The payload of the frame starting at `at`, if the frame is whole and its checksum matches.
fn payload_at(segment: &[u8], at: usize) -> Option<Range<usize>> {
    let header = segment.get(at..at.checked_add(HEADER_LEN)?)?;
    if header[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let start = at + HEADER_LEN;
    let payload = start..start.checked_add(len)?;
    let bytes = segment.get(payload.clone())?;
    (crc32fast::hash(bytes) == crc).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_frames() -> Vec<u8> {
        let mut segment = encode(b"{\"a\":1}\n");
        segment.extend(encode(b"{\"b\":2}\n{\"c\":3}\n"));
        segment
    }

    #[test]
    fn whole_frames_read_back() {
        let segment = two_frames();
        let frames = decode(&segment);
        assert_eq!(frames.corrupt_bytes, 0);
        let payloads: Vec<&[u8]> = frames
            .payloads
            .iter()
            .map(|r| &segment[r.clone()])
            .collect();
        assert_eq!(payloads, [&b"{\"a\":1}\n"[..], b"{\"b\":2}\n{\"c\":3}\n"]);
    }

    #[test]
    fn a_torn_tail_is_skipped_at_every_cut() {
        let segment = two_frames();
        let first = HEADER_LEN + 8;
        for cut in first + 1..segment.len() {
            let frames = decode(&segment[..cut]);
            assert_eq!(frames.payloads.len(), 1, "cut at {cut}");
            assert_eq!(frames.corrupt_bytes, (cut - first) as u64);
        }
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let mut segment = two_frames();
        let last = segment.len() - 2;
        segment[last] ^= 0x01;
        let frames = decode(&segment);
        assert_eq!(frames.payloads.len(), 1);
        assert!(frames.corrupt_bytes > 0);
        assert_eq!(decode(b"XXXX").corrupt_bytes, 4);
    }
}
