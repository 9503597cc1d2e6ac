//! Teams as the Baseten routes see them.

use super::{Service, ServiceError, ServiceResult};
use crate::domain::access::{
    self, authorize_org, authorize_team, can_read_team, OrgAction, Principal, ReadTeam, TeamAccess,
    TeamActionKind,
};
use crate::domain::types::Team;
use std::sync::Arc;

/// Which team a request addresses.
#[derive(Debug, Clone, Copy)]
pub enum TeamRef<'a> {
    /// Routes without `{team_id}`: the key's team or the org's default team.
    Implicit,
    Id(&'a str),
}

impl Service {
    /// Teams the caller can see, optionally only the one with an exact name.
    pub async fn list_teams(&self, p: &Principal, name: Option<&str>) -> ServiceResult<Vec<Team>> {
        let org = authorize_org(p, OrgAction::ListTeams)?;
        let teams = self.store.list_teams(&org).await?;
        // Stored names are NFC; so must be the one asked for.
        let name = name.map(crate::domain::names::nfc);
        let name = name.as_deref();
        let visible: Vec<Team> = teams
            .into_iter()
            .filter(|t| can_read_team(p, t))
            .filter(|t| name.is_none_or(|n| t.name == n))
            .collect();
        Ok(visible)
    }

    pub async fn get_team(&self, p: &Principal, team_id: &str) -> ServiceResult<Team> {
        let team = self.load_team(p, TeamRef::Id(team_id)).await?;
        authorize_team::<ReadTeam>(p, &team)?;
        Ok(team)
    }
}

/// The identity context every aggregate shares: the addressed team, loaded
/// through the team caches, and the caller's grant on it.
impl Service {
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
