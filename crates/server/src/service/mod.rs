//! Use cases. Each public method authenticates nothing (the caller hands in a
//! [`Principal`]), authorizes through [`crate::domain::access`], then calls
//! the store. Errors are [`ServiceError`], mapped to HTTP in one place
//! (`api::error`).

pub mod audit;
pub mod audit_log;
pub mod auth;
mod authority;
pub mod bootstrap;
mod bulk_lane;
pub mod cache;
pub mod consumers;
pub mod delivery;
pub mod delivery_stream;
pub mod directory;
pub mod history;
pub mod keys;
pub mod notify;
pub mod read_fold;
mod scope_revision;
pub mod secrets;
pub mod team_admin;
pub mod teams;
pub mod usage;
pub mod users;

use crate::crypto::fingerprint::Fingerprinter;
use crate::crypto::Keyring;
use crate::domain::access::{self, Denied, Principal, TeamAccess, TeamActionKind};
use crate::domain::types::Team;
use crate::store::{DynStore, StoreError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QuotaExceeded(String),
    /// A change refused for the keys it would leave without an answerer
    /// (409, with the keys listed).
    #[error("{message}")]
    KeysConcerned {
        message: String,
        keys: Vec<ConcernedKey>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// The disk holding the data is full. Details go to the log only.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// Details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// A key named in [`ServiceError::KeysConcerned`]: what identifies it, never
/// its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcernedKey {
    pub prefix: String,
    pub key_type: String,
    pub name: Option<String>,
    pub team_id: Option<String>,
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ServiceError::Conflict(m),
            StoreError::NotFound(m) => ServiceError::NotFound(m),
            e @ StoreError::QuotaExceeded { .. } => ServiceError::QuotaExceeded(e.to_string()),
            // Retried where it can happen; seen here, the write lost a race
            // too many times.
            StoreError::Stale => {
                ServiceError::Conflict("the secret changed concurrently; retry".into())
            }
            // The detail (with the driver's error) is for the log only.
            e @ StoreError::StorageFull { .. } => ServiceError::StorageFull(log_detail(&e)),
            e @ StoreError::Unavailable { .. } => ServiceError::Unavailable(log_detail(&e)),
            e @ StoreError::Internal { .. } => ServiceError::Internal(log_detail(&e)),
        }
    }
}

/// An error with its chain of sources, for the log.
fn log_detail(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<Denied> for ServiceError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NotFound(what) => ServiceError::NotFound(format!("{what} not found")),
            Denied::Forbidden(m) => ServiceError::Forbidden(m),
        }
    }
}

/// Limits a deployment may tune.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_value_bytes: usize,
    pub quotas: Quotas,
    pub history: history::Retention,
    /// Whether changes and reads are recorded in the audit log (off only to
    /// measure what it costs).
    pub audit_log: bool,
    /// How long audit events are kept before the prune job removes them
    /// (`None`: for ever).
    pub audit_retention: Option<std::time::Duration>,
    /// Ciphertext bytes per page of a streamed runtime answer (and the most
    /// a scope may hold to be answered whole); small only in tests.
    pub delivery_page_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: crate::domain::secret_value::DEFAULT_MAX_VALUE_BYTES,
            quotas: Quotas::default(),
            history: history::Retention::default(),
            audit_log: true,
            audit_retention: None,
            delivery_page_bytes: delivery_stream::PAGE_BYTES,
        }
    }
}

/// How many of each thing one team, organization or user may hold.
/// Creating one more answers 409 `QUOTA_EXCEEDED` naming the quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    pub secrets_per_team: i64,
    pub teams_per_org: i64,
    pub users_per_org: i64,
    /// Live personal keys per user.
    pub keys_per_user: i64,
    /// Live keys bound to one team; also the organization-wide
    /// (WORKSPACE_MANAGE_API_KEYS) keys of one organization.
    pub keys_per_team: i64,
    /// Bytes of one team's current values (the plaintext lengths of every
    /// secret's current version): what one full fetch of the team returns.
    /// A write that would grow them past it is refused; one that keeps or
    /// shrinks them is not, so a team over a lowered quota can shrink.
    pub value_bytes_per_team: i64,
}

