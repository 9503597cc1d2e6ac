//! History: a secret's versions (listed as metadata, restored without the
//! value leaving the server, destroyed one by one), deleted secrets kept for
//! a retention window, and who holds which version.

use super::audit::Target;
use super::secrets::ValueWrite;
use super::{Service, ServiceError, ServiceResult, TeamRef};
use crate::domain::access::{
    Implies, ManageHistory, Principal, ReadSecrets, TeamAccess, WriteSecrets,
};
use crate::domain::audit_action::AuditAction;
use crate::domain::time::{now_micros, Micros};
use crate::domain::types::SecretRecord;
use crate::store::{purge_detail, PurgeReason};
use crate::store::{
    Actor, Consumer, DeletedSecret, Deletion, Destroyed, SecretHistory, StoredSecret,
    StoredVersion, WriteHistory, DEFAULT_KEEP_VERSIONS,
};
use std::time::Duration;

/// How long history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Previous versions kept per secret (0: only the current one).
    pub keep_versions: i64,
    /// How long a deleted secret can be undeleted (zero: purged at once).
    pub keep_deleted: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_versions: DEFAULT_KEEP_VERSIONS,
            keep_deleted: DEFAULT_KEEP_DELETED,
        }
    }
}

pub const DEFAULT_KEEP_DELETED: Duration = Duration::from_secs(7 * 24 * 3600);

/// A consumer seen this recently still counts as holding what it received:
/// destroying that version needs `force`.
pub const HELD_WITHIN: Duration = Duration::from_secs(600);

/// A one-shot consumer (a plain `tessera run`, which execs its command and
/// never reports again) is listed this long after it was last seen, with a
/// warning, and then left out: nobody can tell when its command ended. It
/// never blocks a destroy.
pub const ONE_SHOT_LISTED_FOR: Duration = HELD_WITHIN;

/// Consumers not seen for this long are forgotten by the purge job.
pub const FORGET_CONSUMERS_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// A secret's versions and who holds them.
pub struct Versions {
    pub history: SecretHistory,
    pub consumers: Vec<Consumer>,
}

/// The consumers worth listing as of `now`: every one that reports while
/// it lives, and one-shot runs seen within [`ONE_SHOT_LISTED_FOR`].
fn listed(consumers: Vec<Consumer>, now: Micros) -> Vec<Consumer> {
    let since = now - micros(ONE_SHOT_LISTED_FOR);
    consumers
        .into_iter()
        .filter(|c| c.kind.reports_while_alive() || c.last_seen_at >= since)
        .collect()
}

/// What a destroy leaves to warn about: one-shot runs seen within the
/// window that last received the destroyed version.
pub struct DestroyedVersion {
    pub record: SecretRecord,
    pub one_shot_holders: usize,
}

