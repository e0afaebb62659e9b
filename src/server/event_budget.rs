//! The event budget: how many events one (message id, client address) pair may record a
//! minute (`[events] budget_per_minute`).
//!
//! Anyone who received one mail holds valid links, and a pixel request costs a few bytes on
//! the wire and 1.5 KB of events on disk. Past the budget a request is answered as before, but
//! its event is not recorded, and it is counted (`mailtrack_events_over_budget_total`).
//!
//! Each pair is a generic cell rate: a burst of `budget` events, refilled at `budget` a
//! minute. A pair stores one number, the time its budget is next full again (the
//! "theoretical arrival time" of GCRA), so that a pair whose budget is full again is the same
//! as a pair never seen and can be forgotten. IPv6 addresses count by their /64, which one
//! host owns whole.
//!
//! The memory is bounded: at most [`MAX_TRACKED_PAIRS`] pairs. When the table is full, the
//! pairs whose budget is full again are swept; if it is still full, the new pair's event is
//! recorded untracked (and counted in `mailtrack_event_budget_untracked_total`): losing a
//! real event is worse than letting an attacker with that many addresses write one more.
//!
//! The budget is per instance: behind a load balancer, each instance grants its own.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::classify::burst::PassThrough;
use crate::link::MessageId;

/// The most pairs tracked at once, over all shards: at most 4.5 MiB of table (16 shards of
/// 16,384 buckets of 17 bytes, as hashbrown sizes 8,192 entries). A pair is
/// tracked for at most a minute after its last event, so this is 2,000 new pairs a second,
/// sustained, before any goes untracked.
pub const MAX_TRACKED_PAIRS: usize = 128 * 1024;

/// Shards of the table, each under its own lock, so that two cores recording at once rarely
/// meet on one lock.
const SHARDS: usize = 16;

/// A minute, in the microseconds the table counts in.
const MINUTE_MICROS: u64 = 60_000_000;

/// The least time between two sweeps of a full shard: a sweep walks the whole shard, and a
/// flood of new pairs must not buy one per request.
const SWEEP_EVERY_MICROS: u64 = 1_000_000;

/// What the budget decided for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Within the budget: record it.
    Within,
    /// Past the budget: answer, but do not record.
    Over,
    /// The table was full: record it, untracked.
    Untracked,
}

/// The per-pair budgets of one instance.
#[derive(Debug)]
pub struct EventBudget {
    /// Microseconds between two events of a pair at the budget's rate; `None` when off.
    interval: Option<u64>,
    /// A burst may run this far ahead of the rate: a minute less one interval.
    tolerance: u64,
    /// Keyed per process, so nobody outside can aim pairs at one shard or slot.
    keys: RandomState,
    shards: [Mutex<Shard>; SHARDS],
}

/// One lock's part of the table.
#[derive(Debug, Default)]
struct Shard {
    /// Each pair's key, and when its budget is whole again (microseconds since the epoch).
    refilled_at: HashMap<u64, u64, PassThrough>,
    /// When this shard was last swept.
    swept_at: u64,
}

impl EventBudget {
    /// A budget of `per_minute` events a pair; 0 turns it off.
    pub fn new(per_minute: u32) -> EventBudget {
        let interval = (per_minute > 0).then(|| (MINUTE_MICROS / u64::from(per_minute)).max(1));
        EventBudget {
            interval,
            tolerance: MINUTE_MICROS - interval.unwrap_or(0),
            keys: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
        }
    }

    /// Spends one event of the pair (`message_id`, `client`) at `now`.
    pub fn spend(&self, message_id: &MessageId, client: IpAddr, now: SystemTime) -> Spend {
        let Some(interval) = self.interval else {
            return Spend::Within;
        };
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let key = self.keys.hash_one((message_id.as_str(), network(client)));
        // The top bits pick the shard; the table hashes on the low ones.
        let shard = &self.shards[(key >> 60) as usize % SHARDS];
        // A poisoned lock means a panic elsewhere mid-update of a plain number: still sound.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if shard.refilled_at.len() >= MAX_TRACKED_PAIRS / SHARDS
            && !shard.refilled_at.contains_key(&key)
            && !shard.sweep(now)
        {
            return Spend::Untracked;
        }
        let refilled = shard.refilled_at.entry(key).or_insert(now);
        let start = (*refilled).max(now);
        if start - now > self.tolerance {
            return Spend::Over;
        }
        *refilled = start + interval;
        Spend::Within
    }
}

