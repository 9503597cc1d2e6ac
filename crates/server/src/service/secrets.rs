//! Secrets: upsert, list, delete. Values go in; only metadata comes out.

use super::audit::Target;
use super::bulk_lane::{BulkLane, BulkTurn};
use super::{Service, ServiceError, ServiceResult, TeamRef};
use crate::crypto::{Envelope, SecretPlace};
use crate::domain::access::{
    authorize_all_teams, authorize_org, authorize_team, AllTeamsAccess, OrgAction, Principal,
    ReadSecrets, TeamAccess, WriteSecrets,
};
use crate::domain::audit_action::AuditAction;
use crate::domain::ids::new_id;
use crate::domain::secret_name::SecretName;
use crate::domain::secret_value::SecretValue;
use crate::domain::time::now_micros;
use crate::domain::types::{ListedSecret, SecretRecord};
use crate::store::{DynStore, SealedWrite, StoreError, StoredSecret};
use std::sync::Arc;

/// Times a write is sealed again because the secret's identity changed
/// under it (each time someone else created or deleted the same name).
const WRITE_ATTEMPTS: usize = 4;

/// Rows in a listing's first page. A listing that fits is answered from one
/// query on the calling worker, as before paging existed.
pub const FIRST_PAGE: usize = crate::store::INLINE_ROWS;
/// Rows in each later page: large listings are read and sent page by page,
/// so a request holds at most one page in memory and no long-lived read
/// snapshot, however many secrets it lists.
pub const NEXT_PAGE: usize = 512;

/// A page of a listing. A later page holds its turn in the node's lane of
/// large pages until the caller drops it, after rendering (not after
/// sending: a client slow to read must not hold up every other large
/// listing).
pub struct Page {
    pub entries: Vec<ListedSecret>,
    _bulk: Option<BulkTurn>,
}

/// A write of a value: who, where, and what it does to earlier versions.
#[derive(Clone, Copy)]
pub(crate) struct ValueWrite<'a> {
    pub p: &'a Principal,
    pub access: &'a TeamAccess<WriteSecrets>,
    pub name: &'a SecretName,
    pub destroy_previous: bool,
    /// The version whose value this write restores.
    pub restored_from: Option<i64>,
}

/// Where a listing reads from, in order.
enum Segment {
    /// Every team of the organization: one range scan.
    Org(AllTeamsAccess),
    /// One team.
    Team(TeamAccess<ReadSecrets>),
}

/// A listing being read page by page: secrets ordered by team id, then
/// canonical name. Costs one query per page (plus one per team when the
/// caller may read only some teams), whatever the number of teams.
pub struct SecretPages {
    store: DynStore,
    segments: Vec<Segment>,
    current: usize,
    after: (String, String),
    pages: usize,
    bulk: Arc<BulkLane>,
}

/// What a team listing shows: the team's revision and the team name printed
/// in each entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingStamp {
    pub team_id: String,
    pub team_name: String,
    pub revision: i64,
}

/// A team's listing: its stamp, and its pages (not read yet).
pub struct TeamListing {
    pub stamp: ListingStamp,
    pub pages: SecretPages,
}

impl SecretPages {
    /// The next page, or `None` when the listing is complete.
    pub async fn next(&mut self) -> ServiceResult<Option<Page>> {
        let (limit, bulk) = if self.pages == 0 {
            (FIRST_PAGE, None)
        } else {
            (NEXT_PAGE, Some(self.bulk.enter().await))
        };
        while let Some(segment) = self.segments.get(self.current) {
            let page = match segment {
                Segment::Org(org) => {
                    self.store
                        .org_secrets_page(org, (&self.after.0, &self.after.1), limit)
                        .await?
                }
                Segment::Team(team) => {
                    self.store
                        .team_secrets_page(team, &self.after.1, limit)
                        .await?
                }
            };
            self.pages += 1;
            if page.len() < limit {
                // This segment is exhausted.
                self.current += 1;
                self.after = (String::new(), String::new());
            } else if let Some(last) = page.last() {
                self.after = (last.team_id.clone(), last.canonical_name.clone());
            }
            if !page.is_empty() {
                return Ok(Some(Page {
                    entries: page,
                    _bulk: bulk,
                }));
            }
        }
        Ok(None)
    }

