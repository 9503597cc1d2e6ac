//! The revision of a key's scope: what a read key's `ETag` (and its
//! answers' `revision`) is, and what its long poll waits on.
//!
//! A key that reads its whole team has the team's revision. A key narrowed
//! to some names has a number that moves only with its scope: a digest of
//! the ids and versions of the secrets in its scope. A write outside the
//! scope leaves it as it is, so it neither wakes the key's long polls nor
//! is recorded as a read of it. The digest is computed from what every node
//! reads alike (no node-local memory), so nodes agree on it; it is opaque
//! (compare it for equality only) and fits in 53 bits (exact in JSON
//! numbers of every language).

use super::{Service, ServiceResult};
use crate::domain::access::DeliveryAccess;
use crate::store::Snapshot;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::OnceCell;

/// The revision of `grant`'s scope in `snapshot`.
pub(super) fn scope_revision(grant: &DeliveryAccess, snapshot: &Snapshot) -> i64 {
    if grant.names().is_none() {
        return snapshot.revision;
    }
    let mut h = Sha256::new();
    h.update(b"tessera scope revision v1\n");
    // The snapshot's order is the store's (by canonical name), the same on
    // every node.
    for s in snapshot
        .secrets
        .iter()
        .filter(|s| grant.allows(&s.record.canonical_name))
    {
        h.update(s.record.id.as_bytes());
        h.update(b"\0");
        h.update(s.record.version.to_be_bytes());
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits, never 0.
    ((u64::from_be_bytes(first) >> 11) as i64).max(1)
}

type Reading = Weak<OnceCell<Arc<Snapshot>>>;

/// Snapshots being read for waiters woken by the same team revision, so
/// that a thousand waiters woken by one write read the team once.
#[derive(Default)]
pub(super) struct SnapshotFlight {
    reading: Mutex<HashMap<(String, i64), Reading>>,
}

impl Service {
    /// The scope revision of `grant` at the team revision `woken_at` (or
    /// later), and the team revision it was read at.
    pub(super) async fn scope_revision_at(
        &self,
        grant: &DeliveryAccess,
        woken_at: i64,
    ) -> ServiceResult<(i64, i64)> {
        let cell = {
            let mut reading = self
                .snapshot_flight
                .reading
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            reading.retain(|_, cell| cell.strong_count() > 0);
            let slot = (grant.team().team_id().to_owned(), woken_at);
            match reading.get(&slot).and_then(Weak::upgrade) {
                Some(cell) => cell,
                None => {
                    let cell = Arc::new(OnceCell::new());
                    reading.insert(slot, Arc::downgrade(&cell));
                    cell
                }
            }
        };
        let snapshot = cell
            .get_or_try_init(|| self.sealed_snapshot(grant, Some(woken_at)))
            .await?;
        Ok((scope_revision(grant, snapshot), snapshot.revision))
    }
}
