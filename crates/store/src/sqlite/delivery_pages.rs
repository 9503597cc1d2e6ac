//! Delivery pages on SQLite: each page is one short read transaction.

use super::SqliteStore;
use crate::delivery_pages::{DeliveryPage, DeliveryPageStore, DELIVERY_PAGE_ROWS};
use crate::identity::TEAM_GONE;
use crate::secrets::{record_row, stored_row, STORED_COLUMNS};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tessera_core::domain::access::DeliveryAccess;
use tessera_core::domain::types::SecretRecord;

fn revision(c: &Connection, team_id: &str) -> StoreResult<i64> {
    c.prepare_cached("SELECT revision FROM teams WHERE id = ?1")?
        .query_row([team_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(TEAM_GONE.into()))
}

#[async_trait]
impl DeliveryPageStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delivery_page(
        &self,
        grant: &DeliveryAccess,
        after: &str,
        max_bytes: usize,
    ) -> StoreResult<DeliveryPage> {
        let team = grant.team();
        self.readers
            .read(|c| {
                // One read transaction: the revision and the rows are of
                // the same instant; it ends with the page.
                let tx = c.unchecked_transaction()?;
                let revision = revision(&tx, team.team_id())?;
                let mut secrets = Vec::new();
                {
                    let mut st = tx.prepare_cached(&format!(
                        "SELECT {STORED_COLUMNS} FROM secrets
                         WHERE team_id = ?1 AND canonical_name > ?2
                         ORDER BY canonical_name LIMIT ?3"
                    ))?;
                    let mut rows =
                        st.query(params![team.team_id(), after, DELIVERY_PAGE_ROWS as i64])?;
                    let mut bytes = 0;
                    while bytes < max_bytes {
                        let Some(r) = rows.next()? else { break };
                        let s = stored_row(team, r)?;
                        bytes += s.ciphertext.len();
                        secrets.push(s);
                    }
                }
                tx.finish()?;
                Ok(DeliveryPage::of(revision, secrets, max_bytes))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delivery_records(
        &self,
        grant: &DeliveryAccess,
    ) -> StoreResult<(i64, Vec<SecretRecord>)> {
        let team = grant.team().clone();
        // Names and versions only, but possibly many: off the runtime's
        // workers.
        self.readers
            .read_sized(usize::MAX, move |c| {
                let tx = c.unchecked_transaction()?;
                let revision = revision(&tx, team.team_id())?;
                let records = {
                    let mut st = tx.prepare_cached(
                        "SELECT id, name, canonical_name, created_at, updated_at, version
                         FROM secrets WHERE team_id = ?1 ORDER BY canonical_name",
                    )?;
                    let rows = st.query_map([team.team_id()], |r| record_row(&team, r))?;
                    rows.collect::<Result<_, _>>()?
                };
                tx.finish()?;
                Ok((revision, records))
            })
            .await
    }
}
