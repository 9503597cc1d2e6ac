//! The history aggregate on PostgreSQL. Previous versions reach
//! `secret_versions` through the schema's trigger (migration 0007), in the
//! statement that replaces them, batched updates included; this file reads
//! them, destroys and purges them, and moves deleted secrets.

use super::audit::commit;
use super::secrets::{bump_revision, check_added_bytes, plaintext_bytes};
use super::{bounded, PostgresStore};
use crate::audit::{about_secret, purge_events, PurgeReason, Purged};
use crate::history::{
    consumer_row, current_version, deleted_row, version_row, ConsumerCap, CONSUMER_COLUMNS,
    DELETED_COLUMNS, KEPT_ON_DELETE, NAME_TAKEN, VERSION_COLUMNS,
};
use crate::identity::TEAM_GONE;
use crate::row::width;
use crate::secrets::{stored_row, STORED_COLUMNS};
use crate::{
    Consumer, ConsumerSeen, DeletedSecret, Destroyed, HistoryStore, SecretHistory, SecretWrite,
    StoreError, StoreResult, StoredVersion,
};
use async_trait::async_trait;
use sqlx::PgConnection;
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{ManageHistory, ReadSecrets, TeamAccess};
use tessera_core::domain::time::Micros;

/// Removes what the store keeps about a secret besides its row: its previous
/// versions and who received them.
pub(super) async fn forget_secret(tx: &mut PgConnection, secret_id: &str) -> StoreResult<()> {
    for sql in [
        "DELETE FROM secret_versions WHERE secret_id = $1",
        "DELETE FROM consumer_versions WHERE secret_id = $1",
    ] {
        sqlx::query(sql).bind(secret_id).execute(&mut *tx).await?;
    }
    Ok(())
}

/// The current version of the team's secret `secret_id`, if it is live.
async fn current(
    tx: &mut PgConnection,
    team: &TeamAccess<ReadSecrets>,
    secret_id: &str,
) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT version FROM secrets WHERE team_id = $1 AND id = $2")
            .bind(team.team_id())
            .bind(secret_id)
            .fetch_optional(&mut *tx)
            .await?,
    )
}

