//! The audit aggregate on SQLite. Events are appended by the writer thread
//! at the end of each batch, in its transaction (see `writer.rs`); here
//! they are installed for and read back.

use super::SqliteStore;
use crate::audit::chain::{ChainKey, StoredEvent};
use crate::audit::event::AuditEvent;
use crate::store::audit::{event_row, seq_col, EVENT_COLUMNS};
use crate::store::{AuditStore, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;

#[async_trait]
impl AuditStore for SqliteStore {
    fn install_audit_key(&self, key: Option<Arc<ChainKey>>) {
        self.audit.install(key);
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        self.writer.append_audit(events).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit_chains(&self) -> StoreResult<Vec<String>> {
        let sql = "SELECT DISTINCT chain FROM audit_events ORDER BY chain";
        self.readers.all(sql, [], |r| r.get(0)).await
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
}
