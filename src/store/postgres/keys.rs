//! The API-key aggregate on PostgreSQL.

use super::identity::within_quota;
use super::rows::{key_row, user_with, KEY_COLUMNS};
use super::{bounded, notify_identity_changed, PostgresStore};
use crate::domain::access::{KeyGrant, KeyRevocation, OrgAccess};
use crate::domain::time::Micros;
use crate::domain::types::ApiKeyRecord;
use crate::store::{to_json_list, KeyListing, KeyStore, NewApiKey, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::{PgConnection, Row};

/// Inserts a key row (organization bootstrap and key creation).
pub async fn insert_key(
    c: &mut PgConnection,
    k: &ApiKeyRecord,
    name_scope: &str,
) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO api_keys ({KEY_COLUMNS}, name_scope)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&k.prefix)
    .bind(&k.org_id)
    .bind(k.key_type.as_str())
    .bind(&k.name)
    .bind(&k.secret_hash)
    .bind(&k.user_id)
    .bind(&k.team_id)
    .bind(to_json_list(&k.model_ids))
    .bind(&k.created_by)
    .bind(k.created_at)
    .bind(k.last_used_at)
    .bind(to_json_list(&k.secret_names))
    .bind(name_scope)
    .execute(c)
    .await
    .map_err(|e| {
        StoreError::from(e)
            .conflict_as("a live API key with this name already exists in the same scope")
            .gone_as(if k.user_id.is_some() {
                "user not found"
            } else {
                "team not found"
            })
    })?;
    Ok(())
}

fn key_listing(r: &sqlx::postgres::PgRow) -> Result<KeyListing, sqlx::Error> {
    let owner_id: Option<String> = r.try_get("owner_id")?;
    Ok(KeyListing {
        key: key_row(r)?,
        team_name: r.try_get("team_name")?,
        owner: match owner_id {
            Some(_) => Some(user_with(r, "owner_")?),
            None => None,
        },
    })
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>> {
        bounded(async {
            let row = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1"
            ))
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(key_row).transpose()?)
        })
        .await
    }

    async fn org_api_key(
        &self,
        org: &OrgAccess,
        prefix: &str,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        bounded(async {
            let row = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1 AND org_id = $2"
            ))
            .bind(prefix)
            .bind(org.org_id())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(key_row).transpose()?)
        })
        .await
    }

    async fn insert_api_key(
        &self,
        grant: &KeyGrant,
        new: NewApiKey,
        max_keys: i64,
    ) -> StoreResult<ApiKeyRecord> {
        let key = ApiKeyRecord {
            prefix: new.prefix,
            org_id: grant.org_id().to_owned(),
            key_type: new.key_type,
            name: new.name,
            secret_hash: new.secret_hash,
            user_id: grant.owner_id().map(str::to_owned),
            team_id: grant.team_id().map(str::to_owned),
            model_ids: new.model_ids,
            secret_names: new.secret_names,
            created_by: new.created_by,
            created_at: new.created_at,
            last_used_at: None,
        };
        bounded(async {
            let mut tx = self.pool.begin().await?;
            // Lock the creator's row, so a deletion of that user waits for
            // this key (and deletes it) or wins and this finds it gone: a key
            // must not outlive the user who created it.
            if let Some(creator) = &key.created_by {
                let found = sqlx::query("SELECT id FROM users WHERE id = $1 FOR KEY SHARE")
                    .bind(creator)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(StoreError::NotFound(
                        "the user creating this key no longer exists".into(),
                    ));
                }
            }
            let scope = grant.name_scope();
            within_quota(
                &mut tx,
                &key.org_id,
                "SELECT COUNT(*) FROM api_keys WHERE name_scope = $1",
                scope,
                crate::store::key_quota_name(scope),
                max_keys,
            )
            .await?;
            insert_key(&mut tx, &key, scope).await?;
            tx.commit().await?;
            Ok(key)
        })
        .await
    }

    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>> {
        bounded(async {
            let rows = sqlx::query(
                "SELECT k.prefix, k.org_id, k.key_type, k.name, k.secret_hash, k.user_id, k.team_id,
                        k.model_ids, k.created_by, k.created_at, k.last_used_at, k.secret_names,
                        t.name AS team_name,
                        u.id AS owner_id, u.org_id AS owner_org_id, u.email AS owner_email,
                        u.name AS owner_name, u.role AS owner_role, u.created_at AS owner_created_at
                 FROM api_keys k
                 LEFT JOIN teams t ON t.id = k.team_id
                 LEFT JOIN users u ON u.id = k.user_id
                 WHERE k.org_id = $1 ORDER BY k.created_at, k.prefix",
            )
            .bind(org.org_id())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(key_listing).collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_api_key(&self, grant: &KeyRevocation) -> StoreResult<bool> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let deleted = sqlx::query("DELETE FROM api_keys WHERE org_id = $1 AND prefix = $2")
                .bind(grant.org_id())
                .bind(grant.prefix())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if deleted {
                // Other nodes end this key's long polls at once.
                notify_identity_changed(&mut tx).await?;
            }
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }

    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()> {
        let (prefixes, times): (Vec<String>, Vec<i64>) = uses.into_iter().unzip();
        bounded(async {
            // One row per key: an UPDATE … FROM joining a key to several rows
            // applies an arbitrary one of them, not the latest.
            sqlx::query(
                "UPDATE api_keys AS k SET last_used_at = GREATEST(COALESCE(k.last_used_at, 0), u.at)
                 FROM (SELECT prefix, MAX(at) AS at
                       FROM unnest($1::text[], $2::bigint[]) AS t(prefix, at) GROUP BY prefix) AS u
                 WHERE k.prefix = u.prefix",
            )
            .bind(prefixes)
            .bind(times)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }
}