#[async_trait]
impl HistoryStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn secret_history(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<SecretHistory>> {
        bounded(async {
            // One read-only transaction at one snapshot: the current row and
            // the previous versions agree.
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(&format!(
                "SELECT {STORED_COLUMNS}, version, updated_at, actor_key, actor_user
                 FROM secrets WHERE team_id = $1 AND canonical_name = $2"
            ))
            .bind(team.team_id())
            .bind(canonical)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let record = stored_row(team, &row)?.record;
            let mut versions = vec![current_version(&row, width(STORED_COLUMNS))?];
            let previous = sqlx::query(&format!(
                "SELECT {VERSION_COLUMNS} FROM secret_versions
                 WHERE secret_id = $1 ORDER BY version DESC"
            ))
            .bind(&record.id)
            .fetch_all(&mut *tx)
            .await?;
            for r in &previous {
                versions.push(version_row(r)?);
            }
            tx.commit().await?;
            Ok(Some(SecretHistory { record, versions }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn stored_version(
        &self,
        team: &TeamAccess<ReadSecrets>,
        secret_id: &str,
        version: i64,
    ) -> StoreResult<Option<StoredVersion>> {
        bounded(async {
            let mut conn = self.pool.acquire().await?;
            match current(&mut conn, team, secret_id).await? {
                None => return Ok(None),
                Some(v) if v == version => return Ok(Some(StoredVersion::Current)),
                Some(_) => {}
            }
            let found: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
                "SELECT version_id, ciphertext FROM secret_versions
                 WHERE secret_id = $1 AND version = $2 AND team_id = $3",
            )
            .bind(secret_id)
            .bind(version)
            .bind(team.team_id())
            .fetch_optional(&mut *conn)
            .await?;
            Ok(found.map(|(version_id, ciphertext)| match ciphertext {
                Some(ciphertext) => StoredVersion::Sealed {
                    version_id,
                    ciphertext,
                },
                None => StoredVersion::Destroyed,
            }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn destroy_version(
        &self,
        team: &TeamAccess<ManageHistory>,
        secret_id: &str,
        version: i64,
        now: Micros,
        event: AuditEvent,
    ) -> StoreResult<Destroyed> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            // The secret's row, locked: no update can make this version the
            // current one (or replace it) meanwhile.
            let current: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM secrets WHERE team_id = $1 AND id = $2 FOR UPDATE",
            )
            .bind(team.team_id())
            .bind(secret_id)
            .fetch_optional(&mut *tx)
            .await?;
            match current {
                None => return Ok(Destroyed::Missing),
                Some(v) if v == version => return Ok(Destroyed::Current),
                Some(_) => {}
            }
            let previous: Option<bool> = sqlx::query_scalar(
                "WITH d AS (
                    UPDATE secret_versions SET destroyed_at = $4, kek_id = NULL, ciphertext = NULL
                    WHERE secret_id = $1 AND version = $2 AND team_id = $3 AND ciphertext IS NOT NULL
                    RETURNING 1
                 )
                 SELECT (SELECT COUNT(*) FROM d) > 0 FROM secret_versions
                 WHERE secret_id = $1 AND version = $2",
            )
            .bind(secret_id)
            .bind(version)
            .bind(team.team_id())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let destroyed = match previous {
                Some(true) => Destroyed::Now,
                Some(false) => Destroyed::Already,
                None => Destroyed::Missing,
            };
            let events = match destroyed {
                Destroyed::Now => vec![event],
                _ => Vec::new(),
            };
            let mut slot = self.audit.slot().await;
            let head = self.audit.append(&mut tx, &mut slot, events).await?;
            commit(tx, &mut slot, head).await?;
            Ok(destroyed)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn deleted_secrets(
        &self,
        team: &TeamAccess<ReadSecrets>,
    ) -> StoreResult<Vec<DeletedSecret>> {
        let sql = format!(
            "SELECT {DELETED_COLUMNS} FROM deleted_secrets WHERE team_id = $1
             ORDER BY deleted_at DESC, id"
        );
        self.all(sqlx::query(&sql).bind(team.team_id()), |r| {
            deleted_row(team, r)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn undelete_secret(
        &self,
        team: &TeamAccess<ManageHistory>,
        secret_id: &str,
        max_secrets: i64,
        max_team_bytes: i64,
        event: AuditEvent,
    ) -> StoreResult<SecretWrite> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let deleted: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM deleted_secrets WHERE id = $1 AND team_id = $2)",
            )
            .bind(secret_id)
            .bind(team.team_id())
            .fetch_one(&mut *tx)
            .await?;
            if !deleted {
                return Err(StoreError::NotFound("no such deleted secret".into()));
            }
            // Moved back by one statement; the name's uniqueness decides a
            // race with a new secret of the same name (and when it is taken,
            // nothing is committed).
            let row = sqlx::query(&format!(
                "WITH d AS (
                    DELETE FROM deleted_secrets WHERE id = $1 AND team_id = $2
                    RETURNING {KEPT_ON_DELETE}
                 )
                 INSERT INTO secrets ({KEPT_ON_DELETE}) SELECT {KEPT_ON_DELETE} FROM d
                 ON CONFLICT (team_id, canonical_name) DO NOTHING
                 RETURNING {STORED_COLUMNS}"
            ))
            .bind(secret_id)
            .bind(team.team_id())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| StoreError::from(e).gone_as(TEAM_GONE))?;
            let Some(row) = row else {
                return Err(StoreError::Conflict(NAME_TAKEN.into()));
            };
            let stored = stored_row(team, &row)?;
            let added = plaintext_bytes(&stored.ciphertext);
            check_added_bytes(&mut tx, team.team_id(), added, max_team_bytes).await?;
            let record = stored.record;
            let revision = bump_revision(&mut tx, team.team_id(), 1, max_secrets).await?;
            let mut slot = self.audit.slot().await;
            let events = vec![about_secret(event, &record)];
            let head = self.audit.append(&mut tx, &mut slot, events).await?;
            commit(tx, &mut slot, head).await?;
            Ok(SecretWrite { record, revision })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn purge_deleted_secret(
        &self,
        team: &TeamAccess<ManageHistory>,
        secret_id: &str,
        event: AuditEvent,
    ) -> StoreResult<bool> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let purged = sqlx::query("DELETE FROM deleted_secrets WHERE id = $1 AND team_id = $2")
                .bind(secret_id)
                .bind(team.team_id())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let events = if purged > 0 {
                forget_secret(&mut tx, secret_id).await?;
                vec![event]
            } else {
                Vec::new()
            };
            let mut slot = self.audit.slot().await;
            let head = self.audit.append(&mut tx, &mut slot, events).await?;
            commit(tx, &mut slot, head).await?;
            Ok(purged > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn purge_expired(
        &self,
        deleted_before: Micros,
        seen_before: Micros,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let purged: Vec<Purged> = sqlx::query_as::<_, (String, String, String, String)>(
                "DELETE FROM deleted_secrets WHERE deleted_at < $1
                 RETURNING org_id, team_id, id, name",
            )
            .bind(deleted_before)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(org_id, team_id, id, name)| Purged {
                org_id,
                team_id,
                id,
                name,
            })
            .collect();
            let ids: Vec<&str> = purged.iter().map(|p| p.id.as_str()).collect();
            for sql in [
                "DELETE FROM secret_versions WHERE secret_id = ANY($1)",
                "DELETE FROM consumer_versions WHERE secret_id = ANY($1)",
            ] {
                sqlx::query(sql).bind(&ids).execute(&mut *tx).await?;
            }
            for sql in [
                "DELETE FROM consumer_versions WHERE (key_prefix, instance) IN
                     (SELECT key_prefix, instance FROM consumers WHERE last_seen_at < $1)",
                "DELETE FROM consumers WHERE last_seen_at < $1",
            ] {
                sqlx::query(sql).bind(seen_before).execute(&mut *tx).await?;
            }
            let n = purged.len() as u64;
            let events = purge_events(&event, &purged, PurgeReason::Expired);
            let mut slot = self.audit.slot().await;
            let head = self.audit.append(&mut tx, &mut slot, events).await?;
            commit(tx, &mut slot, head).await?;
            Ok(n)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn record_consumers(
        &self,
        mut seen: Vec<ConsumerSeen>,
        cap: ConsumerCap,
    ) -> StoreResult<()> {
        // A stable order keeps two nodes' flushes from locking rows in
        // opposite orders.
        seen.sort_by(|a, b| (&a.key_prefix, &a.instance).cmp(&(&b.key_prefix, &b.instance)));
        let (mut prefix, mut instance, mut team, mut client, mut at, mut kind) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut v_secret, mut v_prefix, mut v_instance, mut v_version, mut v_at) =
            (vec![], vec![], vec![], vec![], vec![]);
        let mut keys: Vec<String> = seen.iter().map(|s| s.key_prefix.clone()).collect();
        keys.dedup();
        let consumers = i64::try_from(cap.consumers).unwrap_or(i64::MAX);
        let versions = i64::try_from(cap.versions).unwrap_or(i64::MAX);
        for s in seen {
            let mut received = s.received;
            received.sort();
            for (secret_id, version, received_at) in received {
                v_secret.push(secret_id);
                v_prefix.push(s.key_prefix.clone());
                v_instance.push(s.instance.clone());
                v_version.push(version);
                v_at.push(received_at);
            }
            prefix.push(s.key_prefix);
            instance.push(s.instance);
            team.push(s.team_id);
            client.push(s.client);
            at.push(s.seen_at);
            kind.push(s.kind.as_str());
        }
        bounded(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO consumers (key_prefix, instance, team_id, client, last_seen_at, kind)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                                      $6::text[])
                 ON CONFLICT (key_prefix, instance) DO UPDATE SET team_id = excluded.team_id,
                     client = excluded.client,
                     last_seen_at = GREATEST(consumers.last_seen_at, excluded.last_seen_at),
                     kind = CASE WHEN excluded.last_seen_at >= consumers.last_seen_at
                                 THEN excluded.kind ELSE consumers.kind END",
            )
            .bind(&prefix)
            .bind(&instance)
            .bind(&team)
            .bind(&client)
            .bind(&at)
            .bind(&kind)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO consumer_versions (secret_id, key_prefix, instance, version, received_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                 ON CONFLICT (secret_id, key_prefix, instance) DO UPDATE
                     SET version = excluded.version, received_at = excluded.received_at
                     WHERE excluded.received_at >= consumer_versions.received_at",
            )
            .bind(&v_secret)
            .bind(&v_prefix)
            .bind(&v_instance)
            .bind(&v_version)
            .bind(&v_at)
            .execute(&mut *tx)
            .await?;
            // Least recently seen first out; ties broken by instance so
            // every node evicts alike.
            sqlx::query(
                "WITH old AS (
                     SELECT key_prefix, instance FROM (
                         SELECT c.key_prefix, c.instance,
                                row_number() OVER w AS n,
                                sum(coalesce(v.n, 0)) OVER w AS rows_so_far
                         FROM consumers c
                         LEFT JOIN (SELECT key_prefix, instance, count(*) AS n
                                    FROM consumer_versions WHERE key_prefix = ANY($1)
                                    GROUP BY key_prefix, instance) v
                             ON v.key_prefix = c.key_prefix AND v.instance = c.instance
                         WHERE c.key_prefix = ANY($1)
                         WINDOW w AS (PARTITION BY c.key_prefix
                                      ORDER BY c.last_seen_at DESC, c.instance
                                      ROWS UNBOUNDED PRECEDING)) ranked
                     WHERE n > 1 AND (n > $2 OR rows_so_far > $3)),
                 gone AS (DELETE FROM consumer_versions v USING old
                          WHERE v.key_prefix = old.key_prefix AND v.instance = old.instance)
                 DELETE FROM consumers c USING old
                 WHERE c.key_prefix = old.key_prefix AND c.instance = old.instance",
            )
            .bind(&keys)
            .bind(consumers)
            .bind(versions)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn secret_consumers(
        &self,
        team: &TeamAccess<ReadSecrets>,
        secret_id: &str,
    ) -> StoreResult<Vec<Consumer>> {
        let sql = format!(
            "SELECT {CONSUMER_COLUMNS} FROM consumer_versions v
             JOIN consumers c ON c.key_prefix = v.key_prefix AND c.instance = v.instance
             WHERE v.secret_id = $1 AND c.team_id = $2
             ORDER BY v.version DESC, c.last_seen_at DESC, c.key_prefix, c.instance"
        );
        let query = sqlx::query(&sql).bind(secret_id).bind(team.team_id());
        self.all(query, consumer_row).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_columns_kept_on_delete_include_every_stored_column() {
        for col in crate::secrets::STORED_COLUMNS.split(", ") {
            assert!(
                super::KEPT_ON_DELETE.split(", ").any(|c| c == col),
                "{col} is not kept"
            );
        }
    }
}
