//! The audit aggregate on PostgreSQL. Each node appends to [`SLOTS`] chains
//! of its own; a transaction that records a change holds one slot from the
//! append to its commit, so a node's writes wait for each other only when
//! more than [`SLOTS`] commit at once, and nodes never wait for each other.

use super::{bounded, PostgresStore};
use crate::audit::{
    audit_query_sql, chains_sql, event_row, head_row, heads_sql, prune_event, prune_sql, seq_col,
    AuditFilter, AuditKey, ChainSlot, EVENT_COLUMNS,
};
use crate::event_batcher::EventBatcher;
use crate::{AuditStore, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tessera_core::audit::chain::{ChainHead, ChainKey, StoredEvent};
use tessera_core::audit::event::AuditEvent;
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
        slot: &mut ChainSlot,
        events: Vec<AuditEvent>,
    ) -> StoreResult<Option<ChainHead>> {
        let Some((linked, head)) = self.link(tx, slot, events).await? else {
            return Ok(None);
        };
        let cols = EventColumns::of(&linked)?;
        let sql = format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}) {}",
            cols.select(1)
        );
        cols.bind(sqlx::query(&sql))
            .execute(&mut *tx)
            .await
            .map_err(refused)?;
        Ok(Some(head))
    }

    /// Links `events` to `slot`'s chain (reading its head through `conn`
    /// when the slot does not know it), without writing them; `None` when
    /// the log is off or there is nothing to record.
    pub(super) async fn link(
        &self,
        conn: &mut PgConnection,
        slot: &mut ChainSlot,
        events: Vec<AuditEvent>,
    ) -> StoreResult<Option<(Vec<StoredEvent>, ChainHead)>> {
        let Some(key) = self.key.get()? else {
            return Ok(None);
        };
        if events.is_empty() {
            return Ok(None);
        }
        let head = match slot.known_head() {
            Some(head) => head.clone(),
            None => {
                let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, mac FROM audit_events WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(slot.id())
                .fetch_optional(&mut *conn)
                .await?;
                slot.head_from(last)?
            }
        };
        slot.link(key, head, events).map(Some)
    }
}

/// Why a change was refused when its events could not be written (the
/// detail goes to the log).
pub(super) fn refused(e: sqlx::Error) -> StoreError {
    tracing::error!(error = %e, "the audit log could not record a change; refusing it");
    StoreError::unavailable("the audit log could not record the change; nothing was changed")
}

/// Linked events as one array per column, for `unnest`.
pub(super) struct EventColumns {
    chain: Vec<String>,
    seq: Vec<i64>,
    time: Vec<i64>,
    text: [Vec<Option<String>>; 9],
    action: Vec<String>,
    result: Vec<String>,
    detail: Vec<Option<String>>,
    mac: Vec<Vec<u8>>,
}

impl EventColumns {
    pub(super) fn of(linked: &[StoredEvent]) -> StoreResult<Self> {
        let text = |f: fn(&AuditEvent) -> &Option<String>| -> Vec<Option<String>> {
            linked.iter().map(|s| f(&s.event).clone()).collect()
        };
        Ok(Self {
            chain: linked.iter().map(|s| s.event.chain.clone()).collect(),
            seq: linked
                .iter()
                .map(|s| seq_col(s.event.seq))
                .collect::<StoreResult<_>>()?,
            time: linked.iter().map(|s| s.event.time).collect(),
            text: [
                text(|e| &e.actor_key),
                text(|e| &e.actor_type),
                text(|e| &e.actor_user),
                text(|e| &e.org_id),
                text(|e| &e.team_id),
                text(|e| &e.target_id),
                text(|e| &e.target_name),
                text(|e| &e.request_id),
                text(|e| &e.client),
            ],
            action: linked.iter().map(|s| s.event.action.clone()).collect(),
            result: linked.iter().map(|s| s.event.result.clone()).collect(),
            detail: text(|e| &e.detail),
            mac: linked.iter().map(|s| s.mac.to_vec()).collect(),
        })
    }

    /// `SELECT …` of the events in [`EVENT_COLUMNS`] order, from the 16
    /// parameters that [`EventColumns::bind`] binds, numbered from `first`.
    pub(super) fn select(&self, first: usize) -> String {
        let p = |i: usize, ty: &str| format!("${}::{ty}[]", first + i);
        format!(
            "SELECT u.chain, u.seq, u.time, u.actor_key, u.actor_type, u.actor_user, u.org_id,
                    u.team_id, u.action, u.target_id, u.target_name, u.result, u.request_id,
                    u.client, u.detail, u.mac
             FROM unnest({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})
                  AS u(chain, seq, time, actor_key, actor_type, actor_user, org_id, team_id,
                       target_id, target_name, request_id, client, action, result, detail, mac)",
            p(0, "text"),
            p(1, "bigint"),
            p(2, "bigint"),
            p(3, "text"),
            p(4, "text"),
            p(5, "text"),
            p(6, "text"),
            p(7, "text"),
            p(8, "text"),
            p(9, "text"),
            p(10, "text"),
            p(11, "text"),
            p(12, "text"),
            p(13, "text"),
            p(14, "text"),
            p(15, "bytea"),
        )
    }

