//! The secret aggregate on PostgreSQL. Updates of existing secrets go
//! through the batcher (`batch.rs`); a new secret is one short transaction
//! that also moves the team's revision and counts it against the quota
//! (both in `team_counters`, see migration 0006).

use super::audit::commit;
use super::batch::Update;
use super::error::is_contention;
use super::history::forget_secret;
use super::{bounded, PostgresStore, EVENTS_CHANNEL};
use crate::audit::{about_secret, purge_events, PurgeReason, Purged};
use crate::history::KEPT_ON_DELETE;
use crate::identity::{team_row, TEAM_COLUMNS, TEAM_GONE};
use crate::row::{qualified, Row as _};
use crate::secrets::{
    check_value_bytes, listed_row, stored_row, SECRETS_QUOTA, STORED_COLUMNS, VALUE_BYTES_QUOTA,
};
use crate::{
    Deletion, SealedWrite, SecretStore, SecretWrite, Snapshot, StoreError, StoreResult,
    StoredSecret,
};
use async_trait::async_trait;
use sqlx::PgConnection;
use tessera_core::domain::access::{
    AllTeamsAccess, DeliveryAccess, OrgAccess, ReadSecrets, TeamAccess, WriteSecrets,
};
use tessera_core::domain::types::{ListedSecret, Team};
/// Times a creation the database aborted for contention is tried again.
const RETRIES: u32 = 5;

/// Moves a team's revision (and its secret count by `added`) inside `tx`,
/// and tells the other nodes when `tx` commits (PostgreSQL delivers
/// notifications only after the commit). `QuotaExceeded` when adding would
/// take the team past `max_secrets`; `NotFound` when the team is gone.
pub(super) async fn bump_revision(
    tx: &mut PgConnection,
    team_id: &str,
    added: i64,
    max_secrets: i64,
) -> StoreResult<i64> {
    let row: Option<(i64, bool)> = sqlx::query_as(concat!(
        "WITH t AS (
            UPDATE team_counters SET revision = revision + 1, secret_count = secret_count + $3
            WHERE team_id = $1 AND ($3 <= 0 OR secret_count + $3 <= $4)
            RETURNING team_id, revision
         ), n AS (SELECT pg_notify($2 || ",
        super::channel_suffix!(),
        ", 'r ' || t.team_id || ' ' || t.revision) FROM t)
         SELECT revision, (SELECT COUNT(*) FROM n) > 0 FROM t",
    ))
    .bind(team_id)
    .bind(EVENTS_CHANNEL)
    .bind(added)
    .bind(max_secrets)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        Some((revision, _)) => Ok(revision),
        None => {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM teams WHERE id = $1)")
                    .bind(team_id)
                    .fetch_one(&mut *tx)
                    .await?;
            Err(if exists {
                StoreError::QuotaExceeded {
                    quota: SECRETS_QUOTA,
                    limit: max_secrets,
                }
            } else {
                StoreError::NotFound(TEAM_GONE.into())
            })
        }
    }
}

/// Refuses, inside `tx`, a change that just added `added` bytes to the
/// team's current values (counted by migration 0010's trigger, which also
/// locked the team's counters: the total read here is exact) when that
/// took them past `max`.
pub(super) async fn check_added_bytes(
    tx: &mut PgConnection,
    team_id: &str,
    added: i64,
    max: i64,
) -> StoreResult<()> {
    let after: Option<i64> =
        sqlx::query_scalar("SELECT value_bytes FROM team_counters WHERE team_id = $1")
            .bind(team_id)
            .fetch_optional(&mut *tx)
            .await?;
    match after {
        Some(after) => check_value_bytes(after - added, after, max),
        None => Ok(()),
    }
}

/// The plaintext bytes of a stored value.
pub(super) fn plaintext_bytes(ciphertext: &[u8]) -> i64 {
    // As migration 0010's trigger counts it.
    ciphertext.len() as i64 - tessera_core::crypto::envelope::OVERHEAD as i64
}

impl PostgresStore {
    /// Why a batched update did not apply: its secret still has the id it
    /// was sealed for, so the quota on value bytes refused it; otherwise
    /// the secret changed identity (`Stale`).
    async fn why_not_applied(
        &self,
        team: &TeamAccess<WriteSecrets>,
        w: &SealedWrite,
    ) -> StoreError {
        let query = sqlx::query(
            "SELECT 1 FROM secrets WHERE team_id = $1 AND canonical_name = $2 AND id = $3",
        )
        .bind(team.team_id())
        .bind(&w.canonical_name)
        .bind(&w.secret_id);
        match self.optional(query, |r| r.col::<i32>(0)).await {
            Ok(Some(_)) => StoreError::QuotaExceeded {
                quota: VALUE_BYTES_QUOTA,
                limit: w.max_team_bytes,
            },
            Ok(None) => StoreError::Stale,
            Err(e) => e,
        }
    }

