//! Delivery pages on PostgreSQL: each page is one statement (one snapshot)
//! that reads the team's revision with the rows.

use super::{bounded, PostgresStore};
use crate::delivery_pages::{DeliveryPage, DeliveryPageStore, DELIVERY_PAGE_ROWS};
use crate::identity::TEAM_GONE;
use crate::row::{qualified, Row as _};
use crate::secrets::{record_row, stored_row, STORED_COLUMNS};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use tessera_core::domain::access::DeliveryAccess;
use tessera_core::domain::types::SecretRecord;

const RECORD_COLUMNS: &str = "id, name, canonical_name, created_at, updated_at, version";

#[async_trait]
impl DeliveryPageStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delivery_page(
        &self,
        grant: &DeliveryAccess,
        after: &str,
        max_bytes: usize,
    ) -> StoreResult<DeliveryPage> {
        let team = grant.team();
        bounded(async {
            // The rows before the one that reaches the byte budget, and that
            // one; the running sum reads each value's length without
            // detoasting it, and stops with the row limit.
            let rows = sqlx::query(&format!(
                "SELECT {}, c.revision FROM team_counters c LEFT JOIN (
                    SELECT * FROM (
                        SELECT {STORED_COLUMNS},
                               SUM(octet_length(ciphertext)) OVER (ORDER BY canonical_name)
                                   - octet_length(ciphertext) AS before
                        FROM secrets WHERE team_id = $1 AND canonical_name > $2
                        ORDER BY canonical_name LIMIT $4
                    ) p WHERE p.before < $3
                 ) s ON true
                 WHERE c.team_id = $1 ORDER BY s.canonical_name",
                qualified("s", STORED_COLUMNS)
            ))
            .bind(team.team_id())
            .bind(after)
            .bind(max_bytes as i64)
            .bind(DELIVERY_PAGE_ROWS as i64)
            .fetch_all(&self.pool)
            .await?;
            let revision = match rows.first() {
                Some(r) => r.col(8)?,
                None => return Err(StoreError::NotFound(TEAM_GONE.into())),
            };
            let mut secrets = Vec::with_capacity(rows.len());
            for r in &rows {
                // The team's counters alone, when no secret is left.
                if r.col::<Option<String>>(0)?.is_some() {
                    secrets.push(stored_row(team, r)?);
                }
            }
            Ok(DeliveryPage::of(revision, secrets, max_bytes))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delivery_records(
        &self,
        grant: &DeliveryAccess,
    ) -> StoreResult<(i64, Vec<SecretRecord>)> {
        let team = grant.team();
        bounded(async {
            let rows = sqlx::query(&format!(
                "SELECT {}, c.revision FROM team_counters c LEFT JOIN secrets s ON s.team_id = c.team_id
                 WHERE c.team_id = $1 ORDER BY s.canonical_name",
                qualified("s", RECORD_COLUMNS)
            ))
            .bind(team.team_id())
            .fetch_all(&self.pool)
            .await?;
            let revision = match rows.first() {
                Some(r) => r.col(6)?,
                None => return Err(StoreError::NotFound(TEAM_GONE.into())),
            };
            let mut records = Vec::with_capacity(rows.len());
            for r in &rows {
                if r.col::<Option<String>>(0)?.is_some() {
                    records.push(record_row(team, r)?);
                }
            }
            Ok((revision, records))
        })
        .await
    }
}
