//! The API-key aggregate on PostgreSQL.

use super::identity::person;
use super::identity::within_quota;
use super::{bounded, notify_identity_changed, PostgresStore};
use crate::keys::{
    insert_failed, key_quota_name, key_row, listing_columns, listing_row, AUTHORITY_GONE,
    CREATOR_GONE, KEY_COLUMNS,
};
use crate::{to_json_list, KeyListing, KeyStore, NewApiKey, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::{PgConnection, Row as _};
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{answerer, may_answer_for, KeyGrant, KeyRevocation, OrgAccess};
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::ApiKeyRecord;

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
    .map_err(|e| insert_failed(e.into(), k))?;
    Ok(())
}

#[async_trait]
impl KeyStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1");
        self.optional(sqlx::query(&sql).bind(prefix), key_row).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn revoked_key_hash(&self, prefix: &str) -> StoreResult<Option<Vec<u8>>> {
        let sql = "SELECT secret_hash FROM revoked_api_keys WHERE prefix = $1";
        self.optional(sqlx::query(sql).bind(prefix), |r| r.try_get(0))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn org_api_key(
        &self,
        org: &OrgAccess,
        prefix: &str,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1 AND org_id = $2");
        let query = sqlx::query(&sql).bind(prefix).bind(org.org_id());
        self.optional(query, key_row).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn insert_api_key(
        &self,
        grant: &KeyGrant,
        new: NewApiKey,
        max_keys: i64,
        event: AuditEvent,
    ) -> StoreResult<ApiKeyRecord> {
        let key = new.record(grant);
        bounded(async {
            let mut tx = self.pool.begin().await?;
            // Lock the creator's row, so a change that takes the creator's
            // authority away (deletion, demotion, removal from the team:
            // they lock the row `FOR UPDATE`) waits for this key and deals
            // with it, or wins and this finds the authority gone: a key must
            // not outlive the authority of the user who answers for it.
            if let Some(creator) = &key.created_by {
                let found = sqlx::query("SELECT id FROM users WHERE id = $1 FOR KEY SHARE")
                    .bind(creator)
                    .fetch_optional(&mut *tx)
                    .await?;
                let person = match found {
                    Some(_) => person(&mut tx, &key.org_id, creator).await?,
                    None => None,
                };
                let Some((user, memberships)) = person else {
                    return Err(StoreError::NotFound(CREATOR_GONE.into()));
                };
                if answerer(&key).is_some() && !may_answer_for(&user, &memberships, &key) {
                    return Err(StoreError::Conflict(AUTHORITY_GONE.into()));
                }
            }
            let (scope, count) = (
                grant.name_scope(),
                "SELECT COUNT(*) FROM api_keys WHERE name_scope = $1",
            );
            let quota = key_quota_name(scope);
            within_quota(&mut tx, &key.org_id, count, scope, quota, max_keys).await?;
            insert_key(&mut tx, &key, scope).await?;
            self.commit_recorded(tx, vec![event]).await?;
            Ok(key)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>> {
        let sql = format!(
            "SELECT {} FROM api_keys k
             LEFT JOIN teams t ON t.id = k.team_id
             LEFT JOIN users u ON u.id = k.user_id
             WHERE k.org_id = $1 ORDER BY k.created_at, k.prefix",
            listing_columns()
        );
        self.all(sqlx::query(&sql).bind(org.org_id()), listing_row)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delete_api_key(&self, grant: &KeyRevocation, event: AuditEvent) -> StoreResult<bool> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let deleted = sqlx::query("DELETE FROM api_keys WHERE org_id = $1 AND prefix = $2")
                .bind(grant.org_id())
                .bind(grant.prefix())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            let events = if deleted {
                // Other nodes end this key's long polls at once.
                notify_identity_changed(&mut tx).await?;
                vec![event]
            } else {
                Vec::new()
            };
            self.commit_recorded(tx, events).await?;
            Ok(deleted)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()> {
        let (prefixes, times): (Vec<String>, Vec<i64>) = uses.into_iter().unzip();
        // One row per key: an UPDATE … FROM joining a key to several rows
        // applies an arbitrary one of them, not the latest.
        let query = sqlx::query(
            "UPDATE api_keys AS k SET last_used_at = GREATEST(COALESCE(k.last_used_at, 0), u.at)
             FROM (SELECT prefix, MAX(at) AS at
                   FROM unnest($1::text[], $2::bigint[]) AS t(prefix, at) GROUP BY prefix) AS u
             WHERE k.prefix = u.prefix",
        );
        self.execute(query.bind(prefixes).bind(times)).await?;
        Ok(())
    }
}