    /// A new secret, in one transaction; `None` when the name is taken
    /// (created elsewhere meanwhile).
    async fn create(
        &self,
        team: &TeamAccess<WriteSecrets>,
        w: &SealedWrite,
        max_secrets: i64,
    ) -> Result<Option<i64>, CreateError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO secrets (id, org_id, team_id, canonical_name, name, created_at, updated_at,
                 version, version_id, kek_id, ciphertext, actor_key, actor_user, keep_versions)
             VALUES ($1, $2, $3, $4, $5, $6, $6, 1, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (team_id, canonical_name) DO NOTHING",
        )
        .bind(&w.secret_id)
        .bind(team.org_id())
        .bind(team.team_id())
        .bind(&w.canonical_name)
        .bind(&w.name)
        .bind(w.now)
        .bind(&w.version_id)
        .bind(&w.kek_id)
        .bind(&w.ciphertext)
        .bind(&w.history.actor.key_prefix)
        .bind(&w.history.actor.user_id)
        .bind(w.history.keep_versions)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        let added = plaintext_bytes(&w.ciphertext);
        check_added_bytes(&mut tx, team.team_id(), added, w.max_team_bytes).await?;
        // Last, so the team's counters are locked only for the commit. Over the
        // quota, nothing is committed.
        let revision = bump_revision(&mut tx, team.team_id(), 1, max_secrets).await?;
        let mut slot = self.audit.slot().await;
        let head = self
            .audit
            .append(&mut tx, &mut slot, vec![w.audit.clone()])
            .await?;
        commit(tx, &mut slot, head).await?;
        Ok(Some(revision))
    }
}

