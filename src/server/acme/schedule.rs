//! When to renew, and how long to wait after a failure.
//!
//! A certificate is renewed inside the CA's ARI window (RFC 9773) when the CA offers one, at
//! a random moment in it so that many instances and many clients spread out, as the RFC
//! asks; otherwise at two-thirds of its lifetime (day 60 of Let's Encrypt's 90), which leaves
//! a third of it for retries. Failures back off exponentially from `retry_delay` up to
//! [`MAX_RETRY_DELAY`].

use std::time::{Duration, SystemTime};

use crate::config::acme::MAX_RETRY_DELAY;

/// How often an instance that is waiting on another's order looks at the folder again: two
/// seconds. The look is one `flock` and a file read; an order takes several seconds, so the
/// certificate is picked up a moment after the other instance stores it.
pub const FOLDER_POLL: Duration = Duration::from_secs(2);

/// The longest single sleep before a renewal is due: an hour, so an instance notices a
/// certificate another one renewed, and logs nearing expiry, at least that often.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Two-thirds of the way from `not_before` to `not_after`.
pub fn two_thirds(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + lifetime * 2 / 3
}

/// A moment in `[start, end)`, placed by `random` (uniform over `u64`).
pub fn in_window(start: SystemTime, end: SystemTime, random: u64) -> SystemTime {
    let width = end.duration_since(start).unwrap_or(Duration::ZERO);
    let nanos = u64::try_from(width.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return start;
    }
    // `random % nanos` is close enough to uniform for spreading renewals.
    start + Duration::from_nanos(random % nanos)
}

/// Exponential backoff: `first`, doubled after each failure, at most [`MAX_RETRY_DELAY`].
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`.
    pub fn new(first: Duration) -> Backoff {
        Backoff { first, next: first }
    }

    /// The wait after one more failure.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_RETRY_DELAY);
        wait
    }

    /// Back to `first` after a success.
    pub fn succeeded(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn renews_at_two_thirds_of_the_lifetime() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let end = start + Duration::from_secs(90 * 86_400);
        assert_eq!(
            two_thirds(start, end),
            start + Duration::from_secs(60 * 86_400)
        );
        assert_eq!(
            two_thirds(end, start),
            end,
            "a reversed validity renews at once"
        );
    }

    #[test]
    fn the_window_holds_the_moment() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let end = start + Duration::from_secs(100);
        for random in [0, 1, u64::MAX, 12_345_678_901] {
            let at = in_window(start, end, random);
            assert!(at >= start && at < end);
        }
        assert_eq!(in_window(start, start, 99), start);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(60));
        assert_eq!(backoff.failed(), Duration::from_secs(60));
        assert_eq!(backoff.failed(), Duration::from_secs(120));
        for _ in 0..20 {
            backoff.failed();
        }
        assert_eq!(backoff.failed(), MAX_RETRY_DELAY);
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_secs(60));
    }
}
