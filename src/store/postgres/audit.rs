//! The audit aggregate on PostgreSQL. Each node appends to [`SLOTS`] chains
//! of its own; a transaction that records a change holds one slot from the
//! append to its commit, so a node's writes wait for each other only when
//! more than [`SLOTS`] commit at once, and nodes never wait for each other.

use super::{ask, bounded, Asked, PostgresStore};
use crate::audit::chain::{ChainHead, ChainKey, StoredEvent};
use crate::audit::event::AuditEvent;
use crate::store::audit::{event_row, seq_col, AuditKey, ChainSlot, EVENT_COLUMNS};
use crate::store::{AuditStore, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

/// Chains per node: as many transactions as this can append at once.
const SLOTS: usize = 8;

pub struct AuditChains {
    key: AuditKey,
    slots: Vec<Mutex<ChainSlot>>,
    next: AtomicUsize,
}

impl AuditChains {
    pub(super) fn new() -> Self {
        Self {
            key: AuditKey::default(),
            slots: (0..SLOTS)
                .map(|n| Mutex::new(ChainSlot::new("pg", n)))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A chain for one transaction: the first idle one (so that a quiet
    /// node writes one long chain rather than many short ones), else the
    /// next in turn.
    pub(super) async fn slot(&self) -> MutexGuard<'_, ChainSlot> {
        for slot in &self.slots {
            if let Ok(slot) = slot.try_lock() {
                return slot;
            }
        }
        let next = self.next.fetch_add(1, Ordering::Relaxed);
        self.slots[next % SLOTS].lock().await
    }

    /// Links `events` to `slot`'s chain and inserts them in `tx`; the head
    /// to hand to [`commit`] (`None` when there was nothing to record).
    /// Any failure fails the transaction: no change goes unrecorded.
    pub(super) async fn append(
        &self,
        tx: &mut PgConnection,
        slot: &ChainSlot,
        events: Vec<AuditEvent>,
    ) -> StoreResult<Option<ChainHead>> {
        if events.is_empty() {
            return Ok(None);
        }
        let key = self.key.get()?;
        let head = match slot.known_head() {
            Some(head) => head.clone(),
            None => {
                let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, mac FROM audit_events WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(slot.id())
                .fetch_optional(&mut *tx)
                .await?;
                slot.head_from(last)?
            }
        };
        let (linked, head) = slot.link(key, head, events)?;
        insert(tx, &linked).await.map_err(|e| {
            tracing::error!(error = %e, "the audit log could not record a change; refusing it");
            StoreError::unavailable(
                "the audit log could not record the change; nothing was changed",
            )
        })?;
        Ok(Some(head))
    }
}

/// Events to append on their own (runtime reads, failed authentications),
/// queued so that those arriving together share one transaction (one
/// commit, one fsync) instead of one each: 1,000 workloads woken by one
/// change each record a read at once.
type Queued = Asked<Vec<AuditEvent>, ()>;

/// Tasks appending queued events, each one transaction at a time.
const APPENDERS: usize = 2;
/// Events per transaction, at most.
const MAX_APPEND: usize = 1024;

#[derive(Clone)]
pub struct Appender {
    tx: tokio::sync::mpsc::Sender<Queued>,
}

impl Appender {
    pub(super) fn start(pool: PgPool, chains: Arc<AuditChains>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel::<Queued>(4 * MAX_APPEND);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..APPENDERS {
            let (pool, chains, rx) = (pool.clone(), chains.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let mut pending = Vec::new();
                    if rx.lock().await.recv_many(&mut pending, MAX_APPEND).await == 0 {
                        break;
                    }
                    let events = pending.iter().flat_map(|(e, _)| e.clone()).collect();
                    let result = append_alone(&pool, &chains, events).await;
                    for (_, done) in pending {
                        let _ = done.send(result.clone());
                    }
                }
            });
        }
        Self { tx }
    }

    pub(super) async fn append(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        ask(&self.tx, events, "audit appender").await
    }
}

/// One transaction that records only `events`.
async fn append_alone(
    pool: &PgPool,
    chains: &AuditChains,
    events: Vec<AuditEvent>,
) -> StoreResult<()> {
    bounded(async {
        let mut tx = pool.begin().await?;
        let mut slot = chains.slot().await;
        let head = chains.append(&mut tx, &slot, events).await?;
        commit(tx, &mut slot, head).await
    })
    .await
}

/// Inserts linked events, one statement for all.
async fn insert(tx: &mut PgConnection, linked: &[StoredEvent]) -> StoreResult<()> {
    fn col<T>(linked: &[StoredEvent], f: impl Fn(&StoredEvent) -> T) -> Vec<T> {
        linked.iter().map(f).collect()
    }
    let seqs = linked
        .iter()
        .map(|s| seq_col(s.event.seq))
        .collect::<StoreResult<Vec<i64>>>()?;
    sqlx::query(&format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS})
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
             $13::text[], $14::text[], $15::text[], $16::bytea[])"
    ))
    .bind(col(linked, |s| s.event.chain.clone()))
    .bind(seqs)
    .bind(col(linked, |s| s.event.time))
    .bind(col(linked, |s| s.event.actor_key.clone()))
    .bind(col(linked, |s| s.event.actor_type.clone()))
    .bind(col(linked, |s| s.event.actor_user.clone()))
    .bind(col(linked, |s| s.event.org_id.clone()))
    .bind(col(linked, |s| s.event.team_id.clone()))
    .bind(col(linked, |s| s.event.action.clone()))
    .bind(col(linked, |s| s.event.target_id.clone()))
    .bind(col(linked, |s| s.event.target_name.clone()))
    .bind(col(linked, |s| s.event.result.clone()))
    .bind(col(linked, |s| s.event.request_id.clone()))
    .bind(col(linked, |s| s.event.client.clone()))
    .bind(col(linked, |s| s.event.detail.clone()))
    .bind(col(linked, |s| s.mac.to_vec()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Commits `tx`; the slot moves to `head` only once the commit succeeded,
/// and reads its head again after a commit that failed or may have.
pub(super) async fn commit(
    tx: Transaction<'_, Postgres>,
    slot: &mut ChainSlot,
    head: Option<ChainHead>,
) -> StoreResult<()> {
    match tx.commit().await {
        Ok(()) => {
            if let Some(head) = head {
                slot.committed(head);
            }
            Ok(())
        }
        Err(e) => {
            slot.forget();
            Err(e.into())
        }
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    fn install_audit_key(&self, key: Arc<ChainKey>) {
        self.audit.key.install(key);
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        self.appender.append(events).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_chains(&self) -> StoreResult<Vec<String>> {
        let query = sqlx::query("SELECT DISTINCT chain FROM audit_events ORDER BY chain");
        self.all(query, |r| crate::store::row::Row::col(r, 0)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_events(
        &self,
        chain: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain = $1 AND seq > $2
             ORDER BY seq LIMIT $3"
        );
        let query = sqlx::query(&sql)
            .bind(chain)
            .bind(seq_col(after)?)
            .bind(limit as i64);
        self.all(query, event_row).await
    }
}