/// The default [`Quotas::value_bytes_per_team`]: 64 MiB.
pub const DEFAULT_VALUE_BYTES_PER_TEAM: i64 = 64 << 20;

impl Default for Quotas {
    fn default() -> Self {
        Self {
            secrets_per_team: 10_000,
            teams_per_org: 1_000,
            users_per_org: 10_000,
            keys_per_user: 100,
            keys_per_team: 1_000,
            value_bytes_per_team: DEFAULT_VALUE_BYTES_PER_TEAM,
        }
    }
}

/// Shared state of the use cases. Its fields are private: callers go
/// through the use cases, which authorize before they touch the store.
pub struct Service {
    store: DynStore,
    keyring: Arc<Keyring>,
    /// The audit chain key (also installed in the store, which links).
    audit_key: Arc<crate::audit::chain::ChainKey>,
    /// Signs checkpoints of the audit chains' heads (exported, and standing
    /// for pruned prefixes).
    audit_signer: Arc<crate::audit::checkpoint::CheckpointSigner>,
    limits: Limits,
    auth_cache: auth::PrincipalCache,
    /// Teams by id, and each organization's default team by org id.
    team_cache: cache::TtlCache<String, Team>,
    default_team_cache: cache::TtlCache<String, Team>,
    /// Secret ids by (team id, canonical name), so an update needs no read
    /// before it is sealed. Only a hint: a stale id makes the write fail as
    /// `Stale`, and the id is read again.
    secret_ids: cache::TtlCache<(String, String), String>,
    usage: usage::UsageRecorder,
    consumers: consumers::ConsumerRecorder,
    /// Reads of content already recorded, counted (see `read_fold.rs`).
    read_fold: read_fold::ReadFold,
    fingerprints: Fingerprinter,
    /// Fingerprints already computed, by (secret id, version, version id):
    /// the value of a secret's version never changes, so neither does its
    /// fingerprint. A MAC of the value, not the value; each answer still
    /// decrypts.
    known_fingerprints: cache::TtlCache<(String, i64, Option<String>), String>,
    /// The last snapshot read of each team's secrets (ciphertexts), valid
    /// while the team's revision reads the same (see `delivery.rs`).
    sealed_snapshots: cache::TtlCache<String, crate::store::Snapshot>,
    notifier: notify::Notifier,
    /// Snapshots being read for waiters woken together (see
    /// `scope_revision.rs`).
    snapshot_flight: scope_revision::SnapshotFlight,
    /// Deliveries being built for waiters woken together, by (key prefix,
    /// revision they were woken at).
    building: std::sync::Mutex<std::collections::HashMap<(String, i64), SharedBuild>>,
    /// The lane of large listings' later pages, node-wide.
    bulk_pages: Arc<bulk_lane::BulkLane>,
}

type SharedBuild = std::sync::Weak<tokio::sync::OnceCell<Arc<delivery::Delivery>>>;

/// How long a remembered secret id is used without reading it again. Ids
/// change only when a secret is deleted and re-created, which the write then
/// detects; the bound just keeps the map from holding ids of secrets long gone.
const SECRET_ID_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Which team a request addresses.
#[derive(Debug, Clone, Copy)]
pub enum TeamRef<'a> {
    /// Routes without `{team_id}`: the key's team or the org's default team.
    Implicit,
    Id(&'a str),
}

