//! What the process's caches share: a clock that tests can move, and the
//! shape of a `quick_cache` bounded by an estimate of the bytes it holds.
//!
//! Every cache of the server is a `quick_cache::sync::Cache` weighed in
//! bytes. Its locks are `parking_lot`'s, which do not poison: a panic while
//! one is held cannot turn every later lookup into an error, so no cache
//! needs a rule for a poisoned lock. When a cache is full, the entries seen
//! once are evicted before those seen again (CLOCK-PRO), so a single scan
//! through many new entries does not flush the ones in use.

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where a cache with a time-to-live reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The monotonic clock of the machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for tests of a time-to-live.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed_nanos: AtomicU64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            elapsed_nanos: AtomicU64::new(0),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.elapsed_nanos.load(Ordering::SeqCst))
    }
}

/// Bytes counted for each entry on top of its own estimate: the cache's
/// slot (hash, links, weight) and the allocator's rounding.
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// A cache holding at most `budget` bytes as `weigher` counts them, whose
/// entries weigh about `typical` bytes and at most `largest`.
///
/// `quick_cache` splits its budget evenly between shards, and an entry
/// heavier than its shard's share is never kept; the shards are therefore
/// as many as the machine would like (four per core) but each at least
/// eight times the largest entry.
pub fn bounded<K, V, W>(budget: u64, typical: u64, largest: u64, weigher: W) -> Cache<K, V, W>
where
    K: Eq + Hash,
    V: Clone,
    W: Weighter<K, V> + Clone,
{
    let items = (budget / typical.max(1)).max(1) as usize;
    let mut options = quick_cache::OptionsBuilder::new();
    options
        .weight_capacity(budget)
        .estimated_items_capacity(items)
        .shards(shards(budget, largest) as usize);
    match options.build() {
        Ok(options) => {
            Cache::with_options(options, weigher, Default::default(), Default::default())
        }
        // Not reached (the builder refuses only a missing capacity, and both
        // are set); quick_cache's own sharding is still a bounded cache.
        Err(_) => Cache::with_weighter(items, budget, weigher),
    }
}

/// A power of two (quick_cache would round up; this rounds down, so that
/// each shard keeps room for eight of the largest entries).
fn shards(budget: u64, largest: u64) -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let fitting = (budget / largest.max(1) / 8).max(1);
    let shards = (cores * 4).clamp(1, fitting);
    1u64 << (63 - shards.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_clock_moves_only_when_told() {
        let clock = ManualClock::default();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(499));
        assert_eq!(clock.now() - t0, Duration::from_millis(499));
    }

    #[derive(Clone)]
    struct Bytes;
    impl Weighter<u64, u64> for Bytes {
        fn weight(&self, _: &u64, v: &u64) -> u64 {
            *v
        }
    }

    #[test]
    fn every_shard_holds_eight_of_the_largest_entries() {
        for (budget, largest) in [
            (32u64 << 20, 4u64 << 20),
            (32 << 20, 256 << 10),
            (1 << 20, 1),
        ] {
            let cache: Cache<u64, u64, Bytes> = bounded(budget, 128, largest, Bytes);
            assert!(cache.shard_capacity() >= 8 * largest, "{budget} {largest}");
            assert!(cache.capacity() >= budget && cache.capacity() < budget + 64);
            // The largest entry is kept, and so is an eighth of the budget
            // in entries of that size.
            for k in 0..(budget / largest / 8).min(64) {
                cache.insert(k, largest);
            }
            assert_eq!(cache.len() as u64, (budget / largest / 8).min(64));
        }
    }
}
