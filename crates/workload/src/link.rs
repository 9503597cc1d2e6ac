//! A long-poll client's link to its server (`tessera agent`, `tessera run
//! --watch`): when an outage began, when to say so again, and how long to
//! wait before the next attempt (see [`super::backoff`]).
//!
//! An outage is announced at its first failure and then again, with how
//! long it has lasted, at growing intervals (10 s, 20 s, 40 s, … at most
//! 5 minutes apart), so a client that stays cut off keeps saying so; its
//! end is announced once. The decisions take the time as an argument, so
//! they are tested without waiting.

use super::backoff::{self, Backoff};
use std::time::{Duration, Instant};

/// The gap between the first announcement of an outage and the second.
pub const FIRST_REPEAT: Duration = Duration::from_secs(10);

/// The longest gap between two announcements of one outage.
pub const MAX_REPEAT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Outage {
    since: Instant,
    failures: u64,
    /// When to announce it again, and the gap after that.
    next_notice: Instant,
    gap: Duration,
}

/// What to tell the operator about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The first failure of an outage.
    Began,
    /// The outage goes on.
    Continues { lasted: Duration, failures: u64 },
}

/// See the module documentation.
#[derive(Debug)]
pub struct Link {
    /// What the client does meanwhile, for the log ("keeping the last good
    /// files").
    meanwhile: &'static str,
    backoff: Backoff,
    outage: Option<Outage>,
}

impl Link {
    pub fn new(meanwhile: &'static str) -> Self {
        Self {
            meanwhile,
            backoff: Backoff::new(),
            outage: None,
        }
    }

    /// When the current outage began.
    pub fn outage_since(&self) -> Option<Instant> {
        self.outage.as_ref().map(|o| o.since)
    }

    /// Records a failed attempt; says whether to announce it.
    pub fn record_failure(&mut self, now: Instant) -> Option<Notice> {
        let Some(o) = &mut self.outage else {
            self.outage = Some(Outage {
                since: now,
                failures: 1,
                next_notice: now + FIRST_REPEAT,
                gap: FIRST_REPEAT,
            });
            return Some(Notice::Began);
        };
        o.failures += 1;
        if now < o.next_notice {
            return None;
        }
        o.gap = (o.gap * 2).min(MAX_REPEAT);
        o.next_notice = now + o.gap;
        Some(Notice::Continues {
            lasted: now.saturating_duration_since(o.since),
            failures: o.failures,
        })
    }

    /// The wait before the next attempt after a failure at `now`
    /// (at least `retry_after`, when the server asked for one).
    pub fn delay(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        draw: impl FnOnce(u64) -> u64,
    ) -> Duration {
        let age = self
            .outage_since()
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        self.backoff
            .next_delay(age, draw)
            .max(retry_after.unwrap_or(Duration::ZERO))
    }

    /// A failed attempt: logs it when due, returns the wait before the next.
    pub fn failed(&mut self, message: &str, retry_after: Option<Duration>) -> Duration {
        let now = Instant::now();
        match self.record_failure(now) {
            Some(Notice::Began) => tracing::warn!(
                error = %message,
                "server unreachable; {}; retrying",
                self.meanwhile
            ),
            Some(Notice::Continues { lasted, failures }) => tracing::warn!(
                error = %message,
                lasted_seconds = lasted.as_secs(),
                attempts = failures,
                "server still unreachable after {}; {}; retrying",
                human(lasted),
                self.meanwhile
            ),
            None => {}
        }
        self.delay(now, retry_after, backoff::uniform)
    }

    /// The server answered: ends an outage (returns how long it lasted)
    /// and starts the steps again.
    pub fn record_answer(&mut self, now: Instant) -> Option<Duration> {
        self.backoff.reset();
        self.outage
            .take()
            .map(|o| now.saturating_duration_since(o.since))
    }

    /// The server answered; logs the end of an outage.
    pub fn answered(&mut self) {
        if let Some(lasted) = self.record_answer(Instant::now()) {
            tracing::info!(
                lasted_ms = u64::try_from(lasted.as_millis()).unwrap_or(u64::MAX),
                "reconnected"
            );
        }
    }

    /// The server answered "unchanged" long before the wait was over (a
    /// server shutting down answers its waiters at once): wait a step
    /// before asking again, so the client never spins on it.
    pub fn answered_early(&mut self) -> Duration {
        self.answered();
        self.backoff.next_delay(Duration::ZERO, backoff::uniform)
    }
}

/// `4 s`, `3 min 20 s`, `2 h 5 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 if s % 60 == 0 => format!("{} min", s / 60),
        120..=7199 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 < 60 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_announced_at_once_then_at_growing_intervals() {
        let t0 = Instant::now();
        let mut link = Link::new("test");
        let mut announced = Vec::new();
        // One failure every 500 ms for 20 minutes.
        for i in 0..2400u64 {
            let now = t0 + Duration::from_millis(500 * i);
            if let Some(n) = link.record_failure(now) {
                announced.push((now - t0, n));
            }
        }
        let at: Vec<u64> = announced.iter().map(|(d, _)| d.as_secs()).collect();
        assert_eq!(at, [0, 10, 30, 70, 150, 310, 610, 910]);
        assert_eq!(announced[0].1, Notice::Began);
        assert_eq!(
            announced[1].1,
            Notice::Continues {
                lasted: Duration::from_secs(10),
                failures: 21
            }
        );
        // The end of it, once.
        let end = t0 + Duration::from_secs(1200);
        assert_eq!(link.record_answer(end), Some(Duration::from_secs(1200)));
        assert_eq!(link.record_answer(end), None);
        // The next failure is a new outage.
        assert_eq!(link.record_failure(end), Some(Notice::Began));
    }

    #[test]
    fn the_wait_follows_the_outage_and_honours_retry_after() {
        let t0 = Instant::now();
        let mut link = Link::new("test");
        link.record_failure(t0);
        // Early in the outage, never more than a second.
        for i in 0..30 {
            let now = t0 + Duration::from_millis(300 * i);
            let d = link.delay(now, None, |max| max);
            assert!(d <= Duration::from_secs(1), "{d:?}");
        }
        // Ten minutes in, longer steps.
        let late = t0 + Duration::from_secs(600);
        assert_eq!(link.delay(late, None, |max| max), Duration::from_secs(30));
        // A 429's Retry-After is a floor.
        assert_eq!(
            link.delay(late, Some(Duration::from_secs(45)), |_| 0),
            Duration::from_secs(45)
        );
        // An answer starts the steps again.
        link.record_answer(late);
        assert_eq!(link.delay(late, None, |max| max), crate::backoff::BASE);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(4)), "4 s");
        assert_eq!(human(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(human(Duration::from_secs(7500)), "2 h 5 min");
        assert_eq!(human(Duration::from_secs(120)), "2 min");
        assert_eq!(human(Duration::from_secs(7201)), "2 h");
    }
}
