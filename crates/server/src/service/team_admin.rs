//! Creating, renaming and deleting teams, and their memberships (extensions:
//! Baseten does these in its web UI).

use super::audit::{event, Target};
use super::teams::Teams;
use super::{ServiceError, ServiceResult, TeamRef};
use crate::domain::access::{
    authorize_org, authorize_team, AdministerTeam, DeleteTeam, KeyHandover, OrgAction, Principal,
    ReadTeam,
};
use crate::domain::audit_action::AuditAction;
use crate::domain::ids::new_id;
use crate::domain::time::now_micros;
use crate::domain::types::{Team, TeamRole, User};
use crate::store::{NewTeam, TeamDeletion};

/// A team name: 1 to 100 characters, NFC, nothing invisible (see
/// `domain::names`).
fn check_team_name(name: &str) -> ServiceResult<String> {
    crate::domain::names::display_name("team name", name, 100)
        .map_err(|e| ServiceError::Invalid(e.0))
}

impl Teams {
    pub async fn create_team(&self, p: &Principal, name: &str) -> ServiceResult<Team> {
        let org = authorize_org(p, OrgAction::AdministerOrg)?;
        let team = NewTeam {
            id: new_id(),
            name: check_team_name(name)?,
            created_at: now_micros(),
        };
        let event = event(
            p,
            AuditAction::TeamCreate,
            None,
            Target::of(&team.id, &team.name),
            None,
        );
        let max = self.quotas.teams_per_org;
        Ok(self.store.create_team(&org, team, max, event).await?)
    }

    pub async fn rename_team(
        &self,
        p: &Principal,
        team_id: &str,
        name: &str,
    ) -> ServiceResult<Team> {
        let access = self
            .identity
            .team_access::<AdministerTeam>(p, TeamRef::Id(team_id))
            .await?;
        let name = check_team_name(name)?;
        let target = Target::of(access.team_id(), &name);
        let event = event(p, AuditAction::TeamRename, Some(&access), target, None);
        self.store.rename_team(&access, &name, event).await?;
        self.identity.identity_changed();
        self.identity.load_team(p, TeamRef::Id(team_id)).await
    }

    /// Deletes a team (never the default one). A team holding secrets is only
    /// deleted when `cascade` is set; its secrets then go with it.
    pub async fn delete_team(
        &self,
        p: &Principal,
        team_id: &str,
        cascade: bool,
    ) -> ServiceResult<(Team, i64)> {
        let team = self.identity.load_team(p, TeamRef::Id(team_id)).await?;
        let access = authorize_team::<DeleteTeam>(p, &team)?;
        if team.is_default {
            return Err(ServiceError::Invalid(
                "the default team cannot be deleted".into(),
            ));
        }
        let detail = serde_json::json!({ "cascade": cascade }).to_string();
        let target = Target::of(&team.id, &team.name);
        let event = event(
            p,
            AuditAction::TeamDelete,
            Some(&access),
            target,
            Some(detail),
        );
        match self.store.delete_team(&access, cascade, event).await? {
            TeamDeletion::Deleted { secrets } => {
                self.identity.identity_changed();
                Ok((team, secrets))
            }
            TeamDeletion::HasSecrets(n) => Err(ServiceError::Conflict(format!(
                "the team holds {n} secret(s); delete them first or pass cascade=true"
            ))),
            TeamDeletion::NotFound => Err(ServiceError::NotFound("team not found".into())),
        }
    }

    pub async fn list_members(
        &self,
        p: &Principal,
        team_id: &str,
    ) -> ServiceResult<Vec<(User, TeamRole)>> {
        let access = self
            .identity
            .team_access::<ReadTeam>(p, TeamRef::Id(team_id))
            .await?;
        Ok(self.store.list_members(&access).await?)
    }

    /// Adds a user to a team or changes its role. A demotion from team
    /// admin deals with the keys the user answers for in this team as
    /// `keys` says (refused, 409, when they exist and `keys` is
    /// [`KeyHandover::Refuse`]).
    pub async fn set_member(
        &self,
        p: &Principal,
        team_id: &str,
        user_id: &str,
        role: TeamRole,
        keys: KeyHandover,
    ) -> ServiceResult<User> {
        let access = self
            .identity
            .team_access::<AdministerTeam>(p, TeamRef::Id(team_id))
            .await?;
        super::authority::check_handover(&keys, user_id)?;
        let user = super::users::find_user(self.store.as_ref(), p, user_id).await?;
        let detail = serde_json::json!({ "role": role.as_str() }).to_string();
        let target = Target::of(&user.id, user.email.as_deref().unwrap_or_default());
        let event = event(
            p,
            AuditAction::MemberSet,
            Some(&access),
            target,
            Some(detail),
        );
        let outcome = self
            .store
            .set_member(&access, &user.id, role, keys, event)
            .await?;
        self.identity.authority_changed(outcome, "user not found")?;
        Ok(user)
    }

    /// Removes a user from a team, dealing with the keys it answers for in
    /// this team as `keys` says (see [`Service::set_member`]).
    pub async fn remove_member(
        &self,
        p: &Principal,
        team_id: &str,
        user_id: &str,
        keys: KeyHandover,
    ) -> ServiceResult<()> {
        let team = self.identity.load_team(p, TeamRef::Id(team_id)).await?;
        let access = authorize_team::<AdministerTeam>(p, &team)?;
        if team.is_default {
            return Err(ServiceError::Invalid(
                "every user belongs to the default team; delete the user instead".into(),
            ));
        }
        super::authority::check_handover(&keys, user_id)?;
        let target = Target {
            id: Some(user_id),
            name: None,
        };
        let event = event(p, AuditAction::MemberRemove, Some(&access), target, None);
        let outcome = self
            .store
            .remove_member(&access, user_id, keys, event)
            .await?;
        self.identity
            .authority_changed(outcome, "the user is not a member of this team")
    }
}
