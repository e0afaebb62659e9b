//! The burst detector: several distinct links of one message clicked within a window (two
//! seconds by default) from one network mark the later clicks as a scanner's.
//!
//! A link scanner opens every link of a message as soon as it arrives, within a few hundred
//! milliseconds; a person reads between two clicks. The earlier clicks of a burst keep the
//! verdict they had when they were made: events are labelled once and never held back.
//!
//! In memory, per instance, bounded: a table of (message id, network) pairs, sharded by a
//! keyed hash like `server::event_budget`, each pair holding the last few distinct links
//! and when each was clicked. A full shard forgets pairs whose window has passed; if none
//! has, a new pair goes untracked (no burst signal: never a false one).
//!
//! Behind a CDN or load balancer, each instance sees only the clicks sent to it. A scanner
//! whose clicks are spread over `n` instances shows each one a `1/n` share of its burst, so
//! a burst of five links over three instances may show no instance three of them.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shards of the table, each behind its own lock: clicks on other pairs rarely wait.
const SHARDS: usize = 16;

/// The most pairs tracked: a pair is about 120 bytes, so at most about 8 MB.
pub const MAX_TRACKED_PAIRS: usize = 65_536;

/// The most distinct links remembered per pair: past the burst threshold, more say nothing.
const LINKS_PER_PAIR: usize = 6;

/// How often a full shard may be swept.
const SWEEP_EVERY_MILLIS: u64 = 1_000;

/// One pair's recent clicks: (link hash, when, in milliseconds since the epoch).
#[derive(Debug, Default, Clone, Copy)]
struct Recent {
    links: [(u64, u64); LINKS_PER_PAIR],
    len: usize,
}

#[derive(Debug, Default)]
struct Shard {
    pairs: HashMap<u64, Recent, PassThrough>,
    swept_at: u64,
}

/// The per-instance burst table.
#[derive(Debug)]
pub struct BurstDetector {
    window_ms: u64,
    /// From which distinct link a click is a burst's; 0: off.
    links: usize,
    /// Keyed per process, so nobody outside can aim pairs at one shard. foldhash's quality
    /// variant, not std's SipHash, which cost a click 200 instructions: what it hashes is a
    /// message id under the link's MAC and the client's network, so a client can choose
    /// neither to search for collisions, and it sees none of the hashes.
    keys: foldhash::quality::RandomState,
    /// Hashes a link's target. Only compared within one pair, among the links of one
    /// message, which its sender signed: no one outside can choose what it hashes.
    link_keys: foldhash::fast::RandomState,
    shards: [Mutex<Shard>; SHARDS],
}

impl BurstDetector {
    /// A detector marking the `links`-th distinct link within `window` and later; `links`
    /// of 0 or 1 turns it off (a single click is never a burst).
    pub fn new(window: Duration, links: usize) -> BurstDetector {
        BurstDetector {
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            links: if links < 2 {
                0
            } else {
                links.min(LINKS_PER_PAIR)
            },
            keys: foldhash::quality::RandomState::default(),
            link_keys: foldhash::fast::RandomState::default(),
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
        }
    }

    /// Records a click on `target` of `message_id` from `client` at `now`, and says whether
    /// it is part of a burst: at least `links` distinct links of the message clicked from
    /// the client's network within the window, this one included.
    pub fn click(&self, message_id: &str, client: IpAddr, target: &str, now: SystemTime) -> bool {
        if self.links == 0 {
            return false;
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let key = self.keys.hash_one((message_id, network(client)));
        let link = self.link_keys.hash_one(target);
        let shard = &self.shards[(key >> 60) as usize % SHARDS];
        // A poisoned lock means a panic elsewhere mid-update of plain numbers: still sound.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if shard.pairs.len() >= MAX_TRACKED_PAIRS / SHARDS
            && !shard.pairs.contains_key(&key)
            && !shard.sweep(now, self.window_ms)
        {
            return false;
        }
        let recent = shard.pairs.entry(key).or_default();
        recent.forget_before(now.saturating_sub(self.window_ms));
        recent.add(link, now);
        recent.len >= self.links
    }
}

impl Recent {
    fn forget_before(&mut self, since: u64) {
        let mut kept = 0;
        for i in 0..self.len {
            if self.links[i].1 >= since {
                self.links[kept] = self.links[i];
                kept += 1;
            }
        }
        self.len = kept;
    }

