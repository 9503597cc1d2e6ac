//! The lane that later pages of large listings take: one page at a time per
//! node, first come first served, and, while other requests are being
//! handled, a rest after each page twice as long as the page kept the lane
//! busy.
//!
//! Why rest: on a 2-core machine a page's work (the database's scan, the
//! decoding and rendering) competes for the same cores as every small
//! request. One page at a time already keeps large listings from taking
//! both cores; resting leaves the lane idle at least two thirds of the time
//! while anyone else is being served. Large listings pay with throughput
//! under contention (measured in docs/performance.md); a large listing on an
//! otherwise idle server never rests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

/// Rest after a page, as a multiple of the time it kept the lane busy, when
/// other requests are in flight. Measured on PostgreSQL with eight clients
/// listing 10,000 secrets beside another team's small listings
/// (docs/performance.md): the small listings' loaded p99 was 3.1-12.4 ms
/// resting 0x, 2.9-8.2 ms at 1x, 3.3-4.7 ms at 2x; 4x starved the large
/// listings.
const REST: u32 = 2;

/// The longest rest after one page, however long the page took.
const MAX_REST: Duration = Duration::from_millis(100);

/// One per node. Measured with eight clients listing a team of 10,000
/// secrets: with their pages unbounded, they took both cores of a 2-core
/// machine and another team's small listing waited 25-70x its idle p99.
#[derive(Debug)]
pub struct BulkLane {
    /// The lane itself (held by one page at a time; tokio's mutex queues
    /// waiters in order), guarding when the next page may start.
    next_start: Arc<Mutex<Instant>>,
    /// Requests being handled now (see [`BulkLane::request`]).
    in_flight: Arc<AtomicUsize>,
}

/// The lane, held while one page is read and rendered.
pub struct BulkTurn {
    next_start: OwnedMutexGuard<Instant>,
    started: Instant,
    in_flight: Arc<AtomicUsize>,
}

/// A request counted as in flight until dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Default for BulkLane {
    fn default() -> Self {
        Self {
            next_start: Arc::new(Mutex::new(Instant::now())),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl BulkLane {
    /// Counts a request as in flight until the guard is dropped: the lane
    /// rests only while some are. Later pages of a streamed listing are read
    /// after its handler has returned, so they do not count themselves.
    pub fn request(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Waits for the lane and for the rest after the page before.
    pub async fn enter(&self) -> BulkTurn {
        let next_start = self.next_start.clone().lock_owned().await;
        tokio::time::sleep_until(*next_start).await;
        BulkTurn {
            next_start,
            started: Instant::now(),
            in_flight: self.in_flight.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for BulkTurn {
    fn drop(&mut self) {
        let now = Instant::now();
        let rest = if self.in_flight.load(Ordering::Relaxed) > 0 {
            ((now - self.started) * REST).min(MAX_REST)
        } else {
            Duration::ZERO
        };
        // Set before the guard (a field) unlocks the lane.
        *self.next_start = now + rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long the lane makes the next page wait after a page that kept
    /// it busy for `busy` (on the paused clock).
    async fn rest_after(lane: &BulkLane, busy: Duration) -> Duration {
        let turn = lane.enter().await;
        tokio::time::advance(busy).await;
        drop(turn);
        let before = Instant::now();
        drop(lane.enter().await);
        Instant::now() - before
    }

    #[tokio::test(start_paused = true)]
    async fn rests_only_while_other_requests_are_in_flight() {
        let lane = BulkLane::default();
        let page = Duration::from_millis(10);
        assert_eq!(rest_after(&lane, page).await, Duration::ZERO, "alone");

        let request = lane.request();
        assert_eq!(
            rest_after(&lane, page).await,
            page * REST,
            "beside a request"
        );
        assert_eq!(
            rest_after(&lane, Duration::from_secs(1)).await,
            MAX_REST,
            "capped however long the page took"
        );
        drop(request);
        assert_eq!(rest_after(&lane, page).await, Duration::ZERO, "alone again");
    }
}
