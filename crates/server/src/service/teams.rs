//! Teams as the Baseten routes see them.

use super::identity::IdentityContext;
use super::{Quotas, ServiceResult};
use crate::domain::access::{
    authorize_org, authorize_team, can_read_team, OrgAction, Principal, ReadTeam,
};
use crate::domain::types::Team;
use crate::store::IdentityStore;
use std::sync::Arc;

/// Which team a request addresses.
#[derive(Debug, Clone, Copy)]
pub enum TeamRef<'a> {
    /// Routes without `{team_id}`: the key's team or the org's default team.
    Implicit,
    Id(&'a str),
}

/// The teams aggregate: the teams a caller sees (`teams.rs`), creating,
/// renaming and deleting them and their members (`team_admin.rs`). Holds
/// the store's identity side, the identity context (the addressed team, the
/// caches a change clears) and the teams quota.
pub struct Teams {
    pub(super) store: Arc<dyn IdentityStore + Send + Sync>,
    pub(super) identity: Arc<IdentityContext>,
    pub(super) quotas: Quotas,
}

impl Teams {
    pub(crate) fn new(
        store: Arc<dyn IdentityStore + Send + Sync>,
        identity: Arc<IdentityContext>,
        quotas: Quotas,
    ) -> Self {
        Self {
            store,
            identity,
            quotas,
        }
    }

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
        let team = self.identity.load_team(p, TeamRef::Id(team_id)).await?;
        authorize_team::<ReadTeam>(p, &team)?;
        Ok(team)
    }
}
