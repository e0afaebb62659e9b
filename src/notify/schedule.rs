//! The retry schedule: how long to wait before each attempt after the first, with jitter, and
//! when a delivery becomes a dead letter.
//!
//! The waits are data, from the endpoint's config (Svix's schedule by default). Each wait is
//! moved by up to [`JITTER`] either way, so that deliveries that failed together (a receiver
//! that went down) do not all come back in the same second.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// How far a wait may move either way: ±20%, as Svix does.
pub const JITTER: f64 = 0.2;

/// The waits between an endpoint's attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    waits: Vec<Duration>,
}

impl RetrySchedule {
    /// The schedule of `waits`: the wait before the second attempt, the third, …
    pub fn new(waits: Vec<Duration>) -> RetrySchedule {
        RetrySchedule { waits }
    }

    /// Attempts in all: the first, and one after each wait.
    pub fn attempts(&self) -> usize {
        self.waits.len() + 1
    }

    /// The wait after the failed attempt `failed` (1 for the first), moved by `jitter`, a
    /// fraction in [-1, 1] of [`JITTER`]; `None` when that was the last attempt, and the
    /// delivery is a dead letter.
    pub fn wait_after(&self, failed: usize, jitter: f64) -> Option<Duration> {
        let wait = *self.waits.get(failed.checked_sub(1)?)?;
        Some(wait.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0)))
    }

    /// [`RetrySchedule::wait_after`] with a random jitter.
    pub fn wait_after_random(&self, failed: usize) -> Option<Duration> {
        self.wait_after(failed, random_fraction())
    }
}

/// A uniform fraction in [-1, 1].
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    // The system's randomness does not fail on any platform we run on; should it, the wait
    // is the schedule's own, without jitter.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notify::DEFAULT_RETRY_SCHEDULE;

    #[test]
    fn svix_schedule_with_jitter_then_a_dead_letter() {
        let schedule = RetrySchedule::new(DEFAULT_RETRY_SCHEDULE.to_vec());
        assert_eq!(schedule.attempts(), 8);
        assert_eq!(schedule.wait_after(1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(schedule.wait_after(1, 1.0), Some(Duration::from_secs(6)));
        assert_eq!(schedule.wait_after(1, -1.0), Some(Duration::from_secs(4)));
        assert_eq!(
            schedule.wait_after(7, 0.0),
            Some(Duration::from_secs(36_000))
        );
        assert_eq!(
            schedule.wait_after(8, 0.0),
            None,
            "after the eighth: a dead letter"
        );
        assert_eq!(schedule.wait_after(0, 0.0), None);
        let total: Duration = DEFAULT_RETRY_SCHEDULE.iter().sum();
        assert!(
            total > Duration::from_secs(27 * 3600),
            "more than a day: {total:?}"
        );
        for _ in 0..1000 {
            let wait = schedule.wait_after_random(2).unwrap();
            assert!((240.0..=360.0).contains(&wait.as_secs_f64()), "{wait:?}");
        }
    }
}
