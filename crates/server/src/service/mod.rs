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
mod error;
pub mod history;
pub mod identity;
pub mod keys;
mod limits;
pub mod notify;
pub mod read_fold;
mod scope_revision;
pub mod secrets;
pub mod snapshots;
pub mod team_admin;
pub mod teams;
pub mod usage;
pub mod users;

pub use error::{ConcernedKey, ServiceError, ServiceResult};
pub use limits::{Limits, Quotas, DEFAULT_VALUE_BYTES_PER_TEAM};
pub use teams::TeamRef;

use crate::crypto::fingerprint::Fingerprinter;
use crate::crypto::Keyring;
use crate::store::{DynStore, StoreError};
use std::sync::Arc;

/// Shared state of the use cases. Its fields are private: callers go
/// through the use cases, which authorize before they touch the store.
pub struct Service {
    store: DynStore,
    keyring: Arc<Keyring>,
    /// The audit log aggregate (its own store handle, keys and retention).
    audit_log: audit_log::AuditLog,
    /// The caller's own user and organization.
    directory: directory::Directory,
    /// Principals, the addressed team and the caller's grant on it, key
    /// uses: what several aggregates share.
    identity: Arc<identity::IdentityContext>,
    /// API keys: create, list, revoke.
    keys: keys::Keys,
    /// The organization's users.
    users: users::Users,
    /// Teams and their members.
    teams: teams::Teams,
    limits: Limits,
    /// Secret ids by (team id, canonical name), so an update needs no read
    /// before it is sealed. Only a hint: a stale id makes the write fail as
    /// `Stale`, and the id is read again.
    secret_ids: cache::TtlCache<(String, String), String>,
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
    /// at the one revision it was read at (see `snapshots.rs`).
    sealed_snapshots: snapshots::SnapshotCache,
    /// Shared with the identity context, which wakes long polls to re-check
    /// their keys after an identity change.
    notifier: Arc<notify::Notifier>,
    /// Snapshots being read for waiters woken together (see
    /// `scope_revision.rs`).
    snapshot_flight: scope_revision::SnapshotFlight,
    /// Deliveries being built for waiters woken together, by (key prefix,
    /// revision they were woken at).
    building: parking_lot::Mutex<std::collections::HashMap<(String, i64), SharedBuild>>,
    /// The lane of large listings' later pages, node-wide.
    bulk_pages: Arc<bulk_lane::BulkLane>,
}

type SharedBuild = std::sync::Weak<tokio::sync::OnceCell<Arc<delivery::Delivery>>>;

/// How long a remembered secret id is used without reading it again. Ids
/// change only when a secret is deleted and re-created, which the write then
/// detects; the bound just keeps the map from holding ids of secrets long gone.
const SECRET_ID_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Secret ids kept: about 60,000 of 280 bytes (two ids, a name, the slot).
const SECRET_IDS_BUDGET_BYTES: u64 = 16 << 20;
/// Fingerprints kept: about 60,000 of 280 bytes (two ids, the fingerprint,
/// the slot), six teams at the secrets quota, so that a full fetch of one
/// (10,000 secrets) evicts no other team's.
const FINGERPRINTS_BUDGET_BYTES: u64 = 16 << 20;
/// The heaviest id or fingerprint entry: names are at most 253 bytes.
const SMALL_ENTRY_BYTES: u64 = 4 << 10;

impl Service {
    pub fn new(
        store: DynStore,
        keyring: Arc<Keyring>,
        fingerprints: Fingerprinter,
        audit_keys: audit_log::AuditKeys,
        limits: Limits,
    ) -> Self {
        store.install_audit_key(limits.audit_log.then(|| audit_keys.chain.clone()));
        // Upcast: the audit log sees the store's audit side only.
        let audit_store: Arc<dyn crate::store::AuditStore + Send + Sync> = store.clone();
        let identity_store: Arc<dyn crate::store::IdentityStore + Send + Sync> = store.clone();
        let key_store: Arc<dyn crate::store::KeyStore + Send + Sync> = store.clone();
        let notifier = Arc::new(notify::Notifier::default());
        let identity = Arc::new(identity::IdentityContext::new(
            identity_store.clone(),
            key_store.clone(),
            notifier.clone(),
        ));
        Self {
            keys: keys::Keys::new(
                key_store,
                identity_store.clone(),
                identity.clone(),
                limits.quotas.clone(),
            ),
            users: users::Users::new(
                identity_store.clone(),
                identity.clone(),
                limits.quotas.clone(),
            ),
            teams: teams::Teams::new(
                identity_store.clone(),
                identity.clone(),
                limits.quotas.clone(),
            ),
            identity,
            audit_log: audit_log::AuditLog::new(audit_store, audit_keys, limits.audit_retention),
            directory: directory::Directory::new(identity_store),
            store,
            keyring,
            limits,
            secret_ids: cache::TtlCache::with_budget(
                SECRET_ID_TTL,
                SECRET_IDS_BUDGET_BYTES,
                SMALL_ENTRY_BYTES,
            ),
            consumers: consumers::ConsumerRecorder::default(),
            read_fold: read_fold::ReadFold::default(),
            fingerprints,
            notifier,
            known_fingerprints: cache::TtlCache::with_budget(
                SECRET_ID_TTL,
                FINGERPRINTS_BUDGET_BYTES,
                SMALL_ENTRY_BYTES,
            ),
            sealed_snapshots: Default::default(),
            building: Default::default(),
            snapshot_flight: Default::default(),
            bulk_pages: Default::default(),
        }
    }

    /// The audit log: verifying, exporting, checkpoints, pruning, the
    /// organization's view.
    pub fn audit_log(&self) -> &audit_log::AuditLog {
        &self.audit_log
    }

    /// Authentication, the addressed team and the caller's grant on it,
    /// the keys' recorded uses.
    pub fn identity(&self) -> &identity::IdentityContext {
        &self.identity
    }

    /// API keys: create, list, revoke, and an admin minting a user's
    /// personal key.
    pub fn keys(&self) -> &keys::Keys {
        &self.keys
    }

    /// The organization's users: list, read, create, delete.
    pub fn users(&self) -> &users::Users {
        &self.users
    }

    /// Teams and their members.
    pub fn teams(&self) -> &teams::Teams {
        &self.teams
    }

    /// The caller's own user and organization (`users/me`,
    /// `organizations/me`).
    pub fn directory(&self) -> &directory::Directory {
        &self.directory
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

    /// How many long polls wait on a team's changes now: a signal that a
    /// waiter is registered (a write after it wakes it).
    pub fn waiters(&self, team_id: &str) -> usize {
        self.notifier.waiters(team_id)
    }
}