    fn add(&mut self, link: u64, now: u64) {
        if let Some(seen) = self.links[..self.len].iter_mut().find(|(l, _)| *l == link) {
            seen.1 = now;
        } else if self.len < LINKS_PER_PAIR {
            self.links[self.len] = (link, now);
            self.len += 1;
        } else {
            // Full: the oldest goes.
            let oldest = (0..self.len).min_by_key(|&i| self.links[i].1).unwrap_or(0);
            self.links[oldest] = (link, now);
        }
    }
}

impl Shard {
    /// Forgets pairs whose every click is out of the window, at most once a
    /// [`SWEEP_EVERY_MILLIS`]. Returns whether there is room now.
    fn sweep(&mut self, now: u64, window_ms: u64) -> bool {
        if now.saturating_sub(self.swept_at) >= SWEEP_EVERY_MILLIS {
            self.swept_at = now;
            let since = now.saturating_sub(window_ms);
            self.pairs.retain(|_, recent| {
                recent.links[..recent.len]
                    .iter()
                    .any(|&(_, at)| at >= since)
            });
        }
        self.pairs.len() < MAX_TRACKED_PAIRS / SHARDS
    }
}

/// One network: an IPv4 /24, an IPv6 /48. Scanners click from several addresses of one
/// range; a burst from one range is one fleet's.
fn network(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4) & 0xFFFF_FF00),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4) & 0xFFFF_FF00),
            None => u128::from(v6) & !0 << 80,
        },
    }
}

/// For a table whose `u64` keys are already keyed hashes (here, and the event budget's):
/// hashing them again would only cost time.
pub(crate) type PassThrough = BuildHasherDefault<PassThroughHasher>;

/// Hands a `u64` key on as its own hash.
#[derive(Debug, Default)]
pub(crate) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in, should that ever change.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(millis)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn five_links_in_a_second_mark_the_third_on() {
        let bursts = BurstDetector::new(Duration::from_secs(2), 3);
        let marked: Vec<bool> = (0..5)
            .map(|n| {
                bursts.click(
                    "m",
                    ip("40.92.1.1"),
                    &format!("https://e.example/{n}"),
                    at(n * 200),
                )
            })
            .collect();
        assert_eq!(marked, [false, false, true, true, true]);
    }

    #[test]
    fn the_same_link_twice_is_no_burst_nor_slow_clicks_nor_other_networks() {
        let bursts = BurstDetector::new(Duration::from_secs(2), 3);
        for n in 0..5 {
            assert!(!bursts.click("m", ip("192.0.2.1"), "https://e.example/a", at(n * 100)));
        }
        for n in 0..5 {
            let link = format!("https://e.example/{n}");
            assert!(!bursts.click("slow", ip("192.0.2.1"), &link, at(n * 3_000)));
        }
        let clients = ["192.0.2.1", "198.51.100.1", "203.0.113.1"];
        for (n, client) in clients.into_iter().enumerate() {
            let link = format!("https://e.example/{n}");
            assert!(!bursts.click("nets", ip(client), &link, at(n as u64)));
        }
        // One /24 is one network.
        let same_net = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
        let marked: Vec<bool> = same_net
            .into_iter()
            .enumerate()
            .map(|(n, client)| {
                bursts.click(
                    "net",
                    ip(client),
                    &format!("https://e.example/{n}"),
                    at(n as u64),
                )
            })
            .collect();
        assert_eq!(marked, [false, false, true]);
        assert!(!BurstDetector::new(Duration::from_secs(2), 0).click(
            "m",
            ip("192.0.2.1"),
            "x",
            at(0)
        ));
    }

    #[test]
    fn the_table_is_bounded() {
        let bursts = BurstDetector::new(Duration::from_secs(2), 3);
        for n in 0..(MAX_TRACKED_PAIRS as u32 * 2) {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + (n << 8)));
            bursts.click("m", client, "x", at(0));
        }
        let tracked: usize = bursts
            .shards
            .iter()
            .map(|s| s.lock().unwrap().pairs.len())
            .sum();
        assert!(tracked <= MAX_TRACKED_PAIRS, "{tracked}");
        // Once the window has passed, a sweep makes room.
        assert!(!bursts.click("new", ip("192.0.2.1"), "a", at(5_000)));
        let tracked_after: usize = bursts
            .shards
            .iter()
            .map(|s| s.lock().unwrap().pairs.len())
            .sum();
        assert!(tracked_after < tracked);
    }
}
