//! The API-key aggregate. Keys are stored with the hash of their secret
//! part only.

use super::StoreResult;
use crate::domain::access::{KeyGrant, KeyRevocation, OrgAccess};
use crate::domain::time::Micros;
use crate::domain::types::{ApiKeyRecord, KeyType, User};
use async_trait::async_trait;

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
    /// The key with this prefix in the grant's organization only.
    async fn org_api_key(&self, org: &OrgAccess, prefix: &str)
        -> StoreResult<Option<ApiKeyRecord>>;
    /// `Conflict` when a live key of the same scope has the same name;
    /// `QuotaExceeded` when the scope (a user, a team, the organization) has
    /// `max_keys` live keys already; `NotFound` when its team, its owner or
    /// the user creating it is gone.
    async fn insert_api_key(
        &self,
        grant: &KeyGrant,
        key: NewApiKey,
        max_keys: i64,
    ) -> StoreResult<ApiKeyRecord>;
    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>>;
    /// Deletes the key the grant names; `false` when it is already gone.
    async fn delete_api_key(&self, grant: &KeyRevocation) -> StoreResult<bool>;
    /// Records when keys were last used (batched by the caller): each key
    /// keeps the latest of its recorded time and the times given; unknown
    /// prefixes are ignored.
    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()>;
}
