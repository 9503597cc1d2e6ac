//! How long a long-poll client (`tessera agent`, `tessera run --watch`) waits
//! before trying the server again.
//!
//! Two aims pull against each other: come back soon after a short outage
//! (a restart of the server should cost its clients about a second, not
//! ten), and not have thousands of clients hammer a server that stays down,
//! or return in one wave when it answers again. So the wait grows with the
//! attempts *and* is bounded by how long the outage has lasted, and each
//! wait is drawn uniformly from zero to that bound ("full jitter").
//!
//! Everything here is a pure function of the attempt count, the outage's
//! age and a random source, so the rules are tested without real time.

use rand::Rng;
use std::time::Duration;

/// Draws uniformly from `0..=max` (milliseconds): the production source.
pub fn uniform(max: u64) -> u64 {
    rand::thread_rng().gen_range(0..=max)
}

/// The first step.
pub const BASE: Duration = Duration::from_millis(100);

/// The longest step, however long the outage.
pub const CAP: Duration = Duration::from_secs(30);

/// The step is never held below this by the outage's age: for the first
/// [`EARLY`] of an outage a client is at most this far behind the server.
pub const FLOOR: Duration = Duration::from_secs(1);

/// An outage younger than this keeps the step at or under [`FLOOR`]
/// (the step may reach a tenth of the outage's age).
pub const EARLY: Duration = Duration::from_secs(10);

/// Exponential steps (from [`BASE`], doubling per attempt), each bounded by
/// a tenth of the outage's age (but never below [`FLOOR`]) and by [`CAP`];
/// the delay is drawn uniformly from zero to the step.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Back to the first step (after an answer).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// The bound of the next delay, for an outage that has lasted `outage`.
    pub fn step(&self, outage: Duration) -> Duration {
        let exponential = BASE.saturating_mul(1u32 << self.attempts.min(16));
        let by_age = (outage / 10).max(FLOOR);
        exponential.min(by_age).min(CAP)
    }

    /// The next delay: `draw(max)` picks a number of milliseconds in
    /// `0..=max` where `max` is the step ([`uniform`] in production).
    pub fn next_delay(&mut self, outage: Duration, draw: impl FnOnce(u64) -> u64) -> Duration {
        let step = self.step(outage);
        self.attempts = self.attempts.saturating_add(1);
        let max = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(draw(max).min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Always the top of the range: the longest wait.
    fn longest(max: u64) -> u64 {
        max
    }

    fn shortest(_: u64) -> u64 {
        0
    }

    #[test]
    fn early_in_an_outage_a_client_is_never_more_than_a_second_behind() {
        // A 4 s outage seen by a client retrying as fast as the rule allows:
        // every wait, at its longest, stays within a second.
        let mut b = Backoff::new();
        let mut age = Duration::ZERO;
        while age < EARLY {
            let d = b.next_delay(age, longest);
            assert!(d <= FLOOR, "{d:?} at {age:?}");
            age += d.max(Duration::from_millis(1));
        }
        // Without the outage's age as a bound, the same attempts would have
        // reached steps of several seconds (the old rule: 3.2 s, then 6.4 s).
        assert!(b.step(Duration::ZERO) <= FLOOR);
        assert!(BASE.saturating_mul(1 << b.attempts.min(16)) > Duration::from_secs(3));
    }

    #[test]
    fn the_step_grows_with_the_outage_up_to_the_cap() {
        let mut b = Backoff::new();
        for _ in 0..20 {
            b.next_delay(Duration::ZERO, longest);
        }
        assert_eq!(b.step(Duration::from_secs(5)), FLOOR);
        assert_eq!(b.step(Duration::from_secs(60)), Duration::from_secs(6));
        assert_eq!(b.step(Duration::from_secs(200)), Duration::from_secs(20));
        assert_eq!(b.step(Duration::from_secs(300)), CAP);
        assert_eq!(b.step(Duration::from_secs(3600)), CAP);
        // The first attempts stay short whatever the age.
        b.reset();
        assert_eq!(b.step(Duration::from_secs(3600)), BASE);
        b.next_delay(Duration::from_secs(3600), longest);
        assert_eq!(b.step(Duration::from_secs(3600)), BASE * 2);
    }

    #[test]
    fn delays_are_drawn_from_zero_to_the_step() {
        // Full jitter: the whole range is used, so a fleet spreads out.
        let mut b = Backoff::new();
        for _ in 0..10 {
            b.next_delay(Duration::from_secs(600), shortest);
        }
        assert_eq!(
            b.next_delay(Duration::from_secs(600), shortest),
            Duration::ZERO
        );
        let step = b.step(Duration::from_secs(600));
        assert_eq!(b.next_delay(Duration::from_secs(600), longest), step);

        let mut b = Backoff::new();
        let (mut low, mut high) = (false, false);
        for _ in 0..200 {
            b.reset();
            for _ in 0..5 {
                b.next_delay(Duration::from_secs(30), uniform);
            }
            let step = b.step(Duration::from_secs(30));
            let d = b.next_delay(Duration::from_secs(30), uniform);
            assert!(d <= step);
            low |= d < step / 4;
            high |= d > step * 3 / 4;
        }
        assert!(low && high, "delays should cover the whole range");
    }
}
