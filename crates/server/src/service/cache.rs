//! A time-bounded cache weighed in bytes.
//!
//! Contract: [`TtlCache::get`] answers a value only while it is younger
//! than the TTL, as the injected [`Clock`] reads time; a node's own changes
//! [`TtlCache::clear`] or [`TtlCache::remove`] what they touch at once,
//! other nodes' changes are therefore seen within the TTL. The memory held
//! stays within the budget given at construction, as counted by
//! [`HeapSize`] (an estimate: each entry's own size, what it owns on the
//! heap and [`ENTRY_OVERHEAD_BYTES`]); when full, entries seen once go
//! before those seen again, never everything at once. Built on
//! `quick_cache`, whose locks do not poison.

use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use tessera_core::cache::{Clock, ManualClock, SystemClock, ENTRY_OVERHEAD_BYTES};

/// The budget of [`TtlCache::new`]: about 16,000 entries of identity data
/// (a team, a resolved key) of 512 bytes.
pub const DEFAULT_BUDGET_BYTES: u64 = 8 << 20;
/// The entry size the budget is split by, absent a better guess.
const TYPICAL_ENTRY_BYTES: u64 = 256;
/// The heaviest entry a default cache is shaped for.
const DEFAULT_LARGEST_ENTRY_BYTES: u64 = 64 << 10;

/// Bytes a value owns behind pointers (not its own `size_of`), estimated.
pub trait HeapSize {
    fn heap_bytes(&self) -> usize;
}

impl HeapSize for String {
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

impl HeapSize for i64 {
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl<T: HeapSize> HeapSize for Option<T> {
    fn heap_bytes(&self) -> usize {
        self.as_ref().map_or(0, HeapSize::heap_bytes)
    }
}

impl<T: HeapSize> HeapSize for Vec<T> {
    fn heap_bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<T>() + self.iter().map(T::heap_bytes).sum::<usize>()
    }
}

impl HeapSize for u8 {
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl<A: HeapSize, B: HeapSize> HeapSize for (A, B) {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes() + self.1.heap_bytes()
    }
}

impl<A: HeapSize, B: HeapSize, C: HeapSize> HeapSize for (A, B, C) {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes() + self.1.heap_bytes() + self.2.heap_bytes()
    }
}

impl HeapSize for crate::domain::types::Team {
    fn heap_bytes(&self) -> usize {
        self.id.heap_bytes() + self.org_id.heap_bytes() + self.name.heap_bytes()
    }
}

struct Entry<V> {
    at: Instant,
    value: Arc<V>,
}

impl<V> Clone for Entry<V> {
    fn clone(&self) -> Self {
        Self {
            at: self.at,
            value: self.value.clone(),
        }
    }
}

/// Weighs an entry: key and value (the value's `Arc` allocation with its
/// two counts), what both own, and the slot.
#[derive(Clone, Copy)]
struct ByBytes;

impl<K: HeapSize, V: HeapSize> Weighter<K, Entry<V>> for ByBytes {
    fn weight(&self, key: &K, entry: &Entry<V>) -> u64 {
        let inline = std::mem::size_of::<K>() + std::mem::size_of::<Entry<V>>();
        let shared = 16 + std::mem::size_of::<V>();
        (inline + shared + key.heap_bytes() + entry.value.heap_bytes()) as u64
            + ENTRY_OVERHEAD_BYTES
    }
}

pub struct TtlCache<K, V> {
    ttl: Duration,
    clock: Arc<dyn Clock>,
    entries: Cache<K, Entry<V>, ByBytes>,
}

