//! The keyring aggregate on PostgreSQL.

use super::PostgresStore;
use crate::keyring::{kek_row, KEK_COLUMNS};
use crate::row::Row as _;
use crate::{KeyringStore, StoreResult};
use async_trait::async_trait;
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::KekRecord;

#[async_trait]
impl KeyringStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn keks(&self) -> StoreResult<Vec<KekRecord>> {
        let sql = format!("SELECT {KEK_COLUMNS} FROM keks ORDER BY created_at");
        self.all(sqlx::query(&sql), kek_row).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn record_first_kek(&self, kek: KekRecord) -> StoreResult<()> {
        // Nodes starting together on a new database all try to record their
        // master key; the unique slot lets exactly one row stand.
        let query = sqlx::query(
            "INSERT INTO keks (kek_id, check_value, created_at, primary_slot)
             VALUES ($1, $2, $3, 1) ON CONFLICT DO NOTHING",
        );
        let query = query.bind(kek.kek_id).bind(kek.check_value);
        self.execute(query.bind(kek.created_at)).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn wrapped_key(&self, purpose: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        let query = sqlx::query("SELECT kek_id, wrapped FROM wrapped_keys WHERE purpose = $1");
        self.optional(query.bind(purpose), |r| Ok((r.col(0)?, r.col(1)?)))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn insert_wrapped_key(
        &self,
        purpose: &str,
        kek_id: &str,
        wrapped: Vec<u8>,
        now: Micros,
    ) -> StoreResult<()> {
        let query = sqlx::query(
            "INSERT INTO wrapped_keys (purpose, kek_id, wrapped, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        );
        let query = query.bind(purpose).bind(kek_id).bind(wrapped).bind(now);
        self.execute(query).await?;
        Ok(())
    }
}
