//! Persistence. One [`Store`] trait, two implementations: SQLite (the embedded
//! default) and PostgreSQL. Data methods take an authorization grant from
//! [`crate::domain::access`] so they cannot be reached without one.

pub mod postgres;
pub mod sqlite;

use crate::domain::access::{KeyGrant, OrgAccess, TeamAccess};
use crate::domain::secret_name::SecretName;
use crate::domain::time::Micros;
use crate::domain::types::{
    ApiKeyRecord, KekRecord, Membership, Organization, SecretRecord, SecretSummary, Team, TeamRole,
    User,
};
use async_trait::async_trait;
use std::sync::Arc;

pub type StoreResult<T> = Result<T, StoreError>;

/// Our words for a uniqueness violation a store method did not name more
/// precisely.
pub(crate) const CONFLICT: &str = "the request conflicts with an existing record";
/// Our words for a foreign-key violation a store method did not name more
/// precisely: what the write refers to was deleted meanwhile.
pub(crate) const GONE: &str = "the team or user this request refers to no longer exists";

/// What went wrong in a store call. Database errors are classified in one
/// place per backend (`sqlite::internal`, `postgres::map_err`); messages a
/// client may see (`Conflict`, `NotFound`) are always written by Tessera,
/// never copied from the database.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated; the message says which.
    #[error("{0}")]
    Conflict(String),
    /// A record the write refers to (a team, a user) is gone: a concurrent
    /// request deleted it. The message says what is missing.
    #[error("{0}")]
    NotFound(String),
    /// The disk holding the data is full; writes fail until space is freed.
    /// The message is for the log.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The database cannot be reached right now.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else. The message is for the log, never for a client.
    #[error("database error: {0}")]
    Internal(String),
}

/// Produces the ciphertext for a secret version once the store knows the
/// secret's id and the new version number (both are bound into the
/// ciphertext's associated data). Callable again when a transaction is
/// retried.
pub type SealFn = Box<dyn Fn(&str, i64) -> Vec<u8> + Send + Sync>;

/// Everything created together with a new organization, in one transaction.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub org: Organization,
    pub default_team: Team,
    pub admin: User,
    pub admin_key: ApiKeyRecord,
}

/// An API key with what its listing shows besides the record.
#[derive(Debug, Clone)]
pub struct KeyListing {
    pub key: ApiKeyRecord,
    pub team_name: Option<String>,
    pub owner: Option<User>,
}

/// One page of the user directory, ordered by id.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Only users whose id sorts after this one.
    pub after: Option<String>,
    pub limit: usize,
    /// Only the user whose [`crate::domain::names::email_key`] is this.
    pub email_key: Option<String>,
}

/// What deleting a team did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamDeletion {
    Deleted {
        secrets: i64,
    },
    /// Not deleted: the team holds secrets and no cascade was asked for.
    HasSecrets(i64),
    NotFound,
}

/// A secret's latest version as stored.
#[derive(Debug, Clone)]
pub struct StoredSecret {
    pub record: SecretRecord,
    pub ciphertext: Vec<u8>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Cheap round trip proving the database answers. After a write failed
    /// for lack of space, also proves that writes succeed again.
    async fn ping(&self) -> StoreResult<()>;

    // --- master keys -------------------------------------------------------
    async fn keks(&self) -> StoreResult<Vec<KekRecord>>;
    /// Records the master key of a new store, unless a first key is already
    /// recorded (then does nothing: the caller re-reads and verifies).
    async fn record_first_kek(&self, kek: KekRecord) -> StoreResult<()>;

    // --- bootstrap -----------------------------------------------------------
    async fn organization_count(&self) -> StoreResult<i64>;
    /// Creates an organization with its default team, admin user and key.
    /// `Conflict` when an organization of that name exists.
    async fn create_organization(&self, new: NewOrganization) -> StoreResult<()>;

    // --- authentication: how principals are built ------------------------------
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn find_user(&self, user_id: &str) -> StoreResult<Option<User>>;
    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>>;
    /// Teams are looked up unauthorized: the result is what
    /// [`crate::domain::access::authorize_team`] decides on.
    async fn find_team(&self, team_id: &str) -> StoreResult<Option<Team>>;
    async fn default_team(&self, org_id: &str) -> StoreResult<Team>;

