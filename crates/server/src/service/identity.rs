//! The identity context several aggregates share: who the caller is (keys
//! resolved into principals, through the principal cache), which team a
//! request addresses (through the team caches) and the caller's grant on it,
//! and the keys' recorded uses. Forgetting cached identities after a change
//! is its job too, so every aggregate that changes a team, a member, a user
//! or a key clears the same caches.

use super::auth::{self, PrincipalCache};
use super::cache::TtlCache;
use super::notify::Notifier;
use super::usage::UsageRecorder;
use super::{ServiceError, ServiceResult, TeamRef};
use crate::domain::access::{self, Principal, TeamAccess, TeamActionKind};
use crate::domain::time::Micros;
use crate::domain::types::Team;
use crate::store::{IdentityStore, KeyStore};
use std::sync::Arc;

/// Holds the store's identity and key sides (keys resolve into principals),
/// the principal and team caches, the pending key uses, and the notifier
/// (shared with delivery) whose long polls re-check their keys after an
/// identity change.
pub struct IdentityContext {
    pub(super) identities: Arc<dyn IdentityStore + Send + Sync>,
    pub(super) keys: Arc<dyn KeyStore + Send + Sync>,
    pub(super) principals: PrincipalCache,
    /// Teams by id, and each organization's default team by org id.
    teams: TtlCache<String, Team>,
    default_teams: TtlCache<String, Team>,
    pub(super) usage: UsageRecorder,
    notifier: Arc<Notifier>,
}

impl IdentityContext {
    pub(crate) fn new(
        identities: Arc<dyn IdentityStore + Send + Sync>,
        keys: Arc<dyn KeyStore + Send + Sync>,
        notifier: Arc<Notifier>,
    ) -> Self {
        Self {
            identities,
            keys,
            principals: PrincipalCache::new(auth::PRINCIPAL_TTL),
            teams: TtlCache::new(auth::PRINCIPAL_TTL),
            default_teams: TtlCache::new(auth::PRINCIPAL_TTL),
            usage: UsageRecorder::default(),
            notifier,
        }
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
        if let Some(t) = self.teams.get(id) {
            return Ok((*t).clone());
        }
        let team = self
            .identities
            .find_team(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("team not found".into()))?;
        self.teams.put(id.to_owned(), Arc::new(team.clone()));
        Ok(team)
    }

    async fn default_team(&self, org_id: &str) -> ServiceResult<Team> {
        if let Some(t) = self.default_teams.get(org_id) {
            return Ok((*t).clone());
        }
        let team = self.identities.default_team(org_id).await?;
        self.default_teams
            .put(org_id.to_owned(), Arc::new(team.clone()));
        Ok(team)
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

    /// Forgets cached identity data after a change (teams, members, users,
    /// keys; this node's or, told by the store, another's), so it applies on
    /// the next request, and has long-polling workloads re-check their keys.
    pub(crate) fn identity_changed(&self) {
        self.principals.clear();
        self.teams.clear();
        self.default_teams.clear();
        self.notifier.identity_changed();
    }

    /// A use of the key not yet written, so listings on this node are current.
    pub(crate) fn pending_use(&self, prefix: &str) -> Option<Micros> {
        self.usage.pending(prefix)
    }

    /// Drops a revoked key's pending use (its row is gone).
    pub(crate) fn forget_usage(&self, prefix: &str) {
        self.usage.forget(prefix);
    }

    /// Writes pending uses; on failure they are kept for the next attempt.
    pub async fn flush_usage(&self) -> ServiceResult<()> {
        let uses = self.usage.take();
        if uses.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.keys.touch_api_keys(uses.clone()).await {
            for (prefix, at) in uses {
                self.usage.record(&prefix, at);
            }
            return Err(e.into());
        }
        Ok(())
    }
}
