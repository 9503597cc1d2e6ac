//! The secret aggregate on SQLite. Writes are single statements where they
//! can be (a failing statement changes nothing, so it needs no savepoint);
//! every change to a team's secrets moves its revision in the same batch.

use super::history::forget_secret;
use super::writer::in_savepoint;
use super::SqliteStore;
use crate::audit::{about_secret, purge_events, PurgeReason, Purged};
use crate::history::KEPT_ON_DELETE;
use crate::identity::{team_row, TEAM_COLUMNS, TEAM_GONE};
use crate::secrets::{check_value_bytes, listed_row, stored_row, SECRETS_QUOTA, STORED_COLUMNS};
use crate::{
    Deletion, SealedWrite, SecretStore, SecretWrite, Snapshot, StoreError, StoreResult,
    StoredSecret,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tessera_core::domain::access::{
    AllTeamsAccess, DeliveryAccess, OrgAccess, ReadSecrets, TeamAccess, WriteSecrets,
};
use tessera_core::domain::types::{ListedSecret, Team};

/// The bytes of the team's current values (migration 0010), read inside
/// the writer's transaction: exact.
pub(super) fn value_bytes(c: &Connection, team_id: &str) -> StoreResult<i64> {
    Ok(
        c.prepare_cached("SELECT value_bytes FROM teams WHERE id = ?1")?
            .query_row([team_id], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}

/// Updates the secret the write expects; `None` when it is not there. The
/// version it replaces moves to `secret_versions` (the schema's trigger).
/// `QuotaExceeded` (and nothing changed) when the new value would grow the
/// team's value bytes past the write's quota.
fn update(
    c: &Connection,
    team_id: &str,
    w: &SealedWrite,
) -> StoreResult<Option<(String, i64, i64)>> {
    in_savepoint(c, |c| {
        let before = value_bytes(c, team_id)?;
        let done = update_row(c, team_id, w)?;
        if done.is_some() {
            check_value_bytes(before, value_bytes(c, team_id)?, w.max_team_bytes)?;
        }
        Ok(done)
    })
}

fn update_row(
    c: &Connection,
    team_id: &str,
    w: &SealedWrite,
) -> StoreResult<Option<(String, i64, i64)>> {
    let h = &w.history;
    Ok(c.prepare_cached(
        "UPDATE secrets SET version = version + 1, updated_at = ?4, version_id = ?5,
                 kek_id = ?6, ciphertext = ?7, actor_key = ?8, actor_user = ?9,
                 keep_versions = ?10, destroy_previous = ?11
             WHERE team_id = ?1 AND canonical_name = ?2 AND id = ?3
             RETURNING name, created_at, version",
    )?
    .query_row(
        params![
            team_id,
            w.canonical_name,
            w.secret_id,
            w.now,
            w.version_id,
            w.kek_id,
            w.ciphertext,
            h.actor.key_prefix,
            h.actor.user_id,
            h.keep_versions,
            h.destroy_previous
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?)
}

/// Creates the secret the write describes, counted against the team's
/// quota; `None` when the name is taken meanwhile.
fn insert(
    c: &Connection,
    org_id: &str,
    team_id: &str,
    w: &SealedWrite,
    max: i64,
) -> StoreResult<Option<(String, i64, i64)>> {
    in_savepoint(c, |c| {
        let before = value_bytes(c, team_id)?;
        let inserted = c
            .prepare_cached(
                "INSERT INTO secrets (team_id, canonical_name, id, org_id, name, created_at,
                     updated_at, version, version_id, kek_id, ciphertext, actor_key, actor_user,
                     keep_versions)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (team_id, canonical_name) DO NOTHING",
            )?
            .execute(params![
                team_id,
                w.canonical_name,
                w.secret_id,
                org_id,
                w.name,
                w.now,
                w.version_id,
                w.kek_id,
                w.ciphertext,
                w.history.actor.key_prefix,
                w.history.actor.user_id,
                w.history.keep_versions
            ])
            .map_err(|e| StoreError::from(e).gone_as(TEAM_GONE))?;
        if inserted == 0 {
            return Ok(None);
        }
        let counted = c
            .prepare_cached(
                "UPDATE teams SET secret_count = secret_count + 1 WHERE id = ?1 AND secret_count < ?2",
            )?
            .execute(params![team_id, max])?;
        if counted == 0 {
            return Err(StoreError::QuotaExceeded {
                quota: SECRETS_QUOTA,
                limit: max,
            });
        }
        check_value_bytes(before, value_bytes(c, team_id)?, w.max_team_bytes)?;
        Ok(Some((w.name.clone(), w.now, 1)))
    })
}

#[async_trait]
impl SecretStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn secret_id(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<String>> {
        let sql = "SELECT id FROM secrets WHERE team_id = ?1 AND canonical_name = ?2";
        self.readers
            .optional(sql, [team.team_id(), canonical], |r| r.get(0))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn upsert_secret(
        &self,
        team: &TeamAccess<WriteSecrets>,
        write: SealedWrite,
        max_secrets: i64,
    ) -> StoreResult<SecretWrite> {
        let access = team.clone();
        let event = write.audit.clone();
        let (record, revision) = self
            .writer
            .write_team_change(
                team.team_id().to_owned(),
                move |c| {
                    let (org_id, team_id) = (access.org_id(), access.team_id());
                    let done = if write.exists {
                        update(c, team_id, &write)?
                    } else {
                        insert(c, org_id, team_id, &write, max_secrets)?
                    };
                    let (name, created_at, version) = done.ok_or(StoreError::Stale)?;
                    Ok(Some(write.record(&access, name, created_at, version)))
                },
                move |_| vec![event],
            )
            .await?
            .ok_or_else(|| StoreError::internal("a committed secret write changed nothing"))?;
        Ok(SecretWrite { record, revision })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delete_secret(
        &self,
        team: &TeamAccess<WriteSecrets>,
        canonical: &str,
        how: &Deletion,
    ) -> StoreResult<Option<SecretWrite>> {
        let (access, canonical, how) = (team.clone(), canonical.to_owned(), how.clone());
        let event = how.audit.clone();
        // A job that finds nothing changes nothing, the revision included.
        let deleted = self
            .writer
            .write_team_change(
                team.team_id().to_owned(),
                move |c| {
                    in_savepoint(c, |c| {
                        let (org_id, team_id) = (access.org_id(), access.team_id());
                        if how.keep {
                            c.prepare_cached(&format!(
                            "INSERT INTO deleted_secrets ({KEPT_ON_DELETE}, deleted_at, deleted_by)
                             SELECT {KEPT_ON_DELETE}, ?3, ?4 FROM secrets
                             WHERE team_id = ?1 AND canonical_name = ?2"
                        ))?
                            .execute(params![team_id, canonical, how.at, how.by])?;
                        }
                        let found = c
                            .prepare_cached(&format!(
                                "DELETE FROM secrets WHERE team_id = ?1 AND canonical_name = ?2
                             RETURNING {STORED_COLUMNS}"
                            ))?
                            .query_row([team_id, &canonical], |r| stored_row(&access, r))
                            .optional()?;
                        let Some(found) = found else { return Ok(None) };
                        let purged = if how.keep {
                            let evicted: Vec<(String, String, String)> = c
                                .prepare_cached(
                                    "DELETE FROM deleted_secrets WHERE team_id = ?1 AND id IN (
                                     SELECT id FROM deleted_secrets WHERE team_id = ?1
                                     ORDER BY deleted_at DESC, id DESC LIMIT -1 OFFSET ?2)
                                 RETURNING canonical_name, id, name",
                                )?
                                .query_map(params![team_id, how.max_kept], |r| {
                                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                                })?
                                .collect::<Result<_, _>>()?;
                            let mut purged = Vec::with_capacity(evicted.len());
                            for (canonical, id, name) in evicted {
                                forget_secret(c, team_id, &canonical, &id)?;
                                purged.push(Purged {
                                    org_id: org_id.to_owned(),
                                    team_id: team_id.to_owned(),
                                    id,
                                    name,
                                });
                            }
                            (PurgeReason::DeletedListFull, purged)
                        } else {
                            forget_secret(c, team_id, &canonical, &found.record.id)?;
                            let purged = Purged {
                                org_id: org_id.to_owned(),
                                team_id: team_id.to_owned(),
                                id: found.record.id.clone(),
                                name: found.record.name.clone(),
                            };
                            (PurgeReason::NotKept, vec![purged])
                        };
                        c.prepare_cached(
                            "UPDATE teams SET secret_count = secret_count - 1 WHERE id = ?1",
                        )?
                        .execute([team_id])?;
                        Ok(Some((found.record, purged)))
                    })
                },
                move |(record, (reason, purged))| {
                    let mut events = vec![about_secret(event.clone(), record)];
                    events.extend(purge_events(&event, purged, *reason));
                    events
                },
            )
            .await?;
        Ok(deleted.map(|((record, _), revision)| SecretWrite { record, revision }))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn latest_secret(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<StoredSecret>> {
        let sql = format!(
            "SELECT {STORED_COLUMNS} FROM secrets WHERE team_id = ?1 AND canonical_name = ?2"
        );
        let params = [team.team_id(), canonical];
        self.readers
            .optional(&sql, params, |r| stored_row(team, r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn team_secrets_page(
        &self,
        team: &TeamAccess<ReadSecrets>,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>> {
        let sql = "SELECT team_id, ?4, id, name, canonical_name, created_at, version FROM secrets
                   WHERE team_id = ?1 AND canonical_name > ?2 ORDER BY canonical_name LIMIT ?3";
        let (team_id, team_name) = (team.team_id().to_owned(), team.team_name().to_owned());
        let params = (team_id, after.to_owned(), limit as i64, team_name);
        self.readers
            .all_sized(limit, sql, params, |r| listed_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn org_secrets_page(
        &self,
        org: &AllTeamsAccess,
        after: (&str, &str),
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>> {
        let sql =
            "SELECT s.team_id, t.name, s.id, s.name, s.canonical_name, s.created_at, s.version
                   FROM secrets s JOIN teams t ON t.id = s.team_id
                   WHERE s.org_id = ?1 AND (s.team_id, s.canonical_name) > (?2, ?3)
                   ORDER BY s.team_id, s.canonical_name LIMIT ?4";
        let (org_id, after_team, after_name) = (org.org_id(), after.0, after.1);
        let params = (
            org_id.to_owned(),
            after_team.to_owned(),
            after_name.to_owned(),
            limit as i64,
        );
        self.readers
            .all_sized(limit, sql, params, |r| listed_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn teams_with_secrets(&self, org: &OrgAccess) -> StoreResult<Vec<Team>> {
        let sql = format!(
            "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = ?1 AND secret_count > 0 ORDER BY id"
        );
        self.readers
            .all(&sql, [org.org_id()], |r| team_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn team_revision(&self, team: &TeamAccess<ReadSecrets>) -> StoreResult<i64> {
        let sql = "SELECT revision FROM teams WHERE id = ?1";
        let revision = self.readers.optional(sql, [team.team_id()], |r| r.get(0));
        revision
            .await?
            .ok_or_else(|| StoreError::NotFound(TEAM_GONE.into()))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn snapshot(&self, grant: &DeliveryAccess) -> StoreResult<Snapshot> {
        let team = grant.team();
        self.readers
            .read(|c| {
                // One read transaction: the revision and the rows are of
                // the same instant.
                let tx = c.unchecked_transaction()?;
                let revision: i64 = tx
                    .prepare_cached("SELECT revision FROM teams WHERE id = ?1")?
                    .query_row([team.team_id()], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound(TEAM_GONE.into()))?;
                let secrets = {
                    let mut st = tx.prepare_cached(&format!(
                        "SELECT {STORED_COLUMNS} FROM secrets WHERE team_id = ?1 ORDER BY canonical_name"
                    ))?;
                    let rows = st.query_map([team.team_id()], |r| stored_row(team, r))?;
                    rows.collect::<Result<_, _>>()?
                };
                tx.finish()?;
                Ok(Snapshot { revision, secrets })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn team_revisions(&self, team_ids: Vec<String>) -> StoreResult<Vec<(String, i64)>> {
        self.readers
            .read(|c| {
                let mut st = c.prepare_cached("SELECT id, revision FROM teams WHERE id = ?1")?;
                let mut out = Vec::with_capacity(team_ids.len());
                for id in &team_ids {
                    if let Some(row) = st
                        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?
                    {
                        out.push(row);
                    }
                }
                Ok(out)
            })
            .await
    }
}