impl Service {
    pub fn new(
        store: DynStore,
        keyring: Arc<Keyring>,
        fingerprints: Fingerprinter,
        audit_keys: audit_log::AuditKeys,
        limits: Limits,
    ) -> Self {
        store.install_audit_key(limits.audit_log.then(|| audit_keys.chain.clone()));
        Self {
            store,
            keyring,
            audit_key: audit_keys.chain,
            audit_signer: audit_keys.signer,
            limits,
            auth_cache: auth::PrincipalCache::new(auth::PRINCIPAL_TTL),
            team_cache: cache::TtlCache::new(auth::PRINCIPAL_TTL),
            default_team_cache: cache::TtlCache::new(auth::PRINCIPAL_TTL),
            secret_ids: cache::TtlCache::with_capacity(SECRET_ID_TTL, 200_000),
            usage: usage::UsageRecorder::default(),
            consumers: consumers::ConsumerRecorder::default(),
            read_fold: read_fold::ReadFold::default(),
            fingerprints,
            notifier: notify::Notifier::default(),
            known_fingerprints: cache::TtlCache::new(SECRET_ID_TTL),
            sealed_snapshots: cache::TtlCache::with_capacity(
                SECRET_ID_TTL,
                delivery::MAX_KEPT_SNAPSHOTS,
            ),
            building: Default::default(),
            snapshot_flight: Default::default(),
            bulk_pages: Default::default(),
        }
    }

    /// Counts a request as being handled until the guard is dropped (large
    /// listings give way while any is; see `bulk_lane.rs`).
    pub fn request_in_flight(&self) -> bulk_lane::InFlight {
        self.bulk_pages.request()
    }

    /// The store's backend, for readiness and logs.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// The id of the master key in use (not secret).
    pub fn kek_id(&self) -> &str {
        self.keyring.kek_id()
    }

    /// Whether the store answers (and writes again after a full disk).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// How many organizations the store holds (0: a new store).
    pub async fn organization_count(&self) -> ServiceResult<i64> {
        Ok(self.store.organization_count().await?)
    }

    /// Creates an organization with its default team, admin user and admin
    /// key (returned, shown only here). An operator's action: no principal.
    pub async fn create_organization(
        &self,
        name: &str,
    ) -> Result<crate::domain::key_token::NewKeyToken, StoreError> {
        bootstrap::create_organization(self.store.as_ref(), name).await
    }

    /// Starts delivering other nodes' changes (PostgreSQL) to `sink`.
    pub fn listen(&self, sink: crate::store::EventSink) {
        self.store.listen(sink);
    }

    /// Loads the addressed team (not yet authorized). Teams change rarely and
    /// are read on every request, so they are cached like principals.
    pub(crate) async fn load_team(&self, p: &Principal, team: TeamRef<'_>) -> ServiceResult<Team> {
        let id = match team {
            TeamRef::Id(id) => id,
            TeamRef::Implicit => match access::implicit_team(p) {
                Some(id) => id,
                None => return self.default_team(&p.org_id).await,
            },
        };
        if let Some(t) = self.team_cache.get(id) {
            return Ok((*t).clone());
        }
        let team = self
            .store
            .find_team(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("team not found".into()))?;
        self.team_cache.put(id.to_owned(), Arc::new(team.clone()));
        Ok(team)
    }

    async fn default_team(&self, org_id: &str) -> ServiceResult<Team> {
        if let Some(t) = self.default_team_cache.get(org_id) {
            return Ok((*t).clone());
        }
        let team = self.store.default_team(org_id).await?;
        self.default_team_cache
            .put(org_id.to_owned(), Arc::new(team.clone()));
        Ok(team)
    }

    /// How many long polls wait on a team's changes now: a signal that a
    /// waiter is registered (a write after it wakes it).
    pub fn waiters(&self, team_id: &str) -> usize {
        self.notifier.waiters(team_id)
    }

    /// Forgets cached identity data after a local change (teams, members,
    /// users, keys), so this node applies it on the next request, and has
    /// long-polling workloads re-check their keys.
    pub(crate) fn identity_changed(&self) {
        self.forget_identities();
    }

    fn forget_identities(&self) {
        self.auth_cache.clear();
        self.team_cache.clear();
        self.default_team_cache.clear();
        self.notifier.identity_changed();
    }

    /// Loads the addressed team and decides whether the caller may act on it.
    pub(crate) async fn team_access<A: TeamActionKind>(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
    ) -> ServiceResult<TeamAccess<A>> {
        let team = self.load_team(p, team).await?;
        Ok(access::authorize_team::<A>(p, &team)?)
    }
}
