//! A small time-bounded cache. Entries older than the TTL are ignored and
//! replaced; a node's own changes clear the cache at once, other nodes'
//! changes are seen within the TTL.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keeps at most this many entries by default; a full cache drops its stale
/// entries, and if that is not enough, everything.
const MAX_ENTRIES: usize = 10_000;

pub struct TtlCache<K, V> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<K, (Instant, Arc<V>)>>,
}

impl<K: Eq + Hash, V> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, MAX_ENTRIES)
    }

    /// A cache of at most `max` entries.
    pub fn with_capacity(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let map = self.entries.lock().ok()?;
        let (at, v) = map.get(key)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    pub fn put(&self, key: K, value: Arc<V>) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= self.max && !map.contains_key(&key) {
                let ttl = self.ttl;
                map.retain(|_, (at, _)| at.elapsed() < ttl);
                if map.len() >= self.max {
                    map.clear();
                }
            }
            map.insert(key, (Instant::now(), value));
        }
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let Ok(mut map) = self.entries.lock() {
            map.remove(key);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.lock() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_clear() {
        let c: TtlCache<String, u32> = TtlCache::new(Duration::from_millis(30));
        c.put("a".into(), Arc::new(1));
        assert_eq!(c.get("a").as_deref(), Some(&1));
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get("a").is_none());
        c.put("b".into(), Arc::new(2));
        c.clear();
        assert!(c.get("b").is_none());
    }
}