    /// Binds the 16 arrays, in the order [`EventColumns::select`] reads them.
    pub(super) fn bind<'q>(&'q self, query: super::Query<'q>) -> super::Query<'q> {
        let mut query = query.bind(&self.chain).bind(&self.seq).bind(&self.time);
        for col in &self.text {
            query = query.bind(col);
        }
        query
            .bind(&self.action)
            .bind(&self.result)
            .bind(&self.detail)
            .bind(&self.mac)
    }
}

/// Tasks appending read events (see `store::event_batcher`), each one
/// statement at a time. One: under fetch-100 it appends about 25 events per
/// statement (measured), and a second task measured no faster.
const APPENDERS: usize = 1;

/// The batcher of events that record no change of their own.
pub(super) fn appender(pool: PgPool, chains: Arc<AuditChains>) -> EventBatcher {
    EventBatcher::start(APPENDERS, move |events| {
        let (pool, chains) = (pool.clone(), chains.clone());
        async move { append_alone(&pool, &chains, events).await }
    })
}

/// One statement, in a transaction of its own, that records only `events`.
/// It commits without waiting for the WAL's flush (`synchronous_commit`
/// off, set by the statement itself for its own transaction only): these
/// events record reads, not changes, and their callers wait for the commit
/// before sending any value; a crash of the database within its WAL
/// writer's delay (by default up to 0.6 s) can lose them, never a change's
/// event. Measured with fetch-100, waiting for the flush as well cost a
/// quarter of the fetches. One statement, not four round trips (`BEGIN`,
/// `SET LOCAL`, `INSERT`, `COMMIT`).
async fn append_alone(
    pool: &PgPool,
    chains: &AuditChains,
    events: Vec<AuditEvent>,
) -> StoreResult<()> {
    bounded(async {
        let mut conn = pool.acquire().await?;
        let mut slot = chains.slot().await;
        let Some((linked, head)) = chains.link(&mut conn, &mut slot, events).await? else {
            return Ok(());
        };
        let cols = EventColumns::of(&linked)?;
        let sql = format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}) {}
             CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS lazy",
            cols.select(1)
        );
        // Outside an explicit transaction the statement commits on its own;
        // its answer comes after that commit.
        match cols.bind(sqlx::query(&sql)).execute(&mut *conn).await {
            Ok(_) => {
                slot.committed(head);
                Ok(())
            }
            Err(e) => {
                slot.forget();
                Err(refused(e))
            }
        }
    })
    .await
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

impl PostgresStore {
    /// Commits `tx` with `events` recorded in it.
    pub(super) async fn commit_recorded(
        &self,
        mut tx: Transaction<'_, Postgres>,
        events: Vec<AuditEvent>,
    ) -> StoreResult<()> {
        let mut slot = self.audit.slot().await;
        let head = self.audit.append(&mut tx, &mut slot, events).await?;
        commit(tx, &mut slot, head).await
    }

    /// One statement, and `event` when it changed rows, in one transaction;
    /// how many rows it changed.
    pub(super) async fn execute_recorded(
        &self,
        query: super::Query<'_>,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let n = query.execute(&mut *tx).await?.rows_affected();
            let events = if n > 0 { vec![event] } else { Vec::new() };
            self.commit_recorded(tx, events).await?;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    fn install_audit_key(&self, key: Option<Arc<ChainKey>>) {
        self.audit.key.install(key);
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        self.appender.append(events).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_chains(&self) -> StoreResult<Vec<String>> {
        let sql = chains_sql();
        self.all(sqlx::query(&sql), |r| crate::row::Row::col(r, 0))
            .await
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

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_heads(&self) -> StoreResult<Vec<ChainHead>> {
        let sql = heads_sql();
        self.all(sqlx::query(&sql), head_row).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_anchors(&self) -> StoreResult<Vec<(String, String)>> {
        let query = sqlx::query("SELECT chain, checkpoint FROM audit_anchors ORDER BY chain");
        self.all(query, |r| {
            use crate::row::Row;
            Ok((r.col(0)?, r.col(1)?))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn prune_audit(
        &self,
        chain: &str,
        seq: u64,
        anchor: String,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        let event = prune_event(event, chain, seq);
        let seq = seq_col(seq)?;
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let [anchor_sql, delete_sql] = prune_sql(|n| format!("${n}"));
            sqlx::query(&anchor_sql)
                .bind(chain)
                .bind(seq)
                .bind(&anchor)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query(&delete_sql)
                .bind(chain)
                .bind(seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            self.commit_recorded(tx, vec![event]).await?;
            Ok(deleted)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn query_audit(
        &self,
        org_id: &str,
        q: &AuditFilter,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let sql = audit_query_sql(|n, ty| format!("${n}::{ty}"));
        let (at, chain, seq) = q.cursor_params()?;
        let query = sqlx::query(&sql)
            .bind(org_id)
            .bind(&q.actor)
            .bind(&q.action)
            .bind(&q.target)
            .bind(q.since)
            .bind(q.until)
            .bind(at)
            .bind(chain)
            .bind(seq)
            .bind(limit as i64);
        self.all(query, event_row).await
    }
}