    // --- organization ----------------------------------------------------------
    async fn organization(&self, org: &OrgAccess) -> StoreResult<Organization>;
    async fn list_teams(&self, org: &OrgAccess) -> StoreResult<Vec<Team>>;

    // --- teams, users, memberships (extensions) -----------------------------------
    /// `Conflict` when the organization already has a team of that name.
    async fn create_team(&self, org: &OrgAccess, team: Team) -> StoreResult<()>;
    async fn rename_team(&self, team: &TeamAccess, name: &str) -> StoreResult<()>;
    /// Deletes the team with its memberships and team-bound keys; its
    /// secrets too when `cascade`, otherwise refuses while it has any.
    async fn delete_team(&self, team: &TeamAccess, cascade: bool) -> StoreResult<TeamDeletion>;
    async fn list_users(&self, org: &OrgAccess, query: UserQuery) -> StoreResult<Vec<User>>;
    /// Creates the user as a member of the organization's default team.
    async fn create_user(
        &self,
        org: &OrgAccess,
        user: User,
        default_team_id: &str,
    ) -> StoreResult<()>;
    /// Deletes the user with its personal keys, its memberships and every
    /// workspace key it created (directly, or through a key it created), in
    /// one transaction. Personal keys it minted for other users stay.
    async fn delete_user(&self, org: &OrgAccess, user_id: &str) -> StoreResult<bool>;
    async fn list_members(&self, team: &TeamAccess) -> StoreResult<Vec<(User, TeamRole)>>;
    /// Adds the user to the team or changes its role.
    async fn set_member(&self, team: &TeamAccess, user_id: &str, role: TeamRole)
        -> StoreResult<()>;
    async fn remove_member(&self, team: &TeamAccess, user_id: &str) -> StoreResult<bool>;

    // --- API keys ------------------------------------------------------------------
    /// `Conflict` when a live key of the same scope has the same name;
    /// `NotFound` when its team, its owner or the user creating it is gone.
    async fn insert_api_key(&self, grant: &KeyGrant, key: ApiKeyRecord) -> StoreResult<()>;
    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>>;
    async fn delete_api_key(&self, grant: &KeyGrant, prefix: &str) -> StoreResult<bool>;
    /// Records when keys were last used (batched by the caller).
    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()>;

    // --- secrets ---------------------------------------------------------------
    /// Creates or updates the secret with `name`'s canonical form in the team.
    /// A new secret gets `new_id` and the spelling of `name`; an existing one
    /// keeps its id, spelling and `created_at` and gains a version.
    async fn upsert_secret(
        &self,
        team: &TeamAccess,
        name: &SecretName,
        new_id: String,
        now: Micros,
        seal: SealFn,
    ) -> StoreResult<SecretRecord>;
    /// The team's secrets ordered by canonical name.
    async fn list_secrets(&self, team: &TeamAccess) -> StoreResult<Vec<SecretSummary>>;
    /// Deletes the secret and all its versions; `None` when there is none.
    async fn delete_secret(
        &self,
        team: &TeamAccess,
        canonical_name: &str,
    ) -> StoreResult<Option<SecretRecord>>;
    async fn latest_secret(
        &self,
        team: &TeamAccess,
        canonical_name: &str,
    ) -> StoreResult<Option<StoredSecret>>;
}

pub type DynStore = Arc<dyn Store>;

/// The database file a `sqlite://` URL names.
pub fn sqlite_path(database_url: &str) -> Option<std::path::PathBuf> {
    let path = database_url.strip_prefix("sqlite://")?;
    Some(path.split('?').next().unwrap_or(path).into())
}

/// Opens the store a database URL names, running migrations.
pub async fn open(database_url: &str) -> anyhow::Result<DynStore> {
    if let Some(path) = sqlite_path(database_url) {
        Ok(Arc::new(sqlite::SqliteStore::open(&path)?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PostgresStore::connect(database_url).await?,
        ))
    } else {
        anyhow::bail!("unsupported database URL scheme (expected sqlite:// or postgres://)")
    }
}
