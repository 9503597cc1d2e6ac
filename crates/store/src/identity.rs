//! The identity aggregate: organizations, teams, users and memberships.

use super::row::Row;
use super::{StoreError, StoreResult};
use async_trait::async_trait;
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{
    AdministerTeam, DeleteTeam, KeyHandover, OrgAccess, ReadTeam, TeamAccess,
};
use tessera_core::domain::audit_action::AuditAction;
use tessera_core::domain::ids::new_id;
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::{
    ApiKeyRecord, KeyType, Membership, OrgRole, Organization, Team, TeamRole, User,
};

pub(crate) const TEAM_NAME_TAKEN: &str = "the organization already has a team with this name";
pub(crate) const EMAIL_TAKEN: &str = "a user with this email already exists";
pub(crate) const TEAM_GONE: &str = "team not found";
pub(crate) const USER_GONE: &str = "user not found";
pub(crate) const TEAMS_QUOTA: &str = "teams per organization";
pub(crate) const USERS_QUOTA: &str = "users per organization";

/// Refuses one more of something when `count` has reached `limit`.
pub(crate) fn check_quota(count: i64, quota: &'static str, limit: i64) -> StoreResult<()> {
    if count >= limit {
        return Err(StoreError::QuotaExceeded { quota, limit });
    }
    Ok(())
}

/// A uniqueness violation on creating an organization, in our words.
pub(crate) fn org_name_taken(e: StoreError, org: &Organization) -> StoreError {
    e.conflict_as(&format!(
        "an organization named {:?} already exists",
        org.name
    ))
}

pub(crate) const ORG_COLUMNS: &str = "id, name, created_at";

pub(crate) fn org_row<R: Row>(r: &R) -> Result<Organization, R::Error> {
    Ok(Organization {
        id: r.col(0)?,
        name: r.col(1)?,
        created_at: r.col(2)?,
    })
}

pub(crate) const TEAM_COLUMNS: &str = "id, org_id, name, is_default, created_at";

pub(crate) fn team_row<R: Row>(r: &R) -> Result<Team, R::Error> {
    Ok(Team {
        id: r.col(0)?,
        org_id: r.col(1)?,
        name: r.col(2)?,
        is_default: r.col(3)?,
        created_at: r.col(4)?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, org_id, email, name, role, created_at";

pub(crate) fn user_row<R: Row>(r: &R) -> Result<User, R::Error> {
    user_at(r, 0)
}

/// A user whose [`USER_COLUMNS`] start at `base` in a joined row.
pub(crate) fn user_at<R: Row>(r: &R, base: usize) -> Result<User, R::Error> {
    Ok(User {
        id: r.col(base)?,
        org_id: r.col(base + 1)?,
        email: r.col(base + 2)?,
        name: r.col(base + 3)?,
        role: r.parse(base + 4)?,
        created_at: r.col(base + 5)?,
    })
}

/// `team_id, role` of `team_members`.
pub(crate) fn membership_row<R: Row>(r: &R) -> Result<Membership, R::Error> {
    Ok(Membership {
        team_id: r.col(0)?,
        role: r.parse(1)?,
    })
}

/// [`USER_COLUMNS`], then the membership's role.
pub(crate) fn member_row<R: Row>(r: &R) -> Result<(User, TeamRole), R::Error> {
    Ok((user_row(r)?, r.parse(6)?))
}

/// Everything created together with a new organization, in one transaction.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub org: Organization,
    pub default_team: Team,
    pub admin: User,
    pub admin_key: ApiKeyRecord,
}

/// Name of the team every organization starts with.
pub const DEFAULT_TEAM_NAME: &str = "default";

impl NewOrganization {
    /// The rows of a new organization named `name`, created at `now`: its
    /// default team, its admin user and the admin's personal key (the
    /// token's prefix and the hash of its secret).
    pub fn build(name: &str, now: Micros, prefix: &str, secret_hash: Vec<u8>) -> Self {
        let org = Organization {
            id: new_id(),
            name: name.to_owned(),
            created_at: now,
        };
        let default_team = Team {
            id: new_id(),
            org_id: org.id.clone(),
            name: DEFAULT_TEAM_NAME.to_owned(),
            is_default: true,
            created_at: now,
        };
        let admin = User {
            id: new_id(),
            org_id: org.id.clone(),
            email: None,
            name: Some("admin".to_owned()),
            role: OrgRole::Admin,
            created_at: now,
        };
        let admin_key = ApiKeyRecord {
            prefix: prefix.to_owned(),
            org_id: org.id.clone(),
            key_type: KeyType::Personal,
            name: Some("admin".to_owned()),
            secret_hash,
            user_id: Some(admin.id.clone()),
            team_id: None,
            model_ids: None,
            secret_names: None,
            created_by: Some(admin.id.clone()),
            created_at: now,
            last_used_at: None,
        };
        NewOrganization {
            org,
            default_team,
            admin,
            admin_key,
        }
    }
}

/// A team to create in the grant's organization.
#[derive(Debug, Clone)]
pub struct NewTeam {
    pub id: String,
    pub name: String,
    pub created_at: Micros,
}

impl NewTeam {
    pub(crate) fn in_org(self, org: &OrgAccess) -> Team {
        Team {
            id: self.id,
            org_id: org.org_id().to_owned(),
            name: self.name,
            is_default: false,
            created_at: self.created_at,
        }
    }
}

/// A user to create in the grant's organization (as a member of its default
/// team).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    /// Unique per organization by its [`tessera_core::domain::names::email_key`],
    /// which the store derives.
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: OrgRole,
    pub created_at: Micros,
}

impl NewUser {
    pub(crate) fn in_org(self, org: &OrgAccess) -> User {
        User {
            id: self.id,
            org_id: org.org_id().to_owned(),
            email: self.email,
            name: self.name,
            role: self.role,
            created_at: self.created_at,
        }
    }
}

/// One page of the user directory, ordered by id.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Only users whose id sorts after this one.
    pub after: Option<String>,
    pub limit: usize,
    /// Only the user whose [`tessera_core::domain::names::email_key`] is this.
    pub email_key: Option<String>,
}

