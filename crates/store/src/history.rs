//! The history aggregate: a secret's previous versions (moved there by a
//! trigger of each engine's schema, in the same statement as the update that
//! replaces them), deleted secrets kept for a retention window, and which
//! workloads last received which versions. Values stay sealed here as
//! everywhere in the store.

use super::row::Row;
use super::secrets::SecretWrite;
use super::StoreResult;
use async_trait::async_trait;
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{ManageHistory, ReadSecrets, TeamAccess};
use tessera_core::domain::consumer_kind::ConsumerKind;
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::SecretRecord;

/// Who made a write, as recorded with the version it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The API key's prefix.
    pub key_prefix: Option<String>,
    /// The user behind the key (its owner, or for a workspace key the user
    /// who created it), when known.
    pub user_id: Option<String>,
}

/// How a write treats the versions it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteHistory {
    pub actor: Actor,
    /// Previous versions kept after this write (0: only the current one).
    pub keep_versions: i64,
    /// Destroy every previous version's ciphertext now (their metadata
    /// stays, within `keep_versions`).
    pub destroy_previous: bool,
}

impl Default for WriteHistory {
    fn default() -> Self {
        Self {
            actor: Actor::default(),
            keep_versions: DEFAULT_KEEP_VERSIONS,
            destroy_previous: false,
        }
    }
}

/// Previous versions a secret keeps unless the server is told otherwise.
pub const DEFAULT_KEEP_VERSIONS: i64 = 10;

/// How a secret is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub at: Micros,
    pub by: Option<String>,
    /// Keep it (with its versions) among the deleted secrets; `false`
    /// removes it and its versions at once.
    pub keep: bool,
    /// Deleted secrets the team keeps at most: beyond it, the oldest are
    /// purged by this deletion.
    pub max_kept: i64,
    /// The deletion's audit event (the store adds the secret's id).
    pub audit: AuditEvent,
}

/// One version of a secret, as metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub version: i64,
    pub written_at: Micros,
    pub actor: Actor,
    /// When its ciphertext was destroyed (`None`: it can still be restored,
    /// or it is the current version).
    pub destroyed_at: Option<Micros>,
    pub current: bool,
}

/// A secret and its versions, newest first (the current one first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHistory {
    pub record: SecretRecord,
    pub versions: Vec<VersionRecord>,
}

/// A previous version's ciphertext, to restore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredVersion {
    Sealed {
        /// `None` for a version sealed by envelope format 1.
        version_id: Option<String>,
        ciphertext: Vec<u8>,
    },
    Destroyed,
    /// The version asked for is the secret's current one.
    Current,
}

/// What destroying a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destroyed {
    /// Its ciphertext is gone now.
    Now,
    /// It had been destroyed before; nothing changed.
    Already,
    /// It is the current version: refused.
    Current,
    /// The secret has no such version.
    Missing,
}

/// A deleted secret, kept until the retention window ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSecret {
    pub record: SecretRecord,
    pub deleted_at: Micros,
    pub deleted_by: Option<String>,
}

/// A workload (key and agent instance) seen by the delivery routes, and
/// the versions it received since the last time this was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSeen {
    pub key_prefix: String,
    pub instance: String,
    pub team_id: String,
    /// As last declared.
    pub kind: ConsumerKind,
    pub client: Option<String>,
    pub seen_at: Micros,
    /// (secret id, version, received at).
    pub received: Vec<(String, i64, Micros)>,
}

/// How much the store keeps of one key's consumers: the most recently seen
/// (ties broken by instance id) while there are at most `consumers` of them
/// and their versions take at most `versions` rows; the most recently seen
/// one is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerCap {
    pub consumers: usize,
    pub versions: usize,
}

/// Who holds a version of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub key_prefix: String,
    pub instance: String,
    pub kind: ConsumerKind,
    pub client: Option<String>,
    pub version: i64,
    pub received_at: Micros,
    pub last_seen_at: Micros,
}

pub(crate) const VERSION_COLUMNS: &str = "version, written_at, actor_key, actor_user, destroyed_at";

/// A previous version's [`VERSION_COLUMNS`].
pub(crate) fn version_row<R: Row>(r: &R) -> Result<VersionRecord, R::Error> {
    Ok(VersionRecord {
        version: r.col(0)?,
        written_at: r.col(1)?,
        actor: Actor {
            key_prefix: r.col(2)?,
            user_id: r.col(3)?,
        },
        destroyed_at: r.col(4)?,
        current: false,
    })
}

/// The current version's row: `version, updated_at, actor_key, actor_user`
/// after the secret's stored columns.
pub(crate) fn current_version<R: Row>(r: &R, at: usize) -> Result<VersionRecord, R::Error> {
    Ok(VersionRecord {
        version: r.col(at)?,
        written_at: r.col(at + 1)?,
        actor: Actor {
            key_prefix: r.col(at + 2)?,
            user_id: r.col(at + 3)?,
        },
        destroyed_at: None,
        current: true,
    })
}

