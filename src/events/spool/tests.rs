//! The spool over real files: order, limits, restarts and torn tails.

use std::io::Write;

use super::*;

fn payloads(spool: &mut Spool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = spool.peek().unwrap() {
        out.push(frame.payload);
        spool.advance();
    }
    out
}

#[test]
fn batches_replay_in_order_across_segments_and_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20, 64).unwrap();
    let batches: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
        .collect();
    for batch in &batches[..5] {
        spool.append(batch).unwrap();
    }
    assert!(!spool.is_empty());
    // Appends while replaying keep their place after what is already spooled.
    let first = spool.peek().unwrap().unwrap();
    assert_eq!(first.payload, batches[0]);
    spool.advance();
    for batch in &batches[5..] {
        spool.append(batch).unwrap();
    }
    assert_eq!(payloads(&mut spool), batches[1..]);
    assert!(spool.is_empty());
    assert_eq!(spool.pending_bytes(), 0);
    let left = fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| {
            entry.as_ref().unwrap().path().extension() == Some(SEGMENT_EXTENSION.as_ref())
        })
        .count();
    assert!(left <= 1, "{left} segments left");
}

#[test]
fn a_full_spool_refuses_the_newest_batch_and_takes_more_once_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let batch = vec![b'x'; 100];
    let mut spool = Spool::open(dir.path(), 250, 64).unwrap();
    spool.append(&batch).unwrap();
    spool.append(&batch).unwrap();
    assert!(spool.is_full_for(batch.len()));
    assert!(matches!(spool.append(&batch), Err(SpoolError::Full { .. })));
    assert_eq!(payloads(&mut spool).len(), 2);
    // Reading past the last segment deletes it, freeing its room.
    assert!(spool.peek().unwrap().is_none());
    spool.append(&batch).unwrap();
}

#[test]
fn a_restart_replays_what_was_spooled_and_skips_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        spool.append(b"{\"a\":1}\n").unwrap();
        spool.append(b"{\"b\":2}\n").unwrap();
    }
    // A crash in the middle of a third append leaves half a frame.
    let segment = dir.path().join(format!("{:016}.spool", 0));
    let torn = frame::encode(b"{\"c\":3}\n");
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&torn[..torn.len() / 2]).unwrap();
    drop(file);

    let mut spool = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
    spool.append(b"{\"d\":4}\n").unwrap();
    let first = spool.peek().unwrap().unwrap();
    assert_eq!(first.payload, b"{\"a\":1}\n");
    spool.advance();
    let mut rest = Vec::new();
    let mut corrupt = first.corrupt_bytes;
    while let Some(frame) = spool.peek().unwrap() {
        corrupt += frame.corrupt_bytes;
        rest.push(frame.payload);
        spool.advance();
    }
    assert_eq!(rest, [&b"{\"b\":2}\n"[..], b"{\"d\":4}\n"]);
    assert_eq!(corrupt, (torn.len() / 2) as u64);
    assert!(spool.is_empty());
}

#[test]
fn a_second_process_cannot_open_a_spool_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap();
    first.append(b"{\"n\":1}\n").unwrap();
    // The lock is per open file, so a second open in this process stands for another one.
    let refused = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap_err();
    assert!(matches!(refused, SpoolError::Locked { .. }), "{refused:?}");
    assert!(
        refused.to_string().contains("events.spool_dir"),
        "{refused}"
    );
    drop(first);
    let mut next = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap();
    assert_eq!(payloads(&mut next), [b"{\"n\":1}\n".to_vec()]);
}