/// A failed creation: contention is worth another try, the rest is final.
enum CreateError {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for CreateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

#[async_trait]
impl SecretStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn secret_id(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<String>> {
        let query =
            sqlx::query("SELECT id FROM secrets WHERE team_id = $1 AND canonical_name = $2");
        self.optional(query.bind(team.team_id()).bind(canonical), |r| r.col(0))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn upsert_secret(
        &self,
        team: &TeamAccess<WriteSecrets>,
        w: SealedWrite,
        max_secrets: i64,
    ) -> StoreResult<SecretWrite> {
        if w.exists {
            let applied = self
                .batcher
                .update(Update {
                    team_id: team.team_id().to_owned(),
                    canonical_name: w.canonical_name.clone(),
                    id: w.secret_id.clone(),
                    updated_at: w.now,
                    version_id: w.version_id.clone(),
                    kek_id: w.kek_id.clone(),
                    ciphertext: w.ciphertext.clone(),
                    history: w.history.clone(),
                    audit: w.audit.clone(),
                    max_team_bytes: w.max_team_bytes,
                })
                .await?;
            let Some(applied) = applied else {
                return Err(self.why_not_applied(team, &w).await);
            };
            return Ok(SecretWrite {
                record: w.record(team, applied.name, applied.created_at, applied.version),
                revision: applied.revision,
            });
        }
        // Distributed engines (CockroachDB, YugabyteDB) answer contention
        // with serialization failures; the sealed write is simply sent again.
        let mut attempt = 0;
        let created = loop {
            match bounded(async { Ok(self.create(team, &w, max_secrets).await) }).await? {
                Ok(created) => break created,
                Err(CreateError::Sql(e)) if is_contention(&e) && attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "creating a secret hit contention; trying again");
                    let pause = std::time::Duration::from_millis(5 * u64::from(attempt));
                    tokio::time::sleep(pause).await;
                }
                Err(CreateError::Sql(e)) => return Err(StoreError::from(e).gone_as(TEAM_GONE)),
                Err(CreateError::Store(e)) => return Err(e),
            }
        };
        let revision = created.ok_or(StoreError::Stale)?;
        Ok(SecretWrite {
            record: w.record(team, w.name.clone(), w.now, 1),
            revision,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delete_secret(
        &self,
        team: &TeamAccess<WriteSecrets>,
        canonical: &str,
        how: &Deletion,
    ) -> StoreResult<Option<SecretWrite>> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let delete = format!(
                "DELETE FROM secrets WHERE team_id = $1 AND canonical_name = $2 RETURNING {KEPT_ON_DELETE}"
            );
            // Kept: moved to the deleted secrets by the same statement, so
            // the row kept is exactly the row deleted.
            let kept = format!(
                "WITH d AS ({delete})
                 INSERT INTO deleted_secrets ({KEPT_ON_DELETE}, deleted_at, deleted_by)
                 SELECT {KEPT_ON_DELETE}, $3, $4 FROM d RETURNING {STORED_COLUMNS}"
            );
            let removed = format!(
                "DELETE FROM secrets WHERE team_id = $1 AND canonical_name = $2 RETURNING {STORED_COLUMNS}"
            );
            let query = if how.keep {
                let query = sqlx::query(&kept).bind(team.team_id()).bind(canonical);
                query.bind(how.at).bind(&how.by)
            } else {
                sqlx::query(&removed).bind(team.team_id()).bind(canonical)
            };
            let Some(row) = query.fetch_optional(&mut *tx).await? else {
                return Ok(None);
            };
            let record = stored_row(team, &row)?.record;
            let purged = |id: String, name: String| Purged {
                org_id: team.org_id().to_owned(),
                team_id: team.team_id().to_owned(),
                id,
                name,
            };
            let (reason, purged) = if how.keep {
                let evicted: Vec<(String, String)> = sqlx::query_as(
                    "DELETE FROM deleted_secrets WHERE team_id = $1 AND id IN (
                         SELECT id FROM deleted_secrets WHERE team_id = $1
                         ORDER BY deleted_at DESC, id DESC OFFSET $2)
                     RETURNING id, name",
                )
                .bind(team.team_id())
                .bind(how.max_kept)
                .fetch_all(&mut *tx)
                .await?;
                for (id, _) in &evicted {
                    forget_secret(&mut tx, id).await?;
                }
                let evicted = evicted.into_iter().map(|(id, name)| purged(id, name));
                (PurgeReason::DeletedListFull, evicted.collect())
            } else {
                forget_secret(&mut tx, &record.id).await?;
                let gone = purged(record.id.clone(), record.name.clone());
                (PurgeReason::NotKept, vec![gone])
            };
            let revision = bump_revision(&mut tx, team.team_id(), -1, 0).await?;
            let mut events = vec![about_secret(how.audit.clone(), &record)];
            events.extend(purge_events(&how.audit, &purged, reason));
            let mut slot = self.audit.slot().await;
            let head = self.audit.append(&mut tx, &mut slot, events).await?;
            commit(tx, &mut slot, head).await?;
            Ok(Some(SecretWrite { record, revision }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn latest_secret(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<StoredSecret>> {
        let sql = format!(
            "SELECT {STORED_COLUMNS} FROM secrets WHERE team_id = $1 AND canonical_name = $2"
        );
        let query = sqlx::query(&sql).bind(team.team_id()).bind(canonical);
        self.optional(query, |r| stored_row(team, r)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn team_secrets_page(
        &self,
        team: &TeamAccess<ReadSecrets>,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>> {
        let query = sqlx::query(
            "SELECT team_id, $4, id, name, canonical_name, created_at, version
             FROM secrets WHERE team_id = $1 AND canonical_name > $2
             ORDER BY canonical_name LIMIT $3",
        );
        let query = query.bind(team.team_id()).bind(after).bind(limit as i64);
        self.all_sized(limit, query.bind(team.team_name()), listed_row)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn org_secrets_page(
        &self,
        org: &AllTeamsAccess,
        after: (&str, &str),
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>> {
        let query = sqlx::query(
            "SELECT s.team_id, t.name, s.id, s.name, s.canonical_name, s.created_at, s.version
             FROM secrets s JOIN teams t ON t.id = s.team_id
             WHERE s.org_id = $1 AND (s.team_id, s.canonical_name) > ($2, $3)
             ORDER BY s.team_id, s.canonical_name LIMIT $4",
        );
        let query = query.bind(org.org_id()).bind(after.0).bind(after.1);
        self.all_sized(limit, query.bind(limit as i64), listed_row)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn teams_with_secrets(&self, org: &OrgAccess) -> StoreResult<Vec<Team>> {
        let sql = format!(
            "SELECT {} FROM teams t JOIN team_counters c ON c.team_id = t.id
             WHERE t.org_id = $1 AND c.secret_count > 0 ORDER BY t.id",
            qualified("t", TEAM_COLUMNS)
        );
        self.all(sqlx::query(&sql).bind(org.org_id()), team_row)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn team_revision(&self, team: &TeamAccess<ReadSecrets>) -> StoreResult<i64> {
        let revision = self.revisions.revision(team.team_id()).await?;
        revision.ok_or_else(|| StoreError::NotFound(TEAM_GONE.into()))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn snapshot(&self, grant: &DeliveryAccess) -> StoreResult<Snapshot> {
        let team = grant.team();
        bounded(async {
            // One statement, one snapshot: the revision and the rows agree.
            // The secret's columns, then the team's revision.
            let rows = sqlx::query(&format!(
                "SELECT {}, c.revision FROM team_counters c LEFT JOIN secrets s ON s.team_id = c.team_id
                 WHERE c.team_id = $1 ORDER BY s.canonical_name",
                qualified("s", STORED_COLUMNS)
            ))
            .bind(team.team_id())
            .fetch_all(&self.pool)
            .await?;
            let revision = match rows.first() {
                Some(r) => r.col(8)?,
                None => return Err(StoreError::NotFound(TEAM_GONE.into())),
            };
            let mut secrets = Vec::with_capacity(rows.len());
            for r in &rows {
                // The team's counters alone, when it has no secret.
                if r.col::<Option<String>>(0)?.is_some() {
                    secrets.push(stored_row(team, r)?);
                }
            }
            Ok(Snapshot { revision, secrets })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn team_revisions(&self, team_ids: Vec<String>) -> StoreResult<Vec<(String, i64)>> {
        bounded(async {
            Ok(sqlx::query_as(
                "SELECT team_id, revision FROM team_counters WHERE team_id = ANY($1)",
            )
            .bind(team_ids)
            .fetch_all(&self.pool)
            .await?)
        })
        .await
    }
}