/// Starts with the columns `record_row` reads.
pub(crate) const DELETED_COLUMNS: &str =
    "id, name, canonical_name, created_at, updated_at, version, deleted_at, deleted_by";

pub(crate) fn deleted_row<R: Row>(
    team: &TeamAccess<ReadSecrets>,
    r: &R,
) -> Result<DeletedSecret, R::Error> {
    Ok(DeletedSecret {
        record: super::secrets::record_row(team, r)?,
        deleted_at: r.col(6)?,
        deleted_by: r.col(7)?,
    })
}

pub(crate) const CONSUMER_COLUMNS: &str = "c.key_prefix, c.instance, c.client, v.version, \
     v.received_at, c.last_seen_at, c.kind";

pub(crate) fn consumer_row<R: Row>(r: &R) -> Result<Consumer, R::Error> {
    Ok(Consumer {
        key_prefix: r.col(0)?,
        instance: r.col(1)?,
        client: r.col(2)?,
        version: r.col(3)?,
        received_at: r.col(4)?,
        last_seen_at: r.col(5)?,
        kind: r.parse(6)?,
    })
}

/// The columns a deleted secret keeps, the same in `secrets` and
/// `deleted_secrets`.
pub(crate) const KEPT_ON_DELETE: &str = "id, org_id, team_id, name, canonical_name, created_at, \
     updated_at, version, version_id, actor_key, actor_user, kek_id, ciphertext";

/// The message of an undelete whose name is taken again.
pub(crate) const NAME_TAKEN: &str =
    "a secret with this name exists again; delete or rename it first";

#[async_trait]
pub trait HistoryStore {
    /// The team's secret with this canonical name and its versions, newest
    /// first; `None` when there is no such secret.
    async fn secret_history(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<SecretHistory>>;
    /// A version of the team's secret `secret_id`; `None` when the secret
    /// (live) or the version does not exist.
    async fn stored_version(
        &self,
        team: &TeamAccess<ReadSecrets>,
        secret_id: &str,
        version: i64,
    ) -> StoreResult<Option<StoredVersion>>;
    /// Removes a previous version's ciphertext for good; its metadata stays.
    async fn destroy_version(
        &self,
        team: &TeamAccess<ManageHistory>,
        secret_id: &str,
        version: i64,
        now: Micros,
        event: AuditEvent,
    ) -> StoreResult<Destroyed>;
    /// The team's deleted secrets not yet purged, most recently deleted
    /// first.
    async fn deleted_secrets(
        &self,
        team: &TeamAccess<ReadSecrets>,
    ) -> StoreResult<Vec<DeletedSecret>>;
    /// Makes a deleted secret live again, with its id, versions and current
    /// value, moving the team's revision. `NotFound` when there is no such
    /// deleted secret in the team; `Conflict` when its name is taken again;
    /// `QuotaExceeded` when the team is full, or when its value would take
    /// the team's value bytes past `max_team_bytes`.
    async fn undelete_secret(
        &self,
        team: &TeamAccess<ManageHistory>,
        secret_id: &str,
        max_secrets: i64,
        max_team_bytes: i64,
        event: AuditEvent,
    ) -> StoreResult<SecretWrite>;
    /// Removes one deleted secret and its versions now; whether there was
    /// one.
    async fn purge_deleted_secret(
        &self,
        team: &TeamAccess<ManageHistory>,
        secret_id: &str,
        event: AuditEvent,
    ) -> StoreResult<bool>;
    /// Removes every secret deleted before `deleted_before`, with its
    /// versions, and forgets consumers last seen before `seen_before`; how
    /// many secrets. A maintenance job: no grant.
    /// `event` is recorded (with the count in its detail) when any secret
    /// was purged.
    async fn purge_expired(
        &self,
        deleted_before: Micros,
        seen_before: Micros,
        event: AuditEvent,
    ) -> StoreResult<u64>;
    /// Records what the delivery routes saw (they authorized each read),
    /// then keeps of each key seen only its most recently seen consumers,
    /// within `cap` (instance ids are the client's choice: they must not
    /// grow the store).
    async fn record_consumers(&self, seen: Vec<ConsumerSeen>, cap: ConsumerCap) -> StoreResult<()>;
    /// Who received a version of the team's secret `secret_id`, by version
    /// (newest first), then most recently seen first.
    async fn secret_consumers(
        &self,
        team: &TeamAccess<ReadSecrets>,
        secret_id: &str,
    ) -> StoreResult<Vec<Consumer>>;
}
