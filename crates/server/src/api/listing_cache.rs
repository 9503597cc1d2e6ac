//! Team listings kept as the bytes last sent, each under the stamp (team,
//! name, revision) it was read at. A request reads the team's revision (one
//! primary-key read) and, when it is unchanged, is answered from here
//! without reading or serializing the secrets again. Revisions move in the
//! same transaction as every change to a team's secrets, on any node, so a
//! remembered listing is never older than a write that has been answered.
//!
//! Contract: [`ListingCache::get`] answers only the exact stamp a listing
//! was kept under (team, team name, revision), so nothing needs to
//! invalidate an entry and none is ever stale; a listing of an older
//! revision never replaces a newer one. Memory: at most [`BUDGET_BYTES`] of
//! bodies (plus a slot each); a listing over [`MAX_LISTING_BYTES`] is not
//! kept. The listing of a team at its quota (10,000 secrets, about 1.6 MB)
//! takes under a tenth of the budget; when full, listings read once go
//! before listings read again. Built on `quick_cache` (locks that do not
//! poison).

use crate::service::secrets::ListingStamp;
use axum::body::Bytes;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use tessera_core::cache::{bounded, ENTRY_OVERHEAD_BYTES};

/// Largest listing kept (about 35,000 entries); larger ones are read anew.
pub const MAX_LISTING_BYTES: usize = 4 << 20;
/// All listings kept together, as weighed.
pub const BUDGET_BYTES: usize = 32 << 20;
/// A small team's listing, to shape the cache.
const TYPICAL_LISTING_BYTES: u64 = 16 << 10;

type Kept = (ListingStamp, Bytes);

#[derive(Clone, Copy)]
struct ByBytes;

impl Weighter<String, Kept> for ByBytes {
    fn weight(&self, team_id: &String, (stamp, body): &Kept) -> u64 {
        (team_id.capacity() + stamp.team_id.capacity() + stamp.team_name.capacity() + body.len())
            as u64
            + ENTRY_OVERHEAD_BYTES
    }
}

/// By team id.
pub struct ListingCache {
    kept: Cache<String, Kept, ByBytes>,
}

impl Default for ListingCache {
    fn default() -> Self {
        Self {
            kept: bounded(
                BUDGET_BYTES as u64,
                TYPICAL_LISTING_BYTES,
                // With its stamp and slot.
                MAX_LISTING_BYTES as u64 + 4096,
                ByBytes,
            ),
        }
    }
}

impl ListingCache {
    /// The listing remembered under exactly this stamp.
    pub fn get(&self, stamp: &ListingStamp) -> Option<Bytes> {
        let (kept, body) = self.kept.get(stamp.team_id.as_str())?;
        (kept == *stamp).then_some(body)
    }

    pub fn put(&self, stamp: ListingStamp, body: Bytes) {
        if body.len() > MAX_LISTING_BYTES {
            return;
        }
        // A slower request that read an older revision must not replace a
        // newer listing. (Two puts racing may still both pass this check;
        // the loser then only costs a miss, as `get` wants the exact stamp.)
        if let Some((kept, _)) = self.kept.peek(stamp.team_id.as_str()) {
            if kept.revision > stamp.revision {
                return;
            }
        }
        self.kept.insert(stamp.team_id.clone(), (stamp, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(team: &str, name: &str, revision: i64) -> ListingStamp {
        ListingStamp {
            team_id: team.into(),
            team_name: name.into(),
            revision,
        }
    }

    #[test]
    fn answers_only_the_exact_stamp() {
        let cache = ListingCache::default();
        cache.put(stamp("t1", "a", 3), Bytes::from_static(b"three"));
        assert_eq!(
            cache.get(&stamp("t1", "a", 3)).as_deref(),
            Some(&b"three"[..])
        );
        assert!(cache.get(&stamp("t1", "a", 4)).is_none());
        assert!(cache.get(&stamp("t1", "renamed", 3)).is_none());
        assert!(cache.get(&stamp("t2", "a", 3)).is_none());
        // An older listing arriving late does not replace a newer one.
        cache.put(stamp("t1", "a", 2), Bytes::from_static(b"two"));
        assert_eq!(
            cache.get(&stamp("t1", "a", 3)).as_deref(),
            Some(&b"three"[..])
        );
    }

    #[test]
    fn stays_within_its_budget() {
        let cache = ListingCache::default();
        let big = Bytes::from(vec![b'x'; MAX_LISTING_BYTES]);
        for i in 0..(2 * BUDGET_BYTES / MAX_LISTING_BYTES) {
            cache.put(stamp(&format!("t{i}"), "n", 1), big.clone());
            assert!(cache.kept.weight() <= BUDGET_BYTES as u64);
        }
        assert!(cache.kept.len() >= BUDGET_BYTES / MAX_LISTING_BYTES / 2);
        cache.put(
            stamp("huge", "n", 1),
            Bytes::from(vec![0; MAX_LISTING_BYTES + 1]),
        );
        assert!(cache.get(&stamp("huge", "n", 1)).is_none());
    }

    #[test]
    fn a_team_at_quota_evicts_no_other_listing() {
        let cache = ListingCache::default();
        for t in 0..200 {
            let s = stamp(&format!("small-{t}"), "n", 1);
            cache.put(s.clone(), Bytes::from(vec![b'x'; 16 << 10]));
            assert!(cache.get(&s).is_some());
        }
        // 10,000 entries of about 250 bytes.
        let large = stamp("large", "n", 1);
        for revision in 1..=3 {
            let large = ListingStamp {
                revision,
                ..large.clone()
            };
            cache.put(large.clone(), Bytes::from(vec![b'x'; 10_000 * 250]));
            assert!(cache.get(&large).is_some());
        }
        for t in 0..200 {
            assert!(
                cache.get(&stamp(&format!("small-{t}"), "n", 1)).is_some(),
                "small-{t}"
            );
        }
    }
}