fn micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Service {
    /// How long a deleted secret can be undeleted, in microseconds.
    pub fn keep_deleted_micros(&self) -> Micros {
        micros(self.limits.history.keep_deleted)
    }

    /// Who a write is recorded as: the key, and the user behind it.
    pub(crate) fn write_history(&self, p: &Principal, destroy_previous: bool) -> WriteHistory {
        WriteHistory {
            actor: Actor {
                key_prefix: Some(p.key_prefix.clone()),
                user_id: p.user_id().map(str::to_owned).or(p.created_by.clone()),
            },
            keep_versions: self.limits.history.keep_versions,
            destroy_previous,
        }
    }

    /// How a deletion of `name` made now by `p` is recorded.
    pub(crate) fn deletion(
        &self,
        p: &Principal,
        access: &TeamAccess<WriteSecrets>,
        name: &str,
    ) -> Deletion {
        let keep = !self.limits.history.keep_deleted.is_zero();
        let detail = serde_json::json!({ "kept": keep }).to_string();
        Deletion {
            at: now_micros(),
            by: Some(p.key_prefix.clone()),
            keep,
            max_kept: self.limits.quotas.secrets_per_team,
            audit: self.event(
                p,
                AuditAction::SecretDelete,
                Some(access),
                Target::named(name),
                Some(detail),
            ),
        }
    }

    /// The live secret named `name` in the team, with its grant.
    pub(crate) async fn current_secret<A: Implies<ReadSecrets>>(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
    ) -> ServiceResult<(TeamAccess<A>, StoredSecret)> {
        let name = self.parse_secret_name(name)?;
        let access = self.identity.team_access::<A>(p, team).await?;
        let stored = self
            .store
            .latest_secret(access.as_grant(), name.canonical())
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "no secret named {:?} in team {:?}",
                    name.as_str(),
                    access.team_name()
                ))
            })?;
        Ok((access, stored))
    }

    /// A secret's versions, newest first, and which consumers hold them
    /// (as listed at `now`).
    pub async fn secret_versions(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
        now: Micros,
    ) -> ServiceResult<Versions> {
        let name = self.parse_secret_name(name)?;
        let access = self.identity.team_access::<ReadSecrets>(p, team).await?;
        let history = self
            .store
            .secret_history(&access, name.canonical())
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("no secret named {:?}", name.as_str()))
            })?;
        let consumers = self
            .store
            .secret_consumers(&access, &history.record.id)
            .await?;
        Ok(Versions {
            history,
            consumers: listed(consumers, now),
        })
    }

    /// Who received which version of a secret (as listed at `now`).
    pub async fn secret_consumers(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
        now: Micros,
    ) -> ServiceResult<(SecretRecord, Vec<Consumer>)> {
        let (access, stored) = self.current_secret::<ReadSecrets>(p, team, name).await?;
        let consumers = self
            .store
            .secret_consumers(&access, &stored.record.id)
            .await?;
        Ok((stored.record, listed(consumers, now)))
    }

    /// Makes an earlier version the current one, as a new version: the value
    /// is opened and sealed again here and never leaves the server.
    pub async fn restore_version(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
        version: i64,
    ) -> ServiceResult<SecretRecord> {
        let (access, current) = self.current_secret::<ManageHistory>(p, team, name).await?;
        let r = &current.record;
        let (version_id, ciphertext) =
            match self.store.stored_version(&access, &r.id, version).await? {
                Some(StoredVersion::Sealed {
                    version_id,
                    ciphertext,
                }) => (version_id, ciphertext),
                Some(StoredVersion::Current) => {
                    return Err(ServiceError::Conflict(format!(
                        "version {version} is already the current version"
                    )))
                }
                Some(StoredVersion::Destroyed) => {
                    return Err(ServiceError::Conflict(format!(
                        "version {version} was destroyed; it cannot be restored"
                    )))
                }
                None => {
                    return Err(ServiceError::NotFound(format!(
                        "secret {:?} has no version {version}",
                        r.name
                    )))
                }
            };
        let value = self.open_version(r, version, version_id.as_deref(), &ciphertext)?;
        let name = self.parse_secret_name(&r.name)?;
        let write = ValueWrite {
            p,
            access: &access,
            name: &name,
            destroy_previous: false,
            restored_from: Some(version),
        };
        self.write_value(&write, &r.id, &value).await
    }

    /// Removes one previous version's ciphertext for good (its metadata
    /// stays). Refused without `force` while a consumer that reports while
    /// it lives, seen within [`HELD_WITHIN`], still holds it; one-shot runs
    /// seen within the window are counted for a warning instead.
    pub async fn destroy_version(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
        version: i64,
        force: bool,
    ) -> ServiceResult<DestroyedVersion> {
        let (access, current) = self.current_secret::<ManageHistory>(p, team, name).await?;
        let r = current.record;
        if version == r.version {
            return Err(current_version_refused(version));
        }
        // What this node has seen but not yet written counts too.
        self.flush_consumers().await?;
        let since = now_micros() - micros(HELD_WITHIN);
        let (reporting, one_shot): (Vec<Consumer>, Vec<Consumer>) = self
            .store
            .secret_consumers(&access, &r.id)
            .await?
            .into_iter()
            .filter(|c| c.version == version && c.last_seen_at >= since)
            .partition(|c| c.kind.reports_while_alive());
        if !force {
            let holders = reporting.len();
            if holders > 0 {
                return Err(ServiceError::Conflict(format!(
                    "version {version} is still held by {holders} consumer(s) seen in the last {} minutes; \
                     destroy it with force=true to go ahead anyway",
                    HELD_WITHIN.as_secs() / 60
                )));
            }
        }
        match self
            .store
            .destroy_version(&access, &r.id, version, now_micros(), {
                let detail = serde_json::json!({ "version": version, "forced": force });
                let target = Target::of(&r.id, &r.name);
                self.event(
                    p,
                    AuditAction::SecretVersionDestroy,
                    Some(&access),
                    target,
                    Some(detail.to_string()),
                )
            })
            .await?
        {
            Destroyed::Now | Destroyed::Already => Ok(DestroyedVersion {
                record: r,
                one_shot_holders: one_shot.len(),
            }),
            Destroyed::Current => Err(current_version_refused(version)),
            Destroyed::Missing => Err(ServiceError::NotFound(format!(
                "secret {:?} has no version {version}",
                r.name
            ))),
        }
    }

    /// The team's deleted secrets that can still be undeleted.
    pub async fn deleted_secrets(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
    ) -> ServiceResult<Vec<DeletedSecret>> {
        let access = self.identity.team_access::<ReadSecrets>(p, team).await?;
        Ok(self.store.deleted_secrets(&access).await?)
    }

    /// The deleted secret `name` names: the one with id `id` when given,
    /// else the most recently deleted of that name.
    async fn find_deleted(
        &self,
        access: &TeamAccess<ReadSecrets>,
        name: &str,
        id: Option<&str>,
    ) -> ServiceResult<DeletedSecret> {
        let name = self.parse_secret_name(name)?;
        self.store
            .deleted_secrets(access)
            .await?
            .into_iter()
            .find(|d| {
                d.record.canonical_name == name.canonical() && id.is_none_or(|id| d.record.id == id)
            })
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "no deleted secret named {:?} in team {:?}",
                    name.as_str(),
                    access.team_name()
                ))
            })
    }

    /// Makes a deleted secret live again (its id, versions and value).
    pub async fn undelete_secret(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
        id: Option<&str>,
    ) -> ServiceResult<SecretRecord> {
        let access = self.identity.team_access::<ManageHistory>(p, team).await?;
        let deleted = self.find_deleted(&access, name, id).await?;
        let write = self
            .store
            .undelete_secret(
                &access,
                &deleted.record.id,
                self.limits.quotas.secrets_per_team,
                self.limits.quotas.value_bytes_per_team,
                self.event(
                    p,
                    AuditAction::SecretUndelete,
                    Some(&access),
                    Target::named(name),
                    None,
                ),
            )
            .await?;
        self.notifier.publish(access.team_id(), write.revision);
        Ok(write.record)
    }

    /// Removes a deleted secret and its versions now.
    pub async fn purge_deleted_secret(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
        id: Option<&str>,
    ) -> ServiceResult<DeletedSecret> {
        let access = self.identity.team_access::<ManageHistory>(p, team).await?;
        let deleted = self.find_deleted(&access, name, id).await?;
        if !self
            .store
            .purge_deleted_secret(
                &access,
                &deleted.record.id,
                self.event(
                    p,
                    AuditAction::SecretPurge,
                    Some(&access),
                    Target::of(&deleted.record.id, &deleted.record.name),
                    Some(purge_detail(PurgeReason::Requested)),
                ),
            )
            .await?
        {
            return Err(ServiceError::NotFound(
                "the deleted secret was purged meanwhile".into(),
            ));
        }
        Ok(deleted)
    }

    /// The purge job: removes secrets deleted longer ago than the retention
    /// window as of `now`, and forgets long-gone consumers. `now` is the
    /// caller's clock (the job passes the time; tests pass a later one).
    pub async fn purge_expired(&self, now: Micros) -> ServiceResult<u64> {
        let deleted_before = now - micros(self.limits.history.keep_deleted);
        let seen_before = now - micros(FORGET_CONSUMERS_AFTER);
        let purged = self
            .store
            .purge_expired(
                deleted_before,
                seen_before,
                // A template: the store records one `secret.purge` per
                // secret, naming it, its team and organization.
                self.system_event(AuditAction::SecretPurge),
            )
            .await?;
        if purged > 0 {
            tracing::info!(purged, "purged deleted secrets past their retention");
        }
        Ok(purged)
    }
}

fn current_version_refused(version: i64) -> ServiceError {
    ServiceError::Conflict(format!(
        "version {version} is the current version; write a new value (with destroy_previous) \
         or delete the secret instead"
    ))
}
