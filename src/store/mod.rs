//! Persistence. One [`Store`] trait, two implementations: SQLite (the embedded
//! default) and PostgreSQL. Data methods take an authorization grant from
//! [`crate::domain::access`] so they cannot be reached without one.

pub mod postgres;
pub mod sqlite;

use crate::domain::access::{AllTeamsAccess, DeliveryAccess, KeyGrant, OrgAccess, TeamAccess};
use crate::domain::secret_name::SecretName;
use crate::domain::time::Micros;
use crate::domain::types::{
    ApiKeyRecord, KekRecord, ListedSecret, Membership, Organization, SecretRecord, Team, TeamRole,
    User,
};
use async_trait::async_trait;
use std::sync::Arc;

pub type StoreResult<T> = Result<T, StoreError>;

/// Reads of at most this many rows may run on the calling runtime worker (a
/// 100-secret listing takes tens of microseconds on SQLite); stores run
/// larger ones where they cannot hold up other requests.
pub const INLINE_ROWS: usize = 256;

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
    /// Creating this would exceed a quota.
    #[error("{quota} quota exceeded (limit {limit})")]
    QuotaExceeded { quota: &'static str, limit: i64 },
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

/// A committed secret write and the team revision it moved to.
#[derive(Debug, Clone)]
pub struct SecretWrite {
    pub record: SecretRecord,
    pub revision: i64,
}

/// A team's secrets with their ciphertexts, read at one instant together
/// with the team's revision at that instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub revision: i64,
    pub secrets: Vec<StoredSecret>,
}

/// What another node changed, as heard by [`Store::listen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A team's revision moved (a secret was written or deleted).
    Revision { team_id: String, revision: i64 },
    /// Keys, users or teams were deleted: cached principals may be stale.
    IdentityChanged,
    /// Events may have been missed (the listening connection was lost and
    /// is listening again): re-read what matters.
    Resync,
}

/// Where [`Store::listen`] delivers events.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<StoreEvent>;

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
    /// A key stored wrapped by the master key, by purpose: `(kek_id, wrapped)`.
    async fn wrapped_key(&self, purpose: &str) -> StoreResult<Option<(String, Vec<u8>)>>;
    /// Stores a wrapped key unless one exists for the purpose (then does
    /// nothing: nodes starting together keep the first one).
    async fn insert_wrapped_key(
        &self,
        purpose: &str,
        kek_id: &str,
        wrapped: Vec<u8>,
        now: Micros,
    ) -> StoreResult<()>;

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
    /// `Conflict` when the organization already has a team of that name;
    /// `QuotaExceeded` when it has `max_teams` already.
    async fn create_team(&self, org: &OrgAccess, team: Team, max_teams: i64) -> StoreResult<()>;
    async fn rename_team(&self, team: &TeamAccess, name: &str) -> StoreResult<()>;
    /// Deletes the team with its memberships and team-bound keys; its
    /// secrets too when `cascade`, otherwise refuses while it has any.
    async fn delete_team(&self, team: &TeamAccess, cascade: bool) -> StoreResult<TeamDeletion>;
    async fn list_users(&self, org: &OrgAccess, query: UserQuery) -> StoreResult<Vec<User>>;
    /// Creates the user as a member of the organization's default team;
    /// `QuotaExceeded` when the organization has `max_users` already.
    async fn create_user(
        &self,
        org: &OrgAccess,
        user: User,
        default_team_id: &str,
        max_users: i64,
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
    /// `QuotaExceeded` when the scope (a user, a team, the organization) has
    /// `max_keys` live keys already; `NotFound` when its team, its owner or
    /// the user creating it is gone.
    async fn insert_api_key(
        &self,
        grant: &KeyGrant,
        key: ApiKeyRecord,
        max_keys: i64,
    ) -> StoreResult<()>;
    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>>;
    async fn delete_api_key(&self, grant: &KeyGrant, prefix: &str) -> StoreResult<bool>;
    /// Records when keys were last used (batched by the caller).
    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()>;

    // --- secrets ---------------------------------------------------------------
    /// Creates or updates the secret with `name`'s canonical form in the team.
    /// A new secret gets `new_id` and the spelling of `name`; an existing one
    /// keeps its id, spelling and `created_at` and gains a version. The
    /// team's revision moves in the same transaction. `QuotaExceeded` when
    /// the secret is new and the team holds `max_secrets` already.
    async fn upsert_secret(
        &self,
        team: &TeamAccess,
        name: &SecretName,
        new_id: String,
        now: Micros,
        seal: SealFn,
        max_secrets: i64,
    ) -> StoreResult<SecretWrite>;
    /// Up to `limit` of the team's secrets after canonical name `after`, in
    /// canonical-name order.
    async fn team_secrets_page(
        &self,
        team: &TeamAccess,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>>;
    /// Up to `limit` of the organization's secrets after `(team id,
    /// canonical name)`, in that order: one range scan whatever the number
    /// of teams.
    async fn org_secrets_page(
        &self,
        org: &AllTeamsAccess,
        after: (&str, &str),
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>>;
    /// The organization's teams that hold at least one secret, by id.
    async fn teams_with_secrets(&self, org: &OrgAccess) -> StoreResult<Vec<Team>>;
    /// Deletes the secret and all its versions, moving the team's revision;
    /// `None` when there is none.
    async fn delete_secret(
        &self,
        team: &TeamAccess,
        canonical_name: &str,
    ) -> StoreResult<Option<SecretWrite>>;
    async fn latest_secret(
        &self,
        team: &TeamAccess,
        canonical_name: &str,
    ) -> StoreResult<Option<StoredSecret>>;

    // --- delivery ----------------------------------------------------------------
    /// The team's current revision (one primary-key read).
    async fn team_revision(&self, team: &DeliveryAccess) -> StoreResult<i64>;
    /// The team's secrets with ciphertexts, ordered by canonical name, and
    /// the revision they belong to, read at one instant.
    async fn snapshot(&self, team: &DeliveryAccess) -> StoreResult<Snapshot>;
    /// Current revisions of the given teams (those that still exist), to
    /// catch up after events may have been missed. Not a data read: no grant.
    async fn team_revisions(&self, team_ids: Vec<String>) -> StoreResult<Vec<(String, i64)>>;
    /// Delivers other nodes' changes to `sink` until the store is dropped.
    /// Stores that cannot be shared by several processes have nothing to say.
    fn listen(&self, sink: EventSink) {
        drop(sink);
    }
}

pub type DynStore = Arc<dyn Store>;

/// The quota a key's name scope (`user:…`, `team:…`, `org:…`) counts against.
pub(crate) fn key_quota_name(name_scope: &str) -> &'static str {
    match name_scope.split(':').next() {
        Some("user") => "live API keys per user",
        Some("team") => "live API keys per team",
        _ => "organization-wide live API keys",
    }
}

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
