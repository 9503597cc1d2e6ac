//! The API-key aggregate on SQLite.

use super::identity::person;
use super::{within_quota, SqliteStore};
use crate::audit::{always, if_changed};
use crate::keys::{
    insert_failed, key_quota_name, key_row, listing_columns, listing_row, AUTHORITY_GONE,
    CREATOR_GONE, KEY_COLUMNS,
};
use crate::{to_json_list, KeyListing, KeyStore, NewApiKey, StoreError, StoreResult};
use async_trait::async_trait;
use rusqlite::{params, Connection};
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{answerer, may_answer_for, KeyGrant, KeyRevocation, OrgAccess};
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::ApiKeyRecord;

/// Inserts a key row (organization bootstrap and key creation).
pub fn insert_key(c: &Connection, k: &ApiKeyRecord, name_scope: &str) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO api_keys ({KEY_COLUMNS}, name_scope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        k.prefix,
        k.org_id,
        k.key_type.as_str(),
        k.name,
        k.secret_hash,
        k.user_id,
        k.team_id,
        to_json_list(&k.model_ids),
        k.created_by,
        k.created_at,
        k.last_used_at,
        to_json_list(&k.secret_names),
        name_scope,
    ])
    .map_err(|e| insert_failed(e.into(), k))?;
    Ok(())
}

#[async_trait]
impl KeyStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?1");
        self.readers.optional(&sql, [prefix], |r| key_row(r)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn revoked_key_hash(&self, prefix: &str) -> StoreResult<Option<Vec<u8>>> {
        let sql = "SELECT secret_hash FROM revoked_api_keys WHERE prefix = ?1";
        self.readers.optional(sql, [prefix], |r| r.get(0)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn org_api_key(
        &self,
        org: &OrgAccess,
        prefix: &str,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?1 AND org_id = ?2");
        self.readers
            .optional(&sql, [prefix, org.org_id()], |r| key_row(r))
            .await
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
        let scope = grant.name_scope().to_owned();
        self.writer
            .write_audited(
                move |c| {
                    // A key must not outlive its creator, nor the authority
                    // its creator issued it with, if either went meanwhile
                    // (see `change_authority`).
                    if let Some(creator) = &key.created_by {
                        let Some((user, memberships)) = person(c, &key.org_id, creator)? else {
                            return Err(StoreError::NotFound(CREATOR_GONE.into()));
                        };
                        if answerer(&key).is_some() && !may_answer_for(&user, &memberships, &key) {
                            return Err(StoreError::Conflict(AUTHORITY_GONE.into()));
                        }
                    }
                    let count = "SELECT COUNT(*) FROM api_keys WHERE name_scope = ?1";
                    within_quota(c, count, &scope, key_quota_name(&scope), max_keys)?;
                    insert_key(c, &key, &scope)?;
                    Ok(key)
                },
                always(event),
            )
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>> {
        let sql = format!(
            "SELECT {} FROM api_keys k
             LEFT JOIN teams t ON t.id = k.team_id
             LEFT JOIN users u ON u.id = k.user_id
             WHERE k.org_id = ?1 ORDER BY k.created_at, k.prefix",
            listing_columns()
        );
        self.readers
            .all(&sql, [org.org_id()], |r| listing_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delete_api_key(&self, grant: &KeyRevocation, event: AuditEvent) -> StoreResult<bool> {
        let sql = "DELETE FROM api_keys WHERE org_id = ?1 AND prefix = ?2";
        let params = (grant.org_id().to_owned(), grant.prefix().to_owned());
        let deleted = self.writer.execute_audited(sql, params, if_changed(event));
        Ok(deleted.await? > 0)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()> {
        self.writer
            .write(move |c| {
                let mut st = c.prepare_cached(
                    "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2) WHERE prefix = ?1",
                )?;
                for (prefix, at) in &uses {
                    st.execute(params![prefix, at])?;
                }
                Ok(())
            })
            .await
    }
}
