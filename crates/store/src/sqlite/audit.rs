//! The audit aggregate on SQLite. Events are appended by the writer thread
//! at the end of each batch, in its transaction (see `writer.rs`); here
//! they are installed for and read back.

use super::SqliteStore;
use crate::audit::{
    always, audit_query_sql, chains_sql, event_row, head_row, heads_sql, prune_event, prune_sql,
    seq_col, AuditFilter, EVENT_COLUMNS,
};
use crate::{AuditStore, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;
use tessera_core::audit::chain::{ChainHead, ChainKey, StoredEvent};
use tessera_core::audit::event::AuditEvent;

#[async_trait]
impl AuditStore for SqliteStore {
    fn install_audit_key(&self, key: Option<Arc<ChainKey>>) {
        self.audit.install(key);
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        self.reads.append(events).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_chains(&self) -> StoreResult<Vec<String>> {
        self.readers.all(&chains_sql(), [], |r| r.get(0)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_events(
        &self,
        chain: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain = ?1 AND seq > ?2
             ORDER BY seq LIMIT ?3"
        );
        let params = (chain.to_owned(), seq_col(after)?, limit as i64);
        self.readers.all(&sql, params, |r| event_row(r)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_heads(&self) -> StoreResult<Vec<ChainHead>> {
        self.readers.all(&heads_sql(), [], |r| head_row(r)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_anchors(&self) -> StoreResult<Vec<(String, String)>> {
        let sql = "SELECT chain, checkpoint FROM audit_anchors ORDER BY chain";
        self.readers
            .all(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
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
        let (chain, seq) = (chain.to_owned(), seq_col(seq)?);
        let event = prune_event(event, &chain, u64::try_from(seq).unwrap_or(0));
        self.writer
            .write_audited(
                move |c| {
                    let [anchor_sql, delete_sql] = prune_sql(|n| format!("?{n}"));
                    c.prepare_cached(&anchor_sql)?
                        .execute((&chain, seq, &anchor))?;
                    let deleted = c.prepare_cached(&delete_sql)?.execute((&chain, seq))?;
                    Ok(deleted as u64)
                },
                always(event),
            )
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn query_audit(
        &self,
        org_id: &str,
        q: &AuditFilter,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let sql = audit_query_sql(|n, _| format!("?{n}"));
        let (at, chain, seq) = q.cursor_params()?;
        let params = (
            org_id,
            &q.actor,
            &q.action,
            &q.target,
            q.since,
            q.until,
            at,
            chain,
            seq,
            limit as i64,
        );
        self.readers.all(&sql, params, |r| event_row(r)).await
    }
}
