//! An event's id and its timestamp, made from the one clock reading a request takes.
//!
//! Both are on every open and click, and both were dearer than they need be: `Uuid::now_v7`
//! (77 ns) reads the clock again and takes a process-wide lock, and formatting an RFC 3339
//! time (41 ns) works out the date afresh each time, though consecutive events almost always
//! fall in the same second.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// The ids of this process's events.
static EVENT_IDS: Ids = Ids::new();

/// The counter after the milliseconds: 4,096 ids a millisecond before it carries into them.
const COUNTER_BITS: u32 = 12;

/// A UUIDv7 (RFC 9562) for an event that happened at `at`: see [`Ids`].
pub(crate) fn event_id(at: SystemTime) -> Uuid {
    EVENT_IDS.next(at)
}

/// Makes UUIDv7s whose 48-bit millisecond is followed by a 12-bit counter (RFC 9562, section
/// 6.2, method 1), so that the ids it makes are unique and sort in the order they were made,
/// across threads. Past 4,096 in one millisecond, or when the clock steps back, the counter
/// carries into the time, which then runs a little ahead. The last 62 bits are random, which
/// keeps ids from different processes apart.
struct Ids {
    /// The last id's time and counter: Unix milliseconds shifted left by [`COUNTER_BITS`],
    /// plus the counter.
    last: AtomicU64,
}

impl Ids {
    const fn new() -> Ids {
        Ids {
            last: AtomicU64::new(0),
        }
    }

    fn next(&self, at: SystemTime) -> Uuid {
        let millis = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()) as u64;
        let floor = (millis & ((1 << 48) - 1)) << COUNTER_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        let stamp = loop {
            let next = floor.max(last.wrapping_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break next,
                Err(current) => last = current,
            }
        };
        let millis = u128::from(stamp >> COUNTER_BITS);
        let counter = u128::from(stamp & ((1 << COUNTER_BITS) - 1));
        let random = u128::from(random_u64() >> 2);
        Uuid::from_u128(millis << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | random)
    }
}

thread_local! {
    /// Each thread's random state, seeded from the OS's randomness (through std's hasher
    /// keys) the first time the thread makes an id.
    static RANDOM: Cell<u64> = Cell::new(RandomState::new().hash_one(SystemTime::now()));

    /// The last second [`write_timestamp`] formatted, and its text up to the milliseconds.
    static SECOND: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

/// The next number of wyrand: uniform, and cheap (a multiply). Ids need to be apart, not
/// unguessable: they grant nothing.
fn random_u64() -> u64 {
    RANDOM.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    })
}

/// Writes `at` as RFC 3339 in UTC with milliseconds and `Z`, as
/// `humantime::format_rfc3339_millis` does: `2026-11-23T04:19:05.123Z`.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let (second, millis) = (since.as_secs(), since.subsec_millis());
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let whole = UNIX_EPOCH + Duration::from_secs(second);
            let mut text = Vec::with_capacity(24);
            // Writing into a Vec cannot fail.
            let _ = write!(text, "{}", humantime::format_rfc3339_seconds(whole));
            // `…:05Z` becomes `…:05.`, the milliseconds to follow.
            text.pop();
            text.push(b'.');
            *cached = (second, text);
        }
        out.extend_from_slice(&cached.1);
    });
    out.extend_from_slice(&[
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_humantime_writes_them() {
        let base = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        for offset in [
            0,
            1,
            999,
            1_000,
            1_001,
            59_999,
            86_399_999,
            86_400_000,
            123_456_789,
        ] {
            let at = base + Duration::from_millis(offset) + Duration::from_micros(700);
            let mut out = Vec::new();
            write_timestamp(&mut out, at);
            let expected = humantime::format_rfc3339_millis(at).to_string();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn ids_are_version_7_unique_and_sorted_in_the_order_made() {
        let ids = Ids::new();
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        // More than the counter holds in one millisecond, from two threads.
        let made: Vec<Vec<Uuid>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| (0..5_000).map(|_| ids.next(at)).collect::<Vec<_>>()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for ids in &made {
            assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "in order");
            for id in ids {
                assert_eq!(id.get_version_num(), 7);
                assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
                let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
                let millis = secs * 1_000 + u64::from(nanos) / 1_000_000;
                // The counter may carry a few milliseconds ahead; never behind.
                assert!((1_700_000_000_123..1_700_000_000_123 + 10).contains(&millis));
            }
        }
        let mut all: Vec<Uuid> = made.concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 10_000, "unique");
    }
}