impl<K: Eq + Hash + HeapSize, V: HeapSize> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self::with_budget(ttl, DEFAULT_BUDGET_BYTES, DEFAULT_LARGEST_ENTRY_BYTES)
    }

    /// A cache of at most `budget` bytes, whose entries weigh at most about
    /// `largest` (a heavier one is not kept).
    pub fn with_budget(ttl: Duration, budget: u64, largest: u64) -> Self {
        Self {
            ttl,
            clock: Arc::new(SystemClock),
            entries: tessera_core::cache::bounded(budget, TYPICAL_ENTRY_BYTES, largest, ByBytes),
        }
    }

    /// The same cache reading time from `clock` (tests move it by hand).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let entry = self.entries.get(key)?;
        if self.clock.now().saturating_duration_since(entry.at) < self.ttl {
            return Some(entry.value);
        }
        // Expired: give its room back, unless a newer value replaced it.
        self.entries.remove_if(key, |kept| kept.at == entry.at);
        None
    }

    pub fn put(&self, key: K, value: Arc<V>) {
        let at = self.clock.now();
        self.entries.insert(key, Entry { at, value });
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.remove(key);
    }

    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Bytes held, as weighed.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }

    /// The budget.
    pub fn capacity(&self) -> u64 {
        self.entries.capacity()
    }

    /// Whether `key` is held (expired or not), without counting as a use.
    #[cfg(test)]
    pub fn holds<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl: Duration) -> (TtlCache<String, i64>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (TtlCache::new(ttl).with_clock(clock.clone()), clock)
    }

    #[test]
    fn an_entry_is_answered_only_within_its_ttl() {
        let ttl = Duration::from_millis(500);
        let (c, clock) = cache(ttl);
        c.put("a".into(), Arc::new(1));
        clock.advance(ttl - Duration::from_millis(1));
        assert_eq!(c.get("a").as_deref(), Some(&1));
        clock.advance(Duration::from_millis(1));
        assert!(c.get("a").is_none());
        // An expired entry gives its room back.
        assert!(!c.holds("a"));
        // A new value starts a new TTL.
        c.put("a".into(), Arc::new(2));
        clock.advance(ttl / 2);
        assert_eq!(c.get("a").as_deref(), Some(&2));
    }

    #[test]
    fn local_changes_apply_at_once() {
        let (c, _clock) = cache(Duration::from_secs(3600));
        c.put("a".into(), Arc::new(1));
        c.put("b".into(), Arc::new(2));
        c.remove("a");
        assert!(c.get("a").is_none());
        assert_eq!(c.get("b").as_deref(), Some(&2));
        c.clear();
        assert!(c.get("b").is_none());
    }

    #[test]
    fn stays_within_its_budget_and_keeps_what_is_used() {
        let budget = 256 << 10;
        let c: TtlCache<String, String> =
            TtlCache::with_budget(Duration::from_secs(3600), budget, 4 << 10);
        let used: Vec<String> = (0..100).map(|i| format!("used-{i}")).collect();
        for k in &used {
            c.put(k.clone(), Arc::new("v".repeat(100)));
            assert!(c.get(k.as_str()).is_some());
        }
        // A scan of ten times the budget in entries seen once.
        for i in 0..10_000 {
            c.put(format!("scan-{i}"), Arc::new("v".repeat(100)));
            assert!(c.weight() <= c.capacity());
            if i % 100 == 0 {
                for k in &used {
                    assert!(c.get(k.as_str()).is_some(), "{k} evicted by a scan");
                }
            }
        }
        assert!(c.capacity() >= budget);
    }

    /// The fingerprint cache's budget holds a full fetch of a team at the
    /// secrets quota beside other teams' fingerprints, evicting none.
    #[test]
    fn fingerprints_of_a_team_at_quota_evict_no_other_team() {
        type Version = (String, i64, Option<String>);
        let c: TtlCache<Version, String> = TtlCache::with_budget(
            Duration::from_secs(3600),
            super::super::FINGERPRINTS_BUDGET_BYTES,
            super::super::SMALL_ENTRY_BYTES,
        );
        let version = |team: usize, i: usize| -> Version {
            (
                format!("sec_{team:04}{i:018}"),
                1,
                Some(format!("ver_{i:022}")),
            )
        };
        let fingerprint = || Arc::new("f".repeat(43));
        for t in 1..=100 {
            for i in 0..50 {
                c.put(version(t, i), fingerprint());
            }
        }
        for _ in 0..2 {
            for i in 0..10_000 {
                if c.get(&version(0, i)).is_none() {
                    c.put(version(0, i), fingerprint());
                }
            }
        }
        for t in 0..=100 {
            let n = if t == 0 { 10_000 } else { 50 };
            for i in 0..n {
                assert!(
                    c.holds(&version(t, i)),
                    "team {t}'s fingerprint {i} evicted"
                );
            }
        }
        assert!(
            c.weight() * 2 < c.capacity(),
            "{} of {}",
            c.weight(),
            c.capacity()
        );
    }
}
