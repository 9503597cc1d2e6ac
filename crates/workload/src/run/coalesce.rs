//! When a `--watch` supervisor restarts its command after changes: not once
//! per write (98 writes in 10 s used to cause 99 starts) but once the values
//! have been quiet for a while.

use std::time::Duration;
use tokio::time::Instant;

/// A steady stream of changes never waits longer than this many quiet
/// periods for its restart.
pub const MAX_WAIT_PERIODS: u32 = 10;

/// Folds changes into one restart: due once no change has come for the
/// quiet period, or once the oldest pending change has waited
/// [`MAX_WAIT_PERIODS`] quiet periods. Since the supervisor only sees
/// changes after a restart is done, two restarts are always at least one
/// quiet period apart.
#[derive(Debug)]
pub struct Coalescer {
    quiet: Duration,
    /// The first and the latest change not yet applied.
    pending: Option<(Instant, Instant)>,
    /// How many changes the next restart applies.
    changes: u32,
}

impl Coalescer {
    pub fn new(quiet: Duration) -> Self {
        Self {
            quiet,
            pending: None,
            changes: 0,
        }
    }

    /// A change the command does not have yet, seen at `now`.
    pub fn changed(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(first, _)| first);
        self.pending = Some((first, now));
        self.changes += 1;
    }

    /// The values are back to what the command has, or cannot be applied:
    /// nothing to restart for.
    pub fn cancel(&mut self) {
        self.pending = None;
        self.changes = 0;
    }

    /// When the restart is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        self.pending
            .map(|(first, last)| (last + self.quiet).min(first + self.quiet * MAX_WAIT_PERIODS))
    }

    /// The restart is happening: how many changes it applies.
    pub fn take(&mut self) -> u32 {
        let n = self.changes;
        self.cancel();
        n
    }
}

/// `--quiet-period`: a duration (`1s`, `500ms`) or `0` (restart at once).
pub fn parse_quiet(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    tessera_core::duration::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_restart_once_quiet() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Coalescer::new(ms(1000));
        assert_eq!(c.due(), None);
        for i in 0..10 {
            c.changed(t0 + ms(100 * i));
        }
        assert_eq!(c.due(), Some(t0 + ms(900 + 1000)));
        assert_eq!(c.take(), 10);
        assert_eq!(c.due(), None);
        c.changed(t0 + ms(5000));
        c.cancel();
        assert_eq!(c.due(), None, "back to what the command has");
    }

    #[test]
    fn a_steady_stream_still_restarts_every_ten_periods() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Coalescer::new(ms(1000));
        for i in 0..200 {
            c.changed(t0 + ms(100 * i));
        }
        assert_eq!(c.due(), Some(t0 + ms(10_000)));
    }

    #[test]
    fn zero_restarts_at_once() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::ZERO);
        c.changed(t0);
        assert_eq!(c.due(), Some(t0));
        assert_eq!(parse_quiet("0"), Ok(Duration::ZERO));
        assert_eq!(parse_quiet("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_quiet("-1").is_err());
    }
}
