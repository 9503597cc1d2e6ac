//! The keyring aggregate on SQLite.

use super::SqliteStore;
use crate::keyring::{kek_row, KEK_COLUMNS};
use crate::{KeyringStore, StoreResult};
use async_trait::async_trait;
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::KekRecord;

#[async_trait]
impl KeyringStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn keks(&self) -> StoreResult<Vec<KekRecord>> {
        let sql = format!("SELECT {KEK_COLUMNS} FROM keks ORDER BY created_at");
        self.readers.all(&sql, [], |r| kek_row(r)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn record_first_kek(&self, kek: KekRecord) -> StoreResult<()> {
        let sql = "INSERT INTO keks (kek_id, check_value, created_at, primary_slot)
                   VALUES (?1, ?2, ?3, 1) ON CONFLICT DO NOTHING";
        let params = (kek.kek_id, kek.check_value, kek.created_at);
        self.writer.execute(sql, params).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn wrapped_key(&self, purpose: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        let sql = "SELECT kek_id, wrapped FROM wrapped_keys WHERE purpose = ?1";
        self.readers
            .optional(sql, [purpose], |r| Ok((r.get(0)?, r.get(1)?)))
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
        let sql = "INSERT INTO wrapped_keys (purpose, kek_id, wrapped, created_at)
                   VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";
        let params = (purpose.to_owned(), kek_id.to_owned(), wrapped, now);
        self.writer.execute(sql, params).await?;
        Ok(())
    }
}
