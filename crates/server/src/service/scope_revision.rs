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

use super::delivery_stream::FirstRead;
use super::{Service, ServiceResult};
use crate::domain::access::DeliveryAccess;
use crate::domain::types::SecretRecord;
use crate::store::Snapshot;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use tokio::sync::OnceCell;

/// The revision of `grant`'s scope in `snapshot`.
pub(super) fn scope_revision(grant: &DeliveryAccess, snapshot: &Snapshot) -> i64 {
    if grant.names().is_none() {
        return snapshot.revision;
    }
    digest(grant, snapshot.secrets.iter().map(|s| &s.record))
}

/// The revision of `grant`'s scope in a team's records read at `revision`
/// (a team too large to read whole: records without values).
pub(super) fn scope_revision_of_records(
    grant: &DeliveryAccess,
    revision: i64,
    records: &[SecretRecord],
) -> i64 {
    if grant.names().is_none() {
        return revision;
    }
    digest(grant, records.iter())
}

/// The digest of the ids and versions of the records in `grant`'s scope,
/// in canonical-name order (sorted here, so that a snapshot and a read of
/// records give the same number whatever order the store returned).
fn digest<'a>(grant: &DeliveryAccess, records: impl Iterator<Item = &'a SecretRecord>) -> i64 {
    let mut in_scope: Vec<&SecretRecord> = records
        .filter(|r| grant.allows(&r.canonical_name))
        .collect();
    in_scope.sort_by(|a, b| a.canonical_name.cmp(&b.canonical_name));
    let mut h = Sha256::new();
    h.update(b"tessera scope revision v1\n");
    for r in in_scope {
        h.update(r.id.as_bytes());
        h.update(b"\0");
        h.update(r.version.to_be_bytes());
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits, never 0.
    ((u64::from_be_bytes(first) >> 11) as i64).max(1)
}

/// A team as read for the scope revisions of its narrowed keys: the kept
/// snapshot when the team fits in one page, its records otherwise (never a
/// large team's values).
enum TeamView {
    Whole(Arc<Snapshot>),
    Records(i64, Vec<SecretRecord>),
}

impl TeamView {
    fn team_revision(&self) -> i64 {
        match self {
            TeamView::Whole(s) => s.revision,
            TeamView::Records(revision, _) => *revision,
        }
    }

    fn scope_revision(&self, grant: &DeliveryAccess) -> i64 {
        match self {
            TeamView::Whole(s) => scope_revision(grant, s),
            TeamView::Records(revision, records) => {
                scope_revision_of_records(grant, *revision, records)
            }
        }
    }
}

type Reading = Weak<OnceCell<Arc<TeamView>>>;

/// Teams being read for waiters woken by the same team revision, so that a
/// thousand narrowed waiters woken by one write read the team once.
#[derive(Default)]
pub(super) struct SnapshotFlight {
    reading: Mutex<HashMap<(String, i64), Reading>>,
}

impl Service {
    /// The scope revision of `grant` at the team revision `woken_at` (or
    /// later), and the team revision it was read at. A key that reads its
    /// whole team has the team's revision, with no read.
    pub(super) async fn scope_revision_at(
        &self,
        grant: &DeliveryAccess,
        woken_at: i64,
    ) -> ServiceResult<(i64, i64)> {
        if grant.names().is_none() {
            return Ok((woken_at, woken_at));
        }
        let cell = {
            let mut reading = self.snapshot_flight.reading.lock();
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
        let view = cell
            .get_or_try_init(|| async {
                let view = match self.sealed_snapshot(grant, Some(woken_at)).await? {
                    FirstRead::Whole(snapshot) => TeamView::Whole(snapshot),
                    FirstRead::Large(_) => {
                        let (revision, records) = self.store.delivery_records(grant).await?;
                        TeamView::Records(revision, records)
                    }
                };
                ServiceResult::Ok(Arc::new(view))
            })
            .await?;
        Ok((view.scope_revision(grant), view.team_revision()))
    }
}
