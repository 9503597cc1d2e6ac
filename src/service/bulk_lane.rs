//! The lane that later pages of large listings take: one page at a time per
//! node, and, while other requests are being served, a rest after each page
//! twice as long as the page kept the lane busy.
//!
//! Why rest: on a 2-core machine a page's work (the database's scan, the
//! decoding and rendering) competes for the same cores as every small
//! request. One page at a time already keeps large listings from taking
//! both cores; resting leaves the lane idle two thirds of the time while
//! anyone else is waiting, so a small request that arrives during a burst of
//! large listings waits for at most about one page's work, not for a queue
//! of them. Large listings pay with throughput under contention (measured in
//! docs/performance.md); a large listing on an otherwise idle server never
//! rests, and none waits longer than the others ahead of it.

use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Pages read and rendered at once on a node. Measured with eight clients
/// listing a team of 10,000 secrets: unbounded, their pages took both cores
/// of a 2-core machine, and another team's small listing waited 25-70x its
/// idle p99.
const PAGES_AT_ONCE: usize = 1;

/// Rest after a page, as a multiple of the time it kept the lane busy, when
/// other requests are in flight. Measured on PostgreSQL with eight clients
/// listing 10,000 secrets beside another team's small listings
/// (docs/performance.md): the small listings' loaded p99 was 3.1-12.4 ms
/// resting 0x, 2.9-8.2 ms at 1x, 3.3-4.7 ms at 2x; 4x starved the large
/// listings.
const REST: u32 = 2;

/// The longest rest after one page, however long the page took.
const MAX_REST: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct BulkLane {
    permits: Arc<Semaphore>,
    /// When the lane may start its next page.
    rested_at: Arc<Mutex<Instant>>,
    /// Requests being handled now, less those idle in a long poll (see
    /// [`BulkLane::request`]; signed, so that a wait not counted as a
    /// request, outside HTTP, only lowers it for as long as it lasts).
    in_flight: Arc<AtomicIsize>,
}

/// The lane, held while one page is read and rendered.
pub struct BulkTurn {
    _permit: OwnedSemaphorePermit,
    started: Instant,
    rested_at: Arc<Mutex<Instant>>,
    in_flight: Arc<AtomicIsize>,
}

/// A request counted as in flight until dropped.
pub struct InFlight(Arc<AtomicIsize>);

/// A request not counted while it waits (a long poll), until dropped.
pub struct Idle(Arc<AtomicIsize>);

impl Default for BulkLane {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(PAGES_AT_ONCE)),
            rested_at: Arc::new(Mutex::new(Instant::now())),
            in_flight: Arc::new(AtomicIsize::new(0)),
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

    /// Stops counting the current request while the guard lives: a long-poll
    /// waiter uses no resources a large listing would take from it.
    pub fn idle(&self) -> Idle {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        Idle(self.in_flight.clone())
    }

    /// Waits for the lane and its rest; `None` once the server is stopping.
    pub async fn enter(&self) -> Option<BulkTurn> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let rested_at = *self.rested_at.lock().unwrap_or_else(|e| e.into_inner());
        tokio::time::sleep_until(rested_at).await;
        Some(BulkTurn {
            _permit: permit,
            started: Instant::now(),
            rested_at: self.rested_at.clone(),
            in_flight: self.in_flight.clone(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
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
        *self.rested_at.lock().unwrap_or_else(|e| e.into_inner()) = now + rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long the lane makes the next page wait after a page that kept
    /// it busy for `busy` (on the paused clock).
    async fn rest_after(lane: &BulkLane, busy: Duration) -> Duration {
        let turn = lane.enter().await.expect("lane open");
        tokio::time::advance(busy).await;
        drop(turn);
        let before = Instant::now();
        drop(lane.enter().await.expect("lane open"));
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

        let waiting = lane.idle();
        assert_eq!(
            rest_after(&lane, page).await,
            Duration::ZERO,
            "a long-poll waiter does not count"
        );
        drop(waiting);
        assert_eq!(
            rest_after(&lane, page).await,
            page * REST,
            "its request again"
        );
        drop(request);
        assert_eq!(rest_after(&lane, page).await, Duration::ZERO, "alone again");
    }
}