    /// Whether every page has been read.
    pub fn is_done(&self) -> bool {
        self.current >= self.segments.len()
    }
}

impl Service {
    pub fn parse_secret_name(&self, raw: &str) -> ServiceResult<SecretName> {
        SecretName::parse(raw).map_err(|e| ServiceError::Invalid(e.to_string()))
    }

    fn check_value(&self, value: &SecretValue) -> ServiceResult<()> {
        let max = self.limits.max_value_bytes;
        if value.len() > max {
            return Err(ServiceError::Invalid(format!(
                "secret value is {} bytes; the limit is {max} bytes",
                value.len()
            )));
        }
        Ok(())
    }

    pub async fn upsert_secret(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
        value: SecretValue,
        destroy_previous: bool,
    ) -> ServiceResult<SecretRecord> {
        let name = self.parse_secret_name(name)?;
        self.check_value(&value)?;
        let access = self.identity.team_access::<WriteSecrets>(p, team).await?;
        let key = (access.team_id().to_owned(), name.canonical().to_owned());
        let write = ValueWrite {
            p,
            access: &access,
            name: &name,
            destroy_previous,
            restored_from: None,
        };
        // Writes flow one way: the value is sealed here, for the secret's id
        // and a new version id, and the store only stores it. Which id: the
        // one remembered, else the one read, else a new one; if the store
        // finds that no longer true (the secret was created, deleted or
        // re-created meanwhile) it changes nothing and the id is read again.
        let remembered = self.secret_ids.get(&key);
        let mut known = remembered.as_deref().cloned();
        for _ in 0..WRITE_ATTEMPTS {
            let existing = match known.take() {
                Some(id) => Some(id),
                None => self.store.secret_id(&access, name.canonical()).await?,
            };
            let exists = existing.is_some();
            let secret_id = existing.unwrap_or_else(new_id);
            let written = self
                .seal_and_write(&write, &secret_id, exists, &value)
                .await?;
            if let Some(record) = written {
                if remembered.as_deref() != Some(&record.id) {
                    self.secret_ids.put(key, Arc::new(record.id.clone()));
                }
                return Ok(record);
            }
        }
        Err(StoreError::Stale.into())
    }

    /// Writes `value` to the existing secret `secret_id` as its next version;
    /// a conflict when it no longer exists with that id.
    pub(crate) async fn write_value(
        &self,
        w: &ValueWrite<'_>,
        secret_id: &str,
        value: &SecretValue,
    ) -> ServiceResult<SecretRecord> {
        self.seal_and_write(w, secret_id, true, value)
            .await?
            .ok_or_else(|| ServiceError::Conflict("the secret changed concurrently; retry".into()))
    }