/// What deleting a team did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamDeletion {
    Deleted {
        secrets: i64,
    },
    /// Not deleted: the team holds secrets and no cascade was asked for.
    HasSecrets(i64),
    NotFound,
}

impl TeamDeletion {
    /// Whether a team holding `secrets` (`None`: the team is gone) may be
    /// deleted: `Ok` with its secret count, or what to answer instead.
    pub(crate) fn allowed(secrets: Option<i64>, cascade: bool) -> Result<i64, Self> {
        match secrets {
            None => Err(Self::NotFound),
            Some(n) if n > 0 && !cascade => Err(Self::HasSecrets(n)),
            Some(n) => Ok(n),
        }
    }
}

/// What a change that may take authority away from a person did (no key
/// outlives the authority of the person who answers for it; see
/// `domain::access::keys_beyond_authority`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityOutcome {
    /// Changed; with it, these keys were revoked, or handed over to
    /// `successor`.
    Done {
        revoked: Vec<ApiKeyRecord>,
        handed_over: Vec<ApiKeyRecord>,
        successor: Option<String>,
    },
    /// Nothing changed: no such user in the organization (for a removal: not
    /// a member of the team).
    NotFound,
    /// Nothing changed: these keys would outlive their answerer's authority
    /// and the request did not say what to do with them.
    KeysConcerned(Vec<ApiKeyRecord>),
    /// Nothing changed: the user named to answer for the keys may not issue
    /// these of them.
    SuccessorMayNot(Vec<ApiKeyRecord>),
    /// Nothing changed: the user named to answer for the keys is not a user
    /// of the organization.
    SuccessorNotFound,
}

/// What to do, once the keys a change concerns are known: keys to revoke
/// and keys to hand over, or the refusal.
pub(crate) struct Handover {
    pub revoke: Vec<ApiKeyRecord>,
    pub hand_over: Vec<ApiKeyRecord>,
    pub successor: Option<String>,
}

/// Decides what happens to the keys a change concerns (`concerned`), given
/// what the request asked and, for a transfer, the successor as the store
/// found them (user and memberships; `None`: not in the organization).
pub(crate) fn handover(
    concerned: Vec<ApiKeyRecord>,
    asked: &KeyHandover,
    successor: Option<(User, Vec<Membership>)>,
) -> Result<Handover, AuthorityOutcome> {
    if concerned.is_empty() {
        return Ok(Handover {
            revoke: Vec::new(),
            hand_over: Vec::new(),
            successor: None,
        });
    }
    match asked {
        KeyHandover::Refuse => Err(AuthorityOutcome::KeysConcerned(concerned)),
        KeyHandover::Revoke => Ok(Handover {
            revoke: concerned,
            hand_over: Vec::new(),
            successor: None,
        }),
        KeyHandover::TransferTo(_) => {
            let Some((user, memberships)) = successor else {
                return Err(AuthorityOutcome::SuccessorNotFound);
            };
            let refused: Vec<ApiKeyRecord> = concerned
                .iter()
                .filter(|k| !tessera_core::domain::access::may_answer_for(&user, &memberships, k))
                .cloned()
                .collect();
            if !refused.is_empty() {
                return Err(AuthorityOutcome::SuccessorMayNot(refused));
            }
            Ok(Handover {
                revoke: Vec::new(),
                hand_over: concerned,
                successor: Some(user.id),
            })
        }
    }
}

