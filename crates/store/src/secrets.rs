//! The secret aggregate: secrets as ciphertext (sealed by the service before
//! they arrive), listings of their metadata, and what delivery reads.

use super::history::{Deletion, WriteHistory};
use super::row::Row;
use super::StoreResult;
use async_trait::async_trait;
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{
    AllTeamsAccess, DeliveryAccess, OrgAccess, ReadSecrets, TeamAccess, WriteSecrets,
};
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::{ListedSecret, SecretRecord, Team};

pub(crate) const SECRETS_QUOTA: &str = "secrets per team";
/// The quota on the plaintext bytes of a team's current values (kept by
/// migration 0010's triggers).
pub(crate) const VALUE_BYTES_QUOTA: &str =
    "bytes of current values per team (the plaintext lengths of every secret's current value)";

/// A team's value bytes before and after a change, against `max`: a change
/// that grows them past the quota is refused; one that keeps or shrinks
/// them is not, so a team already over a lowered quota can still be
/// brought under it.
pub(crate) fn check_value_bytes(before: i64, after: i64, max: i64) -> StoreResult<()> {
    if after > before && after > max {
        return Err(super::StoreError::QuotaExceeded {
            quota: VALUE_BYTES_QUOTA,
            limit: max,
        });
    }
    Ok(())
}

pub(crate) const STORED_COLUMNS: &str =
    "id, name, canonical_name, created_at, updated_at, version, version_id, ciphertext";

/// A secret of `team` from the first six of [`STORED_COLUMNS`] (`id, name,
/// canonical_name, created_at, updated_at, version`), which the deleted
/// secrets' columns start with too.
pub(crate) fn record_row<R: Row>(
    team: &TeamAccess<ReadSecrets>,
    r: &R,
) -> Result<SecretRecord, R::Error> {
    Ok(SecretRecord {
        id: r.col(0)?,
        org_id: team.org_id().to_owned(),
        team_id: team.team_id().to_owned(),
        team_name: team.team_name().to_owned(),
        name: r.col(1)?,
        canonical_name: r.col(2)?,
        created_at: r.col(3)?,
        updated_at: r.col(4)?,
        version: r.col(5)?,
    })
}

/// A secret of `team` as stored (its [`STORED_COLUMNS`]).
pub(crate) fn stored_row<R: Row>(
    team: &TeamAccess<ReadSecrets>,
    r: &R,
) -> Result<StoredSecret, R::Error> {
    Ok(StoredSecret {
        record: record_row(team, r)?,
        version_id: r.col(6)?,
        ciphertext: r.col(7)?,
    })
}

/// `team_id, team name, id, name, canonical_name, created_at, version`.
pub(crate) fn listed_row<R: Row>(r: &R) -> Result<ListedSecret, R::Error> {
    Ok(ListedSecret {
        team_id: r.col(0)?,
        team_name: r.col(1)?,
        id: r.col(2)?,
        name: r.col(3)?,
        canonical_name: r.col(4)?,
        created_at: r.col(5)?,
        version: r.col(6)?,
    })
}

/// A write the service has sealed. The ciphertext is bound to `secret_id`
/// and `version_id`, so the write applies only where they still hold.
#[derive(Debug, Clone)]
pub struct SealedWrite {
    pub canonical_name: String,
    /// The spelling a new secret keeps.
    pub name: String,
    pub secret_id: String,
    /// Whether the service found the secret (with `secret_id`) when it
    /// sealed: then the write updates exactly that secret; otherwise it
    /// creates one with `secret_id`. Either way, if that no longer holds
    /// the write changes nothing and fails with `Stale`.
    pub exists: bool,
    pub version_id: String,
    pub kek_id: String,
    pub ciphertext: Vec<u8>,
    pub now: Micros,
    /// The team's quota on the bytes of its current values: `QuotaExceeded`
    /// when this write would grow them past it.
    pub max_team_bytes: i64,
    /// Who writes, and what becomes of the version this one replaces.
    pub history: WriteHistory,
    /// The write's audit event, appended in its transaction.
    pub audit: AuditEvent,
}

impl SealedWrite {
    /// The secret as this write left it in `team`.
    pub(crate) fn record(
        &self,
        team: &TeamAccess<ReadSecrets>,
        name: String,
        created_at: Micros,
        version: i64,
    ) -> SecretRecord {
        SecretRecord {
            id: self.secret_id.clone(),
            org_id: team.org_id().to_owned(),
            team_id: team.team_id().to_owned(),
            team_name: team.team_name().to_owned(),
            name,
            canonical_name: self.canonical_name.clone(),
            created_at,
            updated_at: self.now,
            version,
        }
    }
}

/// A committed secret write and the team revision it moved to.
#[derive(Debug, Clone)]
pub struct SecretWrite {
    pub record: SecretRecord,
    pub revision: i64,
}

/// A secret's current version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub record: SecretRecord,
    /// `None` for a version sealed by envelope format 1.
    pub version_id: Option<String>,
    pub ciphertext: Vec<u8>,
}

/// A team's secrets with their ciphertexts, read at one instant together
/// with the team's revision at that instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub revision: i64,
    pub secrets: Vec<StoredSecret>,
}

#[async_trait]
pub trait SecretStore {
    /// The id of the team's secret with this canonical name, if any.
    async fn secret_id(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<String>>;
    /// Creates or updates a secret as the sealed write says; an update
    /// keeps the id, spelling and `created_at` and gains a version. The
    /// team's revision moves in the same transaction (writes committed
    /// together may share the revision they moved to). `QuotaExceeded` when
    /// the secret is new and the team holds `max_secrets` already; `Stale`
    /// when the write's expectation no longer holds; `NotFound` when the
    /// team is gone.
    async fn upsert_secret(
        &self,
        team: &TeamAccess<WriteSecrets>,
        write: SealedWrite,
        max_secrets: i64,
    ) -> StoreResult<SecretWrite>;
    /// Deletes the secret, moving the team's revision; `None` when there is
    /// none (the team's included), and then nothing changes. As `how` says,
    /// the secret is kept among the deleted ones (its name free, its
    /// versions kept) or removed with its versions.
    async fn delete_secret(
        &self,
        team: &TeamAccess<WriteSecrets>,
        canonical: &str,
        how: &Deletion,
    ) -> StoreResult<Option<SecretWrite>>;
    async fn latest_secret(
        &self,
        team: &TeamAccess<ReadSecrets>,
        canonical: &str,
    ) -> StoreResult<Option<StoredSecret>>;
    /// Up to `limit` of the team's secrets after canonical name `after`, in
    /// canonical-name order.
    async fn team_secrets_page(
        &self,
        team: &TeamAccess<ReadSecrets>,
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
    /// The team's current revision (one primary-key read).
    async fn team_revision(&self, team: &TeamAccess<ReadSecrets>) -> StoreResult<i64>;
    /// The team's secrets with ciphertexts, ordered by canonical name, and
    /// the revision they belong to, read at one instant.
    async fn snapshot(&self, team: &DeliveryAccess) -> StoreResult<Snapshot>;
    /// Current revisions of the given teams (those that still exist), in no
    /// particular order, to catch up after events may have been missed. Not
    /// a data read: no grant.
    async fn team_revisions(&self, team_ids: Vec<String>) -> StoreResult<Vec<(String, i64)>>;
}
