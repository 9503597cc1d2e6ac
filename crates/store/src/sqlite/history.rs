//! The history aggregate on SQLite. Previous versions reach
//! `secret_versions` through the schema's trigger (migration 0007); this
//! file reads them, destroys and purges them, and moves deleted secrets.

use super::secrets::value_bytes;
use super::writer::in_savepoint;
use super::SqliteStore;
use crate::audit::{about_secret, if_changed, purge_events, PurgeReason, Purged};
use crate::history::{
    consumer_row, current_version, deleted_row, version_row, ConsumerCap, CONSUMER_COLUMNS,
    DELETED_COLUMNS, KEPT_ON_DELETE, NAME_TAKEN, VERSION_COLUMNS,
};
use crate::identity::TEAM_GONE;
use crate::row::width;
use crate::secrets::{check_value_bytes, stored_row, SECRETS_QUOTA, STORED_COLUMNS};
use crate::{
    Consumer, ConsumerSeen, DeletedSecret, Destroyed, HistoryStore, SecretHistory, SecretWrite,
    StoreError, StoreResult, StoredVersion,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{ManageHistory, ReadSecrets, TeamAccess};
use tessera_core::domain::time::Micros;

/// Removes what the store keeps about a secret besides its row: its previous
/// versions (found by team, name and id: the table's clustering) and who
/// received them.
pub(super) fn forget_secret(
    c: &Connection,
    team_id: &str,
    canonical: &str,
    secret_id: &str,
) -> StoreResult<()> {
    c.prepare_cached(
        "DELETE FROM secret_versions WHERE team_id = ?1 AND canonical_name = ?2 AND secret_id = ?3",
    )?
    .execute([team_id, canonical, secret_id])?;
    c.prepare_cached("DELETE FROM consumer_versions WHERE secret_id = ?1")?
        .execute([secret_id])?;
    Ok(())
}

/// The current version and canonical name of the team's live secret
/// `secret_id`.
fn live(c: &Connection, team_id: &str, secret_id: &str) -> StoreResult<Option<(i64, String)>> {
    Ok(c.prepare_cached(
        "SELECT version, canonical_name FROM secrets WHERE team_id = ?1 AND id = ?2",
    )?
    .query_row([team_id, secret_id], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

#[async_trait]
impl HistoryStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn secret_history(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<SecretHistory>> {
        self.readers
            .read(|c| {
                // One read transaction: the current row and the previous
                // versions agree.
                let tx = c.unchecked_transaction()?;
                let current = tx
                    .prepare_cached(&format!(
                        "SELECT {STORED_COLUMNS}, version, updated_at, actor_key, actor_user
                         FROM secrets WHERE team_id = ?1 AND canonical_name = ?2"
                    ))?
                    .query_row([team.team_id(), canonical], |r| {
                        Ok((
                            stored_row(team, r)?.record,
                            current_version(r, width(STORED_COLUMNS))?,
                        ))
                    })
                    .optional()?;
                let Some((record, current)) = current else {
                    return Ok(None);
                };
                let mut versions = vec![current];
                let mut st = tx.prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM secret_versions
                     WHERE team_id = ?1 AND canonical_name = ?2 AND secret_id = ?3
                     ORDER BY version DESC"
                ))?;
                let key = [team.team_id(), canonical, &record.id];
                for v in st.query_map(key, |r| version_row(r))? {
                    versions.push(v?);
                }
                drop(st);
                tx.finish()?;
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
        self.readers
            .read(|c| {
                let canonical = match live(c, team.team_id(), secret_id)? {
                    None => return Ok(None),
                    Some((v, _)) if v == version => return Ok(Some(StoredVersion::Current)),
                    Some((_, canonical)) => canonical,
                };
                let found: Option<(Option<String>, Option<Vec<u8>>)> = c
                    .prepare_cached(
                        "SELECT version_id, ciphertext FROM secret_versions
                         WHERE team_id = ?1 AND canonical_name = ?2 AND secret_id = ?3
                           AND version = ?4",
                    )?
                    .query_row(
                        params![team.team_id(), canonical, secret_id, version],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
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
        let (team_id, secret_id) = (team.team_id().to_owned(), secret_id.to_owned());
        // Recorded when a ciphertext was destroyed now.
        let audit = move |d: &Destroyed| match d {
            Destroyed::Now => vec![event],
            _ => Vec::new(),
        };
        self.writer
            .write_audited(move |c| {
                let canonical = match live(c, &team_id, &secret_id)? {
                    None => return Ok(Destroyed::Missing),
                    Some((v, _)) if v == version => return Ok(Destroyed::Current),
                    Some((_, canonical)) => canonical,
                };
                let key = params![team_id, canonical, secret_id, version];
                let destroyed = c
                    .prepare_cached(
                        "UPDATE secret_versions SET destroyed_at = ?5, kek_id = NULL, ciphertext = NULL
                         WHERE team_id = ?1 AND canonical_name = ?2 AND secret_id = ?3
                           AND version = ?4 AND ciphertext IS NOT NULL",
                    )?
                    .execute(params![team_id, canonical, secret_id, version, now])?;
                if destroyed > 0 {
                    return Ok(Destroyed::Now);
                }
                let exists = c
                    .prepare_cached(
                        "SELECT 1 FROM secret_versions
                         WHERE team_id = ?1 AND canonical_name = ?2 AND secret_id = ?3 AND version = ?4",
                    )?
                    .exists(key)?;
                Ok(if exists {
                    Destroyed::Already
                } else {
                    Destroyed::Missing
                })
            }, audit)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn deleted_secrets(
        &self,
        team: &TeamAccess<ReadSecrets>,
    ) -> StoreResult<Vec<DeletedSecret>> {
        let sql = format!(
            "SELECT {DELETED_COLUMNS} FROM deleted_secrets WHERE team_id = ?1
             ORDER BY deleted_at DESC, id"
        );
        self.readers
            .all(&sql, [team.team_id()], |r| deleted_row(team, r))
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
        let (access, secret_id) = (team.clone(), secret_id.to_owned());
        let restored = self
            .writer
            .write_team_change(
                team.team_id().to_owned(),
                move |c| {
                    in_savepoint(c, |c| {
                        let team_id = access.team_id();
                        let deleted = c
                            .prepare_cached(
                                "SELECT 1 FROM deleted_secrets WHERE id = ?1 AND team_id = ?2",
                            )?
                            .exists([&secret_id, team_id])?;
                        if !deleted {
                            return Err(StoreError::NotFound("no such deleted secret".into()));
                        }
                        let before = value_bytes(c, team_id)?;
                        let moved = c
                            .prepare_cached(&format!(
                                "INSERT INTO secrets ({KEPT_ON_DELETE})
                             SELECT {KEPT_ON_DELETE} FROM deleted_secrets WHERE id = ?1
                             ON CONFLICT (team_id, canonical_name) DO NOTHING"
                            ))?
                            .execute([&secret_id])
                            .map_err(|e| StoreError::from(e).gone_as(TEAM_GONE))?;
                        if moved == 0 {
                            return Err(StoreError::Conflict(NAME_TAKEN.into()));
                        }
                        let counted = c
                            .prepare_cached(
                                "UPDATE teams SET secret_count = secret_count + 1
                             WHERE id = ?1 AND secret_count < ?2",
                            )?
                            .execute(params![team_id, max_secrets])?;
                        if counted == 0 {
                            return Err(StoreError::QuotaExceeded {
                                quota: SECRETS_QUOTA,
                                limit: max_secrets,
                            });
                        }
                        check_value_bytes(before, value_bytes(c, team_id)?, max_team_bytes)?;
                        c.prepare_cached("DELETE FROM deleted_secrets WHERE id = ?1")?
                            .execute([&secret_id])?;
                        let record = c
                            .prepare_cached(&format!(
                                "SELECT {STORED_COLUMNS} FROM secrets WHERE id = ?1"
                            ))?
                            .query_row([&secret_id], |r| stored_row(&access, r))?
                            .record;
                        Ok(Some(record))
                    })
                },
                move |record| vec![about_secret(event, record)],
            )
            .await?;
        let (record, revision) =
            restored.ok_or_else(|| StoreError::internal("an undelete changed nothing"))?;
        Ok(SecretWrite { record, revision })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn purge_deleted_secret(
        &self,
        team: &TeamAccess<ManageHistory>,
        secret_id: &str,
        event: AuditEvent,
    ) -> StoreResult<bool> {
        let (team_id, secret_id) = (team.team_id().to_owned(), secret_id.to_owned());
        self.writer
            .write_audited(
                move |c| {
                    let purged: Option<String> = c
                        .prepare_cached(
                            "DELETE FROM deleted_secrets WHERE id = ?1 AND team_id = ?2
                         RETURNING canonical_name",
                        )?
                        .query_row([&secret_id, &team_id], |r| r.get(0))
                        .optional()?;
                    match purged {
                        Some(canonical) => {
                            forget_secret(c, &team_id, &canonical, &secret_id)?;
                            Ok(true)
                        }
                        None => Ok(false),
                    }
                },
                if_changed(event),
            )
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn purge_expired(
        &self,
        deleted_before: Micros,
        seen_before: Micros,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        let audit = move |purged: &Vec<Purged>| purge_events(&event, purged, PurgeReason::Expired);
        let purged = self
            .writer
            .write_audited(
                move |c| {
                    let rows: Vec<(Purged, String)> = c
                        .prepare_cached(
                            "DELETE FROM deleted_secrets WHERE deleted_at < ?1
                         RETURNING org_id, team_id, id, name, canonical_name",
                        )?
                        .query_map([deleted_before], |r| {
                            let purged = Purged {
                                org_id: r.get(0)?,
                                team_id: r.get(1)?,
                                id: r.get(2)?,
                                name: r.get(3)?,
                            };
                            Ok((purged, r.get(4)?))
                        })?
                        .collect::<Result<_, _>>()?;
                    let mut purged = Vec::with_capacity(rows.len());
                    for (p, canonical) in rows {
                        forget_secret(c, &p.team_id, &canonical, &p.id)?;
                        purged.push(p);
                    }
                    for sql in [
                        "DELETE FROM consumer_versions WHERE (key_prefix, instance) IN
                         (SELECT key_prefix, instance FROM consumers WHERE last_seen_at < ?1)",
                        "DELETE FROM consumers WHERE last_seen_at < ?1",
                    ] {
                        c.prepare_cached(sql)?.execute([seen_before])?;
                    }
                    Ok(purged)
                },
                audit,
            )
            .await?;
        Ok(purged.len() as u64)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn record_consumers(&self, seen: Vec<ConsumerSeen>, cap: ConsumerCap) -> StoreResult<()> {
        self.writer
            .write(move |c| {
                let mut consumer = c.prepare_cached(
                    "INSERT INTO consumers (key_prefix, instance, team_id, client, last_seen_at, kind)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (key_prefix, instance) DO UPDATE SET team_id = excluded.team_id,
                         client = excluded.client,
                         last_seen_at = max(last_seen_at, excluded.last_seen_at),
                         kind = CASE WHEN excluded.last_seen_at >= last_seen_at
                                     THEN excluded.kind ELSE kind END",
                )?;
                let mut version = c.prepare_cached(
                    "INSERT INTO consumer_versions (secret_id, key_prefix, instance, version, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (secret_id, key_prefix, instance) DO UPDATE
                         SET version = excluded.version, received_at = excluded.received_at
                         WHERE excluded.received_at >= consumer_versions.received_at",
                )?;
                for s in &seen {
                    consumer.execute(params![
                        s.key_prefix,
                        s.instance,
                        s.team_id,
                        s.client,
                        s.seen_at,
                        s.kind.as_str()
                    ])?;
                    for (secret_id, v, at) in &s.received {
                        version.execute(params![secret_id, s.key_prefix, s.instance, v, at])?;
                    }
                }
                // Least recently seen first out; ties broken by instance so
                // every node evicts alike. The consumers go first, then the
                // versions no consumer holds any more.
                let keys: std::collections::BTreeSet<&str> =
                    seen.iter().map(|s| s.key_prefix.as_str()).collect();
                let consumers = i64::try_from(cap.consumers).unwrap_or(i64::MAX);
                let versions = i64::try_from(cap.versions).unwrap_or(i64::MAX);
                let mut evict = c.prepare_cached(
                    "DELETE FROM consumers WHERE key_prefix = ?1 AND instance IN (
                         SELECT instance FROM (
                             SELECT c.instance,
                                    row_number() OVER w AS n,
                                    sum(coalesce(v.n, 0)) OVER w AS rows_so_far
                             FROM consumers c
                             LEFT JOIN (SELECT instance, count(*) AS n FROM consumer_versions
                                        WHERE key_prefix = ?1 GROUP BY instance) v
                                 ON v.instance = c.instance
                             WHERE c.key_prefix = ?1
                             WINDOW w AS (ORDER BY c.last_seen_at DESC, c.instance
                                          ROWS UNBOUNDED PRECEDING))
                         WHERE n > 1 AND (n > ?2 OR rows_so_far > ?3))",
                )?;
                let mut orphans = c.prepare_cached(
                    "DELETE FROM consumer_versions WHERE key_prefix = ?1 AND instance NOT IN
                         (SELECT instance FROM consumers WHERE key_prefix = ?1)",
                )?;
                for key in &keys {
                    if evict.execute(params![key, consumers, versions])? > 0 {
                        orphans.execute(params![key])?;
                    }
                }
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
             WHERE v.secret_id = ?1 AND c.team_id = ?2
             ORDER BY v.version DESC, c.last_seen_at DESC, c.key_prefix, c.instance"
        );
        self.readers
            .all(&sql, [secret_id, team.team_id()], |r| consumer_row(r))
            .await
    }
}
