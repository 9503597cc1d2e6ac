//! The API-key aggregate. Keys are stored with the hash of their secret
//! part only.

use super::identity::{user_at, TEAM_GONE, USER_COLUMNS, USER_GONE};
use super::row::{qualified, width, Row};
use super::{json_list, StoreError, StoreResult};
use async_trait::async_trait;
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{KeyGrant, KeyRevocation, OrgAccess};
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::{ApiKeyRecord, KeyType, User};

pub(crate) const CREATOR_GONE: &str = "the user creating this key no longer exists";
/// The creator lost the role that let them issue the key while it was being
/// created (the service answers it 403).
pub const AUTHORITY_GONE: &str =
    "the user creating this key no longer holds the role that lets them issue it";

/// The quota a key's name scope (`user:…`, `team:…`, `org:…`) counts against.
pub(crate) fn key_quota_name(name_scope: &str) -> &'static str {
    match name_scope.split(':').next() {
        Some("user") => "live API keys per user",
        Some("team") => "live API keys per team",
        _ => "organization-wide live API keys",
    }
}

/// A failed insert of `key`, in our words.
pub(crate) fn insert_failed(e: StoreError, key: &ApiKeyRecord) -> StoreError {
    e.conflict_as("a live API key with this name already exists in the same scope")
        .gone_as(if key.user_id.is_some() {
            USER_GONE
        } else {
            TEAM_GONE
        })
}

pub(crate) const KEY_COLUMNS: &str = "prefix, org_id, key_type, name, secret_hash, user_id, \
     team_id, model_ids, created_by, created_at, last_used_at, secret_names";

pub(crate) fn key_row<R: Row>(r: &R) -> Result<ApiKeyRecord, R::Error> {
    Ok(ApiKeyRecord {
        prefix: r.col(0)?,
        org_id: r.col(1)?,
        key_type: r.parse(2)?,
        name: r.col(3)?,
        secret_hash: r.col(4)?,
        user_id: r.col(5)?,
        team_id: r.col(6)?,
        model_ids: json_list(r.col(7)?),
        created_by: r.col(8)?,
        created_at: r.col(9)?,
        last_used_at: r.col(10)?,
        secret_names: json_list(r.col(11)?),
    })
}

/// The columns of an organization's key listing (`k`: keys, `t`: their
/// teams, `u`: their owners), read by [`listing_row`].
pub(crate) fn listing_columns() -> String {
    let (keys, users) = (qualified("k", KEY_COLUMNS), qualified("u", USER_COLUMNS));
    format!("{keys}, t.name, {users}")
}

pub(crate) fn listing_row<R: Row>(r: &R) -> Result<KeyListing, R::Error> {
    // After the key's columns: the team's name, then the owner's.
    let base = width(KEY_COLUMNS);
    let owner_id: Option<String> = r.col(base + 1)?;
    Ok(KeyListing {
        key: key_row(r)?,
        team_name: r.col(base)?,
        owner: match owner_id {
            Some(_) => Some(user_at(r, base + 1)?),
            None => None,
        },
    })
}

/// A key to create. Its organization, team, owner and name scope come from
/// the [`KeyGrant`] that allows it.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub prefix: String,
    pub key_type: KeyType,
    pub name: Option<String>,
    pub secret_hash: Vec<u8>,
    pub model_ids: Option<Vec<String>>,
    pub secret_names: Option<Vec<String>>,
    pub created_by: Option<String>,
    pub created_at: Micros,
}

impl NewApiKey {
    /// The key as stored, where the grant puts it.
    pub(crate) fn record(self, grant: &KeyGrant) -> ApiKeyRecord {
        ApiKeyRecord {
            prefix: self.prefix,
            org_id: grant.org_id().to_owned(),
            key_type: self.key_type,
            name: self.name,
            secret_hash: self.secret_hash,
            user_id: grant.owner_id().map(str::to_owned),
            team_id: grant.team_id().map(str::to_owned),
            model_ids: self.model_ids,
            secret_names: self.secret_names,
            created_by: self.created_by,
            created_at: self.created_at,
            last_used_at: None,
        }
    }
}

/// An API key with what its listing shows besides the record.
#[derive(Debug, Clone)]
pub struct KeyListing {
    pub key: ApiKeyRecord,
    pub team_name: Option<String>,
    pub owner: Option<User>,
}

#[async_trait]
pub trait KeyStore {
    /// The key with this prefix, in any organization: authentication starts
    /// here, before anyone is known.
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// The hash of the secret part of a key with this prefix that was
    /// revoked (or deleted with its user or team), if one was: such a key
    /// is recognised, and refused as revoked rather than as a bad key.
    async fn revoked_key_hash(&self, prefix: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The key with this prefix in the grant's organization only.
    async fn org_api_key(&self, org: &OrgAccess, prefix: &str)
        -> StoreResult<Option<ApiKeyRecord>>;
    /// `Conflict` when a live key of the same scope has the same name, or
    /// ([`AUTHORITY_GONE`]) when the user creating it may no longer issue it;
    /// `QuotaExceeded` when the scope (a user, a team, the organization) has
    /// `max_keys` live keys already; `NotFound` when its team, its owner or
    /// the user creating it is gone.
    async fn insert_api_key(
        &self,
        grant: &KeyGrant,
        key: NewApiKey,
        max_keys: i64,
        event: AuditEvent,
    ) -> StoreResult<ApiKeyRecord>;
    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>>;
    /// Deletes the key the grant names; `false` when it is already gone.
    async fn delete_api_key(&self, grant: &KeyRevocation, event: AuditEvent) -> StoreResult<bool>;
    /// Records when keys were last used (batched by the caller): each key
    /// keeps the latest of its recorded time and the times given; unknown
    /// prefixes are ignored.
    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()>;
}
