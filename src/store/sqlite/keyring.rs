//! The keyring aggregate on SQLite.

use super::SqliteStore;
use crate::domain::time::Micros;
use crate::domain::types::KekRecord;
use crate::store::keyring::{kek_row, KEK_COLUMNS};
use crate::store::{KeyringStore, StoreResult};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

#[async_trait]
impl KeyringStore for SqliteStore {
    async fn keks(&self) -> StoreResult<Vec<KekRecord>> {
        self.readers
            .read(|c| {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {KEK_COLUMNS} FROM keks ORDER BY created_at"
                ))?;
                let rows = st.query_map([], |r| kek_row(r))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn record_first_kek(&self, kek: KekRecord) -> StoreResult<()> {
        self.writer
            .write_single_statement(move |c| {
                c.execute(
                    "INSERT INTO keks (kek_id, check_value, created_at, primary_slot) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT DO NOTHING",
                    params![kek.kek_id, kek.check_value, kek.created_at],
                )?;
                Ok(())
            })
            .await
    }

    async fn wrapped_key(&self, purpose: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        self.readers
            .read(|c| {
                Ok(
                    c.prepare_cached(
                        "SELECT kek_id, wrapped FROM wrapped_keys WHERE purpose = ?1",
                    )?
                    .query_row([purpose], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
                )
            })
            .await
    }

    async fn insert_wrapped_key(
        &self,
        purpose: &str,
        kek_id: &str,
        wrapped: Vec<u8>,
        now: Micros,
    ) -> StoreResult<()> {
        let (purpose, kek_id) = (purpose.to_owned(), kek_id.to_owned());
        self.writer
            .write_single_statement(move |c| {
                c.execute(
                    "INSERT INTO wrapped_keys (purpose, kek_id, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![purpose, kek_id, wrapped, now],
                )?;
                Ok(())
            })
            .await
    }
}