/// The events of an authority change: the change's own (`event`, drafted by
/// the service), then one per key it revoked (`api_key.revoke`) or handed
/// over (`api_key.handover`), by the same actor in the same request.
pub(crate) fn authority_events(event: AuditEvent, outcome: &AuthorityOutcome) -> Vec<AuditEvent> {
    let AuthorityOutcome::Done {
        revoked,
        handed_over,
        successor,
    } = outcome
    else {
        return Vec::new();
    };
    let per_key = |action: &str, key: &ApiKeyRecord, detail: serde_json::Value| {
        let mut e = event.clone();
        e.action = action.to_owned();
        e.team_id = key.team_id.clone();
        e.target_id = Some(key.prefix.clone());
        e.target_name = key.name.clone();
        e.detail = Some(detail.to_string());
        e
    };
    let because = event.action.clone();
    let mut events = Vec::with_capacity(1 + revoked.len() + handed_over.len());
    for key in revoked {
        let detail = serde_json::json!({
            "key_type": key.key_type.to_string(),
            "because": because,
            "answered_by": key.created_by,
        });
        events.push(per_key(AuditAction::ApiKeyRevoke.as_str(), key, detail));
    }
    for key in handed_over {
        let detail = serde_json::json!({
            "key_type": key.key_type.to_string(),
            "because": because,
            "from": key.created_by,
            "to": successor,
        });
        events.push(per_key(AuditAction::ApiKeyHandover.as_str(), key, detail));
    }
    events.insert(0, event);
    events
}

#[async_trait]
pub trait IdentityStore {
    // --- what principals are built from and decided on ---------------------
    // Looked up before any grant exists: authentication and authorization
    // decide on what these return.
    async fn principal_user(&self, user_id: &str) -> StoreResult<Option<User>>;
    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>>;
    async fn find_team(&self, team_id: &str) -> StoreResult<Option<Team>>;
    async fn default_team(&self, org_id: &str) -> StoreResult<Team>;

    // --- bootstrap ------------------------------------------------------------
    // Every method that changes something takes the audit event recording
    // it, written in the same transaction (and only when it changed
    // something).
    async fn organization_count(&self) -> StoreResult<i64>;
    /// Creates an organization with its default team, admin user and key.
    /// `Conflict` when an organization of that name exists.
    async fn create_organization(&self, new: NewOrganization, event: AuditEvent)
        -> StoreResult<()>;

    // --- the organization a grant covers -----------------------------------------
    async fn organization(&self, org: &OrgAccess) -> StoreResult<Organization>;
    async fn list_teams(&self, org: &OrgAccess) -> StoreResult<Vec<Team>>;
    /// `Conflict` when the organization already has a team of that name;
    /// `QuotaExceeded` when it has `max_teams` already.
    async fn create_team(
        &self,
        org: &OrgAccess,
        team: NewTeam,
        max_teams: i64,
        event: AuditEvent,
    ) -> StoreResult<Team>;
    async fn rename_team(
        &self,
        team: &TeamAccess<AdministerTeam>,
        name: &str,
        event: AuditEvent,
    ) -> StoreResult<()>;
    /// Deletes the team with its memberships and team-bound keys; its
    /// secrets too when `cascade`, otherwise refuses while it has any.
    async fn delete_team(
        &self,
        team: &TeamAccess<DeleteTeam>,
        cascade: bool,
        event: AuditEvent,
    ) -> StoreResult<TeamDeletion>;
    async fn list_users(&self, org: &OrgAccess, query: UserQuery) -> StoreResult<Vec<User>>;
    /// The user with this id in the grant's organization only.
    async fn find_user(&self, org: &OrgAccess, user_id: &str) -> StoreResult<Option<User>>;
    /// Creates the user as a member of the organization's default team;
    /// `Conflict` on a taken email; `QuotaExceeded` when the organization
    /// has `max_users` already.
    async fn create_user(
        &self,
        org: &OrgAccess,
        user: NewUser,
        max_users: i64,
        event: AuditEvent,
    ) -> StoreResult<User>;
    /// Deletes the user with its personal keys and its memberships, in one
    /// transaction. The keys it answers for (every other key it created,
    /// directly or through a key it created) are revoked or handed over as
    /// `keys` says, in the same transaction; with [`KeyHandover::Refuse`]
    /// and such keys, nothing changes. Personal keys it minted for other
    /// users act as those users, and stay.
    async fn delete_user(
        &self,
        org: &OrgAccess,
        user_id: &str,
        keys: KeyHandover,
        event: AuditEvent,
    ) -> StoreResult<AuthorityOutcome>;
    async fn list_members(&self, team: &TeamAccess<ReadTeam>)
        -> StoreResult<Vec<(User, TeamRole)>>;
    /// Adds a user of the team's organization to the team or changes its
    /// role ([`AuthorityOutcome::NotFound`] when there is no such user
    /// there). A demotion deals with the keys the user answers for as
    /// `keys` says (see [`IdentityStore::delete_user`]).
    async fn set_member(
        &self,
        team: &TeamAccess<AdministerTeam>,
        user_id: &str,
        role: TeamRole,
        keys: KeyHandover,
        event: AuditEvent,
    ) -> StoreResult<AuthorityOutcome>;
    /// Removes a user from the team, dealing with the keys it answers for
    /// as `keys` says (see [`IdentityStore::delete_user`]).
    async fn remove_member(
        &self,
        team: &TeamAccess<AdministerTeam>,
        user_id: &str,
        keys: KeyHandover,
        event: AuditEvent,
    ) -> StoreResult<AuthorityOutcome>;
}