    /// One attempt of a write: seals the value for `secret_id` and a new
    /// version id, stores it, and wakes the team's workloads; `None` when
    /// the store found the secret's identity changed.
    async fn seal_and_write(
        &self,
        w: &ValueWrite<'_>,
        secret_id: &str,
        exists: bool,
        value: &SecretValue,
    ) -> ServiceResult<Option<SecretRecord>> {
        let ValueWrite {
            p,
            access,
            name,
            destroy_previous,
            restored_from,
        } = *w;
        let version_id = new_id();
        let mut detail = serde_json::json!({ "version_id": version_id });
        if destroy_previous {
            detail["destroy_previous"] = true.into();
        }
        let action = match restored_from {
            Some(from) => {
                detail["restored_from"] = from.into();
                AuditAction::SecretVersionRestore
            }
            None => AuditAction::SecretWrite,
        };
        let audit = self.event(
            p,
            action,
            Some(access),
            Target::of(secret_id, name.as_str()),
            Some(detail.to_string()),
        );
        let sealed = Envelope::new(&self.keyring)
            .seal(
                SecretPlace {
                    org_id: access.org_id(),
                    team_id: access.team_id(),
                    secret_id,
                    version: 0,
                    version_id: Some(&version_id),
                },
                value,
            )
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let write = SealedWrite {
            canonical_name: name.canonical().to_owned(),
            name: name.as_str().to_owned(),
            secret_id: secret_id.to_owned(),
            exists,
            version_id,
            kek_id: sealed.kek_id,
            ciphertext: sealed.ciphertext,
            now: now_micros(),
            max_team_bytes: self.limits.quotas.value_bytes_per_team,
            history: self.write_history(p, destroy_previous),
            audit,
        };
        let quota = self.limits.quotas.secrets_per_team;
        match self.store.upsert_secret(access, write, quota).await {
            Ok(write) => {
                // Durable now: wake this team's waiting workloads.
                self.notifier.publish(access.team_id(), write.revision);
                metrics::counter!("tessera_secret_writes_total").increment(1);
                Ok(Some(write.record))
            }
            Err(StoreError::Stale) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn pages(&self, segments: Vec<Segment>) -> SecretPages {
        SecretPages {
            store: self.store.clone(),
            segments,
            current: 0,
            after: (String::new(), String::new()),
            pages: 0,
            bulk: self.bulk_pages.clone(),
        }
    }

    /// One team's secrets (metadata), page by page, with the stamp that
    /// identifies their content. The stamp is read before any page: revisions
    /// only grow and move in the same transaction as the change, so pages read
    /// afterwards show that revision or a later one, and a listing remembered
    /// under a stamp is exactly that team's content for as long as the stamp
    /// reads the same (on any node).
    pub async fn list_team_secrets(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
    ) -> ServiceResult<TeamListing> {
        let access = self.identity.team_access::<ReadSecrets>(p, team).await?;
        let stamp = ListingStamp {
            revision: self.store.team_revision(&access).await?,
            team_id: access.team_id().to_owned(),
            team_name: access.team_name().to_owned(),
        };
        Ok(TeamListing {
            stamp,
            pages: self.pages(vec![Segment::Team(access)]),
        })
    }

    /// Every secret the caller can reach, across the teams of its
    /// organization, page by page.
    pub async fn list_all_secrets(&self, p: &Principal) -> ServiceResult<SecretPages> {
        let org = authorize_org(p, OrgAction::ListSecrets)?;
        if let Some(all) = authorize_all_teams(p) {
            return Ok(self.pages(vec![Segment::Org(all)]));
        }
        // Only the teams that hold secrets, in one query; the permission is
        // decided for each in memory.
        let segments = self
            .store
            .teams_with_secrets(&org)
            .await?
            .iter()
            .filter_map(|team| authorize_team::<ReadSecrets>(p, team).ok())
            .map(Segment::Team)
            .collect();
        Ok(self.pages(segments))
    }

    pub async fn delete_secret(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
    ) -> ServiceResult<SecretRecord> {
        let name = self.parse_secret_name(name)?;
        let access = self.identity.team_access::<WriteSecrets>(p, team).await?;
        let write = self
            .store
            .delete_secret(
                &access,
                name.canonical(),
                &self.deletion(p, &access, name.as_str()),
            )
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "no secret named {:?} in team {:?}",
                    name.as_str(),
                    access.team_name()
                ))
            })?;
        self.secret_ids
            .remove(&(access.team_id().to_owned(), name.canonical().to_owned()));
        self.notifier.publish(access.team_id(), write.revision);
        Ok(write.record)
    }

    /// Opens the latest value of a secret. Not reachable through the
    /// management API (values are write-only there); used by the delivery
    /// path and by operators' verification tooling.
    pub async fn reveal_secret(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
    ) -> ServiceResult<SecretValue> {
        let (_, stored) = self.current_secret::<ReadSecrets>(p, team, name).await?;
        self.open_value(&stored)
    }

    /// Opens a stored version (format 1 or 2).
    pub(crate) fn open_value(&self, stored: &StoredSecret) -> ServiceResult<SecretValue> {
        let r = &stored.record;
        self.open_version(
            r,
            r.version,
            stored.version_id.as_deref(),
            &stored.ciphertext,
        )
    }

    /// Opens version `version` (sealed for `version_id`) of the secret `r`.
    pub(crate) fn open_version(
        &self,
        r: &SecretRecord,
        version: i64,
        version_id: Option<&str>,
        ciphertext: &[u8],
    ) -> ServiceResult<SecretValue> {
        let place = SecretPlace {
            org_id: &r.org_id,
            team_id: &r.team_id,
            secret_id: &r.id,
            version,
            version_id,
        };
        Envelope::new(&self.keyring)
            .open(place, ciphertext)
            .map_err(|e| {
                ServiceError::Internal(format!(
                    "secret {} version {version} failed to open: {e}",
                    r.id
                ))
            })
    }
}
