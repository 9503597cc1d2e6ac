//! Large answers of `GET /runtime/v1/secrets`, sent page by page.
//!
//! A team whose current values do not fit in one page ([`PAGE_BYTES`] of
//! ciphertext) is not read whole: its answer is streamed, one page read,
//! opened and rendered at a time, in the node's lane of large pages (the
//! one large listings take, see `bulk_lane.rs`), so the server holds about
//! one page per answer however large the team, and large answers give way
//! to small requests.
//!
//! One answer is atomic: every page is read at one instant together with
//! the team's revision, and a page whose revision is not the answer's
//! (the team changed meanwhile) ends the answer with an error before any of
//! its values is sent; the HTTP layer then cuts the response short, so a
//! client never sees a complete answer that mixes two revisions (it sees a
//! broken body, and asks again). Pages are short reads: no read snapshot
//! stays open for the length of an answer (on SQLite it would hold back the
//! WAL's truncation while a slow client reads).
//!
//! Before the first value is sent, the read is recorded like any other
//! (names and versions of the whole scope, durable first): the scope's
//! records are read without their values at the answer's revision.

use super::bulk_lane::BulkTurn;
use super::delivery::{DeliveredSecret, Delivery};
use super::{Service, ServiceError, ServiceResult};
use crate::domain::access::DeliveryAccess;
use crate::domain::secret_value::SecretValue;
use crate::store::{DeliveryPage, Snapshot, StoredSecret};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Ciphertext bytes per page of a streamed answer; a team whose values
/// fit in one page is answered whole (as one body, shared by the waiters
/// one change wakes).
pub const PAGE_BYTES: usize = 1 << 20;

/// Times the first page and the scope's records are read again when the
/// team changed between the two reads.
const ATTEMPTS: usize = 3;

/// What a first read of a team found.
pub(super) enum FirstRead {
    /// Every secret, in one page.
    Whole(Arc<Snapshot>),
    /// The first page of more.
    Large(DeliveryPage),
}

/// A streamed answer not sent yet: claimed by one client (the waiters that
/// one change wakes share whole answers, never a stream), then taken by the
/// HTTP layer.
pub struct StreamSlot {
    claimed: AtomicBool,
    cursor: Mutex<Option<StreamCursor>>,
}

impl StreamSlot {
    /// Whether this caller is the first to claim the stream.
    pub(super) fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// The stream's pages, for the one response that sends them.
    pub fn take(&self) -> Option<StreamCursor> {
        self.cursor.lock().take()
    }
}

/// Where a streamed answer stands.
pub struct StreamCursor {
    grant: DeliveryAccess,
    revision: i64,
    /// The canonical name of the last secret read.
    after: String,
    /// The first page (read to decide that the answer streams), not opened
    /// yet.
    first: Option<Vec<StoredSecret>>,
    more: bool,
}

/// A page of opened values. It keeps its turn in the lane until it is
/// dropped, after rendering.
pub struct OpenedPage {
    pub secrets: Vec<DeliveredSecret>,
    _turn: Option<BulkTurn>,
}

impl Service {
    /// The team's first page: all of it when it fits.
    pub(super) async fn first_read(&self, grant: &DeliveryAccess) -> ServiceResult<FirstRead> {
        let page = self
            .store
            .delivery_page(grant, "", self.limits.delivery_page_bytes)
            .await?;
        if page.more {
            return Ok(FirstRead::Large(page));
        }
        Ok(FirstRead::Whole(Arc::new(Snapshot {
            revision: page.revision,
            secrets: page.secrets,
        })))
    }

