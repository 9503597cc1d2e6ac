//! The last snapshot read of each team's secrets (ciphertexts only), so an
//! unchanged team is answered with one primary-key read of its revision
//! instead of every row.
//!
//! Contract: a kept snapshot is valid at exactly one team revision, the one
//! it was read at ([`SnapshotCache::at`] answers nothing else). Revisions
//! only grow and move in the same transaction as any change to the team's
//! secrets, on every node, so a snapshot found at the revision just read is
//! never older than a write already answered: staleness is nil, and nothing
//! else needs to invalidate it. Entries unused for [`KEPT_FOR`] go, which
//! only gives the room back. Memory: at most [`BUDGET_BYTES`], weighed as
//! ciphertexts plus records; a snapshot whose ciphertexts exceed
//! [`MAX_KEPT_SNAPSHOT_BYTES`] is not kept at all, so a team at its quota
//! (10,000 secrets or 64 MiB of values) never displaces smaller teams'.

use super::cache::{HeapSize, TtlCache};
use crate::store::{Snapshot, StoredSecret};
use std::sync::Arc;
use std::time::Duration;

/// A team's snapshot is kept for the next answer only when its ciphertexts
/// take at most this much memory (about 1,200 values of 100 bytes, each
/// sealed in about 200 bytes).
pub const MAX_KEPT_SNAPSHOT_BYTES: usize = 256 << 10;
/// All kept snapshots together, as weighed: about 48 of the largest kept
/// (ciphertexts and records), hundreds of small teams'.
pub const BUDGET_BYTES: u64 = 32 << 20;
/// The weight of the largest snapshot kept, with its records.
const LARGEST_ENTRY_BYTES: u64 = 1 << 20;
/// How long an unused snapshot may stay.
pub const KEPT_FOR: Duration = Duration::from_secs(3600);

impl HeapSize for Snapshot {
    fn heap_bytes(&self) -> usize {
        self.secrets.capacity() * std::mem::size_of::<StoredSecret>()
            + self.secrets.iter().map(stored_heap_bytes).sum::<usize>()
    }
}

fn stored_heap_bytes(s: &StoredSecret) -> usize {
    let r = &s.record;
    s.ciphertext.capacity()
        + s.version_id.heap_bytes()
        + r.id.heap_bytes()
        + r.org_id.heap_bytes()
        + r.team_id.heap_bytes()
        + r.team_name.heap_bytes()
        + r.name.heap_bytes()
        + r.canonical_name.heap_bytes()
}

pub struct SnapshotCache {
    kept: TtlCache<String, Snapshot>,
}

impl Default for SnapshotCache {
    fn default() -> Self {
        Self {
            kept: TtlCache::with_budget(KEPT_FOR, BUDGET_BYTES, LARGEST_ENTRY_BYTES),
        }
    }
}

impl SnapshotCache {
    /// The team's kept snapshot, of whatever revision (to decide whether the
    /// revision is worth reading); use it only through [`Self::at`].
    pub fn holds(&self, team_id: &str) -> bool {
        self.kept.get(team_id).is_some()
    }

    /// The team's snapshot read at exactly `revision`.
    pub fn at(&self, team_id: &str, revision: i64) -> Option<Arc<Snapshot>> {
        self.kept.get(team_id).filter(|s| s.revision == revision)
    }

    /// Keeps `snapshot` as the team's, unless it is too large to.
    pub fn put(&self, team_id: &str, snapshot: Arc<Snapshot>) {
        let bytes: usize = snapshot.secrets.iter().map(|s| s.ciphertext.len()).sum();
        if bytes <= MAX_KEPT_SNAPSHOT_BYTES {
            self.kept.put(team_id.to_owned(), snapshot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::SecretRecord;

    fn snapshot(revision: i64, secrets: usize, value_bytes: usize) -> Arc<Snapshot> {
        let secrets = (0..secrets)
            .map(|i| StoredSecret {
                record: SecretRecord {
                    id: format!("secret-{i:020}"),
                    org_id: "org".into(),
                    team_id: "team".into(),
                    team_name: "team".into(),
                    name: format!("NAME_{i}"),
                    canonical_name: format!("NAME_{i}"),
                    created_at: 0,
                    updated_at: 0,
                    version: 1,
                },
                version_id: Some("v".into()),
                ciphertext: vec![0; value_bytes],
            })
            .collect();
        Arc::new(Snapshot { revision, secrets })
    }

    #[test]
    fn valid_at_exactly_one_revision() {
        let cache = SnapshotCache::default();
        cache.put("t", snapshot(7, 3, 100));
        assert!(cache.holds("t"));
        assert_eq!(cache.at("t", 7).map(|s| s.revision), Some(7));
        assert!(cache.at("t", 8).is_none());
        assert!(cache.at("t", 6).is_none());
        assert!(cache.at("other", 7).is_none());
        // A newer read replaces it.
        cache.put("t", snapshot(8, 3, 100));
        assert!(cache.at("t", 7).is_none());
        assert!(cache.at("t", 8).is_some());
    }

    #[test]
    fn a_team_at_quota_is_not_kept_and_evicts_nobody() {
        let cache = SnapshotCache::default();
        for t in 0..100 {
            cache.put(&format!("small-{t}"), snapshot(1, 20, 200));
        }
        // 10,000 secrets of 100 bytes (sealed in about 200).
        cache.put("large", snapshot(1, 10_000, 200));
        assert!(!cache.holds("large"));
        // The largest snapshot kept fits its weight estimate.
        let largest = snapshot(1, MAX_KEPT_SNAPSHOT_BYTES / 200, 200);
        let weight = (std::mem::size_of::<Snapshot>() + largest.heap_bytes()) as u64;
        assert!(weight <= LARGEST_ENTRY_BYTES, "{weight}");
        cache.put("largest", largest);
        assert!(cache.holds("largest"));
        for t in 0..100 {
            assert!(cache.holds(&format!("small-{t}")), "small-{t} evicted");
        }
        assert!(cache.kept.weight() <= BUDGET_BYTES);
    }
}
