//! An endpoint's circuit breaker: after [`FAILURES_TO_OPEN`] failed attempts in a row, no
//! new delivery is started for a cooldown, and then one probe at a time until one succeeds.
//! A receiver that is down is probed, never flooded; the log and the retry set keep what
//! waits meanwhile, and no retry is used up by the wait.
//!
//! The cooldown doubles with each failed probe, from [`FIRST_COOLDOWN`] to
//! [`MAX_COOLDOWN`], as Convoy's breaker backs off, and never past the endpoint's own
//! schedule: an endpoint whose retries come every 100 ms is not held back for minutes.

use std::time::{Duration, Instant};

/// Failed attempts in a row that open the circuit: one bad answer is not an outage, five are.
pub const FAILURES_TO_OPEN: u32 = 5;

/// The first wait before a probe: short, so a receiver that restarts is back in seconds.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(5);

/// The longest wait between probes: a receiver down for hours is still tried every few
/// minutes, and answers within one of them once it is back.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(5 * 60);

/// The breaker's state.
#[derive(Debug, Clone)]
pub struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    first: Duration,
    most: Duration,
}

/// What the breaker lets the endpoint do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: as many attempts as the endpoint's concurrency.
    All,
    /// Open, cooling down: none.
    None,
    /// Cooled down: one probe.
    Probe,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit::within(&[])
    }
}

impl Circuit {
    /// A closed breaker whose cooldowns stay within the retry schedule `waits`: they start
    /// at the first wait and grow to the longest, inside [`FIRST_COOLDOWN`] and
    /// [`MAX_COOLDOWN`].
    pub fn within(waits: &[Duration]) -> Circuit {
        let first = waits
            .first()
            .map_or(FIRST_COOLDOWN, |w| (*w).min(FIRST_COOLDOWN));
        let most = waits
            .iter()
            .max()
            .map_or(MAX_COOLDOWN, |w| (*w).min(MAX_COOLDOWN));
        Circuit {
            failures: 0,
            open_until: None,
            cooldown: first,
            first,
            most: most.max(first),
        }
    }

    /// What may start at `now`.
    pub fn admit(&self, now: Instant) -> Admit {
        match self.open_until {
            None => Admit::All,
            Some(until) if now < until => Admit::None,
            Some(_) => Admit::Probe,
        }
    }

    /// Whether the circuit is open (cooling down or probing), for the metrics.
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// An attempt was delivered: closed again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.cooldown = self.first;
    }

    /// An attempt failed at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.failures += 1;
        if self.open_until.is_some() {
            // A failed probe: wait longer before the next.
            self.cooldown = (self.cooldown * 2).min(self.most);
            self.open_until = Some(now + self.cooldown);
        } else if self.failures >= FAILURES_TO_OPEN {
            self.open_until = Some(now + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_five_failures_probes_and_closes_on_success() {
        let mut circuit = Circuit::default();
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            circuit.failed(t0);
            assert_eq!(circuit.admit(t0), Admit::All);
        }
        circuit.failed(t0);
        assert_eq!(circuit.admit(t0), Admit::None);
        assert_eq!(circuit.admit(t0 + FIRST_COOLDOWN), Admit::Probe);
        circuit.failed(t0 + FIRST_COOLDOWN);
        let second = t0 + FIRST_COOLDOWN + FIRST_COOLDOWN * 2;
        assert_eq!(
            circuit.admit(second - Duration::from_millis(1)),
            Admit::None
        );
        assert_eq!(circuit.admit(second), Admit::Probe);
        circuit.succeeded();
        assert_eq!(circuit.admit(second), Admit::All);
        assert!(!circuit.is_open());
    }

    #[test]
    fn the_cooldown_stops_growing() {
        let mut circuit = Circuit::default();
        let mut now = Instant::now();
        for _ in 0..30 {
            circuit.failed(now);
            now += MAX_COOLDOWN;
        }
        assert_eq!(circuit.cooldown, MAX_COOLDOWN);
    }

    #[test]
    fn cooldowns_stay_within_the_schedule() {
        let fast = Circuit::within(&[Duration::from_millis(100), Duration::from_millis(300)]);
        assert_eq!(
            (fast.first, fast.most),
            (Duration::from_millis(100), Duration::from_millis(300))
        );
        let svix = Circuit::within(&crate::config::notify::DEFAULT_RETRY_SCHEDULE);
        assert_eq!((svix.first, svix.most), (FIRST_COOLDOWN, MAX_COOLDOWN));
    }
}
