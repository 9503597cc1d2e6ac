//! Team listings kept as the bytes last sent, each under the stamp (team,
//! name, revision) it was read at. A request reads the team's revision (one
//! primary-key read) and, when it is unchanged, is answered from here
//! without reading or serializing the secrets again. Revisions move in the
//! same transaction as every change to a team's secrets, on any node, so a
//! remembered listing is never older than a write that has been answered.

use crate::service::secrets::ListingStamp;
use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Largest listing kept (about 35,000 entries); larger ones are read anew.
pub const MAX_LISTING_BYTES: usize = 4 << 20;
/// All listings kept together; when a new one would not fit, others are
/// dropped (in no particular order) until it does.
pub const BUDGET_BYTES: usize = 32 << 20;

#[derive(Default)]
pub struct ListingCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_team: HashMap<String, (ListingStamp, Bytes)>,
    bytes: usize,
}

impl ListingCache {
    /// The listing remembered under exactly this stamp.
    pub fn get(&self, stamp: &ListingStamp) -> Option<Bytes> {
        let entries = self.inner.lock().ok()?;
        let (kept, body) = entries.by_team.get(&stamp.team_id)?;
        (kept == stamp).then(|| body.clone())
    }

    pub fn put(&self, stamp: ListingStamp, body: Bytes) {
        if body.len() > MAX_LISTING_BYTES {
            return;
        }
        let Ok(mut entries) = self.inner.lock() else {
            return;
        };
        if let Some((kept, old)) = entries.by_team.get(&stamp.team_id) {
            // A slower request that read an older revision must not replace
            // a newer listing.
            if kept.revision > stamp.revision {
                return;
            }
            let freed = old.len();
            entries.bytes -= freed;
        }
        while entries.bytes + body.len() > BUDGET_BYTES {
            let Some(victim) = entries.by_team.keys().next().cloned() else {
                break;
            };
            if let Some((_, dropped)) = entries.by_team.remove(&victim) {
                entries.bytes -= dropped.len();
            }
        }
        entries.bytes += body.len();
        entries.by_team.insert(stamp.team_id.clone(), (stamp, body));
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
        }
        let kept = cache.inner.lock().map(|e| (e.bytes, e.by_team.len()));
        let (bytes, teams) = kept.unwrap_or_default();
        assert!(bytes <= BUDGET_BYTES, "{bytes} bytes kept");
        assert_eq!(bytes, teams * MAX_LISTING_BYTES);
        cache.put(
            stamp("huge", "n", 1),
            Bytes::from(vec![0; MAX_LISTING_BYTES + 1]),
        );
        assert!(cache.get(&stamp("huge", "n", 1)).is_none());
    }
}