impl Shard {
    /// Forgets the pairs whose budget is whole again, which are the same as pairs never
    /// seen, at most once a [`SWEEP_EVERY_MICROS`]. Returns whether there is room now.
    fn sweep(&mut self, now: u64) -> bool {
        if now.saturating_sub(self.swept_at) >= SWEEP_EVERY_MICROS {
            self.swept_at = now;
            self.refilled_at.retain(|_, refilled| *refilled > now);
        }
        self.refilled_at.len() < MAX_TRACKED_PAIRS / SHARDS
    }
}

/// The part of an address that counts as one client: an IPv4 address, an IPv6 /64.
fn network(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !0 << 64,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(text: &str) -> MessageId {
        MessageId::new(text).unwrap()
    }

    fn count(spends: impl Iterator<Item = Spend>) -> [usize; 3] {
        let mut counts = [0; 3];
        for spend in spends {
            counts[spend as usize] += 1;
        }
        counts
    }

    #[test]
    fn a_pair_gets_its_budget_then_refills_at_its_rate() {
        let budget = EventBudget::new(60);
        let (m, ip) = (id("m-1"), "192.0.2.1".parse().unwrap());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let burst = (0..100).map(|_| budget.spend(&m, ip, t0));
        assert_eq!(count(burst), [60, 40, 0]);
        // One a second comes back.
        assert_eq!(
            budget.spend(&m, ip, t0 + Duration::from_millis(500)),
            Spend::Over
        );
        assert_eq!(
            budget.spend(&m, ip, t0 + Duration::from_secs(1)),
            Spend::Within
        );
        assert_eq!(
            budget.spend(&m, ip, t0 + Duration::from_secs(1)),
            Spend::Over
        );
        // A minute later the whole burst is back.
        let later = t0 + Duration::from_secs(62);
        let burst = (0..61).map(|_| budget.spend(&m, ip, later));
        assert_eq!(count(burst), [60, 1, 0]);
    }

    #[test]
    fn pairs_are_apart_and_ipv6_counts_by_its_64() {
        let budget = EventBudget::new(1);
        let now = SystemTime::now();
        let ip = "192.0.2.1".parse().unwrap();
        assert_eq!(budget.spend(&id("a"), ip, now), Spend::Within);
        assert_eq!(budget.spend(&id("b"), ip, now), Spend::Within);
        assert_eq!(
            budget.spend(&id("a"), "192.0.2.2".parse().unwrap(), now),
            Spend::Within
        );
        assert_eq!(budget.spend(&id("a"), ip, now), Spend::Over);
        let host = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(
            budget.spend(&id("a"), host("2001:db8::1"), now),
            Spend::Within
        );
        assert_eq!(
            budget.spend(&id("a"), host("2001:db8::2:1"), now),
            Spend::Over
        );
        assert_eq!(
            budget.spend(&id("a"), host("2001:db8:0:1::1"), now),
            Spend::Within
        );
        assert_eq!(
            budget.spend(&id("b"), host("::ffff:192.0.2.1"), now),
            Spend::Over
        );
    }

    #[test]
    fn zero_is_no_limit() {
        let budget = EventBudget::new(0);
        let (m, ip, now) = (id("m"), "192.0.2.1".parse().unwrap(), SystemTime::now());
        assert!((0..10_000).all(|_| budget.spend(&m, ip, now) == Spend::Within));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_refilled_pairs() {
        let budget = EventBudget::new(600);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let m = id("m");
        let spends = (0..MAX_TRACKED_PAIRS as u32 * 2).map(|n| {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            budget.spend(&m, ip, t0)
        });
        let [within, over, untracked] = count(spends);
        assert_eq!(over, 0);
        assert!(within >= MAX_TRACKED_PAIRS * 9 / 10, "{within}");
        assert!(untracked > 0, "the table filled up");
        let tracked: usize = budget
            .shards
            .iter()
            .map(|s| s.lock().unwrap().refilled_at.len())
            .sum();
        assert!(tracked <= MAX_TRACKED_PAIRS, "{tracked}");
        // A pair that spent one of 600 is whole again a tenth of a second later, but a full
        // shard is swept at most once a second.
        let ip = "198.51.100.1".parse().unwrap();
        let soon = t0 + Duration::from_millis(100);
        let later = t0 + Duration::from_secs(1);
        let new_pairs = (0..64).map(|n| budget.spend(&id(&format!("n{n}")), ip, soon));
        assert!(
            count(new_pairs)[2] > 0,
            "no sweep yet: some shard is still full"
        );
        let new_pairs = (0..64).map(|n| budget.spend(&id(&format!("n{n}")), ip, later));
        assert_eq!(
            count(new_pairs),
            [64, 0, 0],
            "every shard swept: room again"
        );
    }
}