    /// A streamed answer from its first page: the scope's records at the
    /// same revision (for the record of the read), and the cursor.
    pub(super) async fn streamed_delivery(
        &self,
        grant: &DeliveryAccess,
        mut first: DeliveryPage,
    ) -> ServiceResult<Delivery> {
        for attempt in 1..=ATTEMPTS {
            let (revision, records) = self.store.delivery_records(grant).await?;
            if revision == first.revision {
                // The answer's revision (its ETag) is the key's scope's;
                // the cursor checks each page against the team's.
                let scope =
                    super::scope_revision::scope_revision_of_records(grant, revision, &records);
                let secrets = records
                    .into_iter()
                    .filter(|r| grant.allows(&r.canonical_name))
                    .map(|r| DeliveredSecret {
                        id: r.id,
                        name: r.name,
                        canonical_name: r.canonical_name,
                        value: SecretValue::new(String::new()),
                        version: r.version,
                        updated_at: r.updated_at,
                        fingerprint: String::new(),
                    })
                    .collect();
                let cursor = StreamCursor {
                    grant: grant.clone(),
                    revision,
                    after: first
                        .secrets
                        .last()
                        .map(|s| s.record.canonical_name.clone())
                        .unwrap_or_default(),
                    more: first.more,
                    first: Some(first.secrets),
                };
                return Ok(Delivery::streamed(
                    scope,
                    secrets,
                    StreamSlot {
                        claimed: AtomicBool::new(false),
                        cursor: Mutex::new(Some(cursor)),
                    },
                ));
            }
            if attempt < ATTEMPTS {
                first = self
                    .store
                    .delivery_page(grant, "", self.limits.delivery_page_bytes)
                    .await?;
            }
        }
        Err(ServiceError::Unavailable(
            "the team kept changing while its values were read; ask again".into(),
        ))
    }

    /// The next page of a streamed answer, opened; `None` when it is
    /// complete. An error when the team moved past the answer's revision:
    /// the answer must then end unfinished.
    pub async fn next_delivery_page(
        &self,
        cursor: &mut StreamCursor,
    ) -> ServiceResult<Option<OpenedPage>> {
        let (stored, turn) = match cursor.first.take() {
            Some(first) => (first, None),
            None if !cursor.more => return Ok(None),
            None => {
                let turn = self.bulk_pages.enter().await;
                let page = self
                    .store
                    .delivery_page(
                        &cursor.grant,
                        &cursor.after,
                        self.limits.delivery_page_bytes,
                    )
                    .await?;
                if page.revision != cursor.revision {
                    return Err(ServiceError::Unavailable(format!(
                        "the team changed (revision {} to {}) while its values were sent",
                        cursor.revision, page.revision
                    )));
                }
                cursor.more = page.more;
                if let Some(last) = page.secrets.last() {
                    cursor.after = last.record.canonical_name.clone();
                }
                if page.secrets.is_empty() {
                    return Ok(None);
                }
                (page.secrets, Some(turn))
            }
        };
        let secrets = stored
            .iter()
            .filter(|s| cursor.grant.allows(&s.record.canonical_name))
            .map(|s| self.open_stored(s))
            .collect::<ServiceResult<Vec<_>>>()?;
        Ok(Some(OpenedPage {
            secrets,
            _turn: turn,
        }))
    }

    /// The (secret id, version) pairs of the scope at `current`, without
    /// reading values: from the kept snapshot when it is of that revision,
    /// otherwise from the records. `None` when the team has moved on.
    pub(super) async fn scope_versions(
        &self,
        grant: &DeliveryAccess,
        current: i64,
    ) -> ServiceResult<Option<Vec<(String, i64)>>> {
        if let Some(kept) = self.sealed_snapshots.at(grant.team().team_id(), current) {
            return Ok(Some(
                kept.secrets
                    .iter()
                    .filter(|s| grant.allows(&s.record.canonical_name))
                    .map(|s| (s.record.id.clone(), s.record.version))
                    .collect(),
            ));
        }
        let (revision, records) = self.store.delivery_records(grant).await?;
        if revision != current {
            return Ok(None);
        }
        Ok(Some(
            records
                .into_iter()
                .filter(|r| grant.allows(&r.canonical_name))
                .map(|r| (r.id, r.version))
                .collect(),
        ))
    }
}
