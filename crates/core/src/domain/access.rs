//! The permission model, in one place.
//!
//! A request's caller is a [`Principal`]. Before a service may touch the store
//! it must obtain a grant ([`TeamAccess`] or [`OrgAccess`]) from one of the
//! `authorize_*` functions below. Grants have private fields and no public
//! constructor, and the store's data methods take a grant as their first
//! argument, so a code path that skips authorization does not compile.
//!
//! The rules are the table in the design document:
//!
//! | key type                    | secrets                   | teams (read)      | API keys |
//! |-----------------------------|---------------------------|-------------------|----------|
//! | PERSONAL                    | user's teams (admins: all) | user's teams (admins: all) | own personal keys; team keys where team/org admin |
//! | WORKSPACE_MANAGE_ALL        | its team                  | its team          | its team's workspace keys |
//! | WORKSPACE_MANAGE_API_KEYS   | none                      | all               | lists all; issues only keys no stronger than itself |
//! | INVOKE, EXPORT_METRICS, ROUTES | none                   | none              | none |
//! | WORKSPACE_READ_SECRETS      | values, runtime routes only | none            | none |
//!
//! Issuing keys follows one rule: no credential creates or revokes a
//! credential with more power than its own ([`may_issue`]). The one
//! deliberate exception: WORKSPACE_READ_SECRETS keys, the only way values
//! leave the server, are issued only by people (an org admin's personal key,
//! or that team's admin's), never by a workspace key.

use super::types::{ApiKeyRecord, KeyType, Membership, OrgRole, Team, TeamRole, User};
use std::sync::Arc;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub org_id: String,
    pub key_prefix: String,
    pub key_type: KeyType,
    /// The owning user, for personal keys.
    pub user: Option<User>,
    /// Team memberships of the owning user (personal keys only).
    pub memberships: Vec<Membership>,
    /// The team a team-bound key belongs to.
    pub bound_team_id: Option<String>,
    /// The user who created the key (workspace keys), when known.
    pub created_by: Option<String>,
    /// WORKSPACE_READ_SECRETS keys: the canonical names they may read
    /// (`None`: the whole team).
    pub secret_names: Option<Vec<String>>,
}

/// Why a request was refused. `NotFound` hides the existence of other
/// organizations' objects; `Forbidden` says what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    NotFound(&'static str),
    Forbidden(String),
}

/// What a caller wants to do with one team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamAction {
    ReadSecrets,
    WriteSecrets,
    ReadTeam,
    /// Create, list or revoke the team's workspace keys.
    ManageTeamKeys,
    /// Add or remove members, rename the team.
    AdministerTeam,
    /// Delete the team (org admins only).
    DeleteTeam,
    /// Restore or destroy a secret's versions, undelete or purge deleted
    /// secrets: people only, the team's admins and org admins.
    ManageHistory,
}

/// What a caller wants to do at organization level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    /// users/me, organizations/me, listing users.
    ReadDirectory,
    /// Listing teams: always allowed to callers who may read some team; the
    /// service filters with [`can_read_team`].
    ListTeams,
    /// Listing API keys; the service filters with [`can_see_key`].
    ListKeys,
    /// Listing secrets across teams; the service filters teams with
    /// [`authorize_team`] and [`TeamAction::ReadSecrets`].
    ListSecrets,
    /// Creating org-wide keys (WORKSPACE_MANAGE_API_KEYS).
    ManageOrgKeys,
    /// Creating and deleting teams and users (org admins only).
    AdministerOrg,
    /// Creating one's own personal keys.
    ManageOwnKeys,
    /// Reading the organization's audit log (org admins only).
    ReadAudit,
    /// Finding an object of the caller's organization by id, before deciding
    /// what the caller may do with it (every key type: an unknown id is 404
    /// for everyone, and another organization's is indistinguishable from it).
    Lookup,
}

/// Permission to act on one team of the caller's organization, for the one
/// action `A` it was obtained for ([`authorize_team`]). The action is part of
/// the type, so a grant obtained to read a team is not accepted where the
/// store writes (its methods each name the grant of the action they
/// perform).
///
/// A grant also stands for the weaker actions its action implies in the
/// permission matrix, through `Deref`: a [`WriteSecrets`] grant is a
/// [`ReadSecrets`] grant wherever one is asked for. The chains are
/// `DeleteTeam → AdministerTeam → ManageHistory → WriteSecrets →
/// ReadSecrets`; [`ReadTeam`] and [`ManageTeamKeys`] imply nothing and are
/// implied by nothing (a WORKSPACE_READ_SECRETS key's delivery grant reads
/// secrets but may not see the team). `implications_hold_in_the_matrix`
/// checks every link against [`authorize_team`].
pub struct TeamAccess<A: TeamActionKind> {
    team: Arc<GrantedTeam>,
    implied: A::Implied,
}

/// The team a grant is for, shared by a grant and the weaker grants it
/// implies. No public constructor: it exists only inside grants.
#[derive(Debug)]
pub struct GrantedTeam {
    org_id: String,
    team_id: String,
    team_name: String,
}

impl<A: TeamActionKind> TeamAccess<A> {
    fn new(team: Arc<GrantedTeam>) -> Self {
        TeamAccess {
            implied: A::implied(&team),
            team,
        }
    }
    pub fn org_id(&self) -> &str {
        &self.team.org_id
    }
    pub fn team_id(&self) -> &str {
        &self.team.team_id
    }
    pub fn team_name(&self) -> &str {
        &self.team.team_name
    }
    /// The action this grant was obtained for.
    pub fn action(&self) -> TeamAction {
        A::ACTION
    }
}

/// `Self`'s grant stands for `B`'s: the action is `B` or implies it along
/// the chains above. For code generic over the action (`A: Implies<ReadSecrets>`
/// reads with any grant that allows reading).
pub trait Implies<B: TeamActionKind>: TeamActionKind {
    fn weaken(grant: &TeamAccess<Self>) -> &TeamAccess<B>;
}

impl<A: TeamActionKind> TeamAccess<A> {
    /// This grant as the grant of a weaker action it implies.
    pub fn as_grant<B: TeamActionKind>(&self) -> &TeamAccess<B>
    where
        A: Implies<B>,
    {
        A::weaken(self)
    }
}

/// `implies!(A: B, C)`: `A` implies `B` and `C` (each reached by deref).
macro_rules! implies {
    ($a:ident: $($b:ident),*) => {
        $(impl Implies<$b> for $a {
            fn weaken(grant: &TeamAccess<$a>) -> &TeamAccess<$b> {
                grant
            }
        })*
    };
}

implies!(ReadSecrets: ReadSecrets);
implies!(WriteSecrets: WriteSecrets, ReadSecrets);
implies!(ManageHistory: ManageHistory, WriteSecrets, ReadSecrets);
implies!(AdministerTeam: AdministerTeam, ManageHistory, WriteSecrets, ReadSecrets);
implies!(DeleteTeam: DeleteTeam, AdministerTeam, ManageHistory, WriteSecrets, ReadSecrets);
implies!(ReadTeam: ReadTeam);
implies!(ManageTeamKeys: ManageTeamKeys);

/// Any team grant, whatever its action: for what only names the team (an
/// audit event). The store's methods take [`TeamAccess`] of their action.
pub trait TeamGrant: Send + Sync {
    fn org_id(&self) -> &str;
    fn team_id(&self) -> &str;
    fn team_name(&self) -> &str;
    fn action(&self) -> TeamAction;
}

impl<A: TeamActionKind> TeamGrant for TeamAccess<A> {
    fn org_id(&self) -> &str {
        &self.team.org_id
    }
    fn team_id(&self) -> &str {
        &self.team.team_id
    }
    fn team_name(&self) -> &str {
        &self.team.team_name
    }
    fn action(&self) -> TeamAction {
        A::ACTION
    }
}

impl<A: TeamActionKind> Clone for TeamAccess<A> {
    fn clone(&self) -> Self {
        TeamAccess {
            team: Arc::clone(&self.team),
            implied: self.implied.clone(),
        }
    }
}

impl<A: TeamActionKind> std::fmt::Debug for TeamAccess<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamAccess")
            .field("action", &A::ACTION)
            .field("org_id", &self.team.org_id)
            .field("team_id", &self.team.team_id)
            .field("team_name", &self.team.team_name)
            .finish()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A [`TeamAction`] as a type, to name the grant of that action:
/// `TeamAccess<WriteSecrets>`. Sealed: the actions are the matrix's.
pub trait TeamActionKind: sealed::Sealed + Sized + 'static {
    const ACTION: TeamAction;
    /// The grant of the next weaker action this one implies (`()`: none).
    type Implied: Clone + Send + Sync;
    #[doc(hidden)]
    fn implied(team: &Arc<GrantedTeam>) -> Self::Implied;
}

/// Declares a team action's marker type; `=> Weaker` when the action implies
/// `Weaker` in the matrix (the grant then derefs to the weaker grant).
macro_rules! team_action {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
        impl sealed::Sealed for $name {}
        impl TeamActionKind for $name {
            const ACTION: TeamAction = TeamAction::$name;
            type Implied = ();
            fn implied(_: &Arc<GrantedTeam>) {}
        }
    };
    ($(#[$doc:meta])* $name:ident => $weaker:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
        impl sealed::Sealed for $name {}
        impl TeamActionKind for $name {
            const ACTION: TeamAction = TeamAction::$name;
            type Implied = TeamAccess<$weaker>;
            fn implied(team: &Arc<GrantedTeam>) -> TeamAccess<$weaker> {
                TeamAccess::new(Arc::clone(team))
            }
        }
        impl std::ops::Deref for TeamAccess<$name> {
            type Target = TeamAccess<$weaker>;
            fn deref(&self) -> &TeamAccess<$weaker> {
                &self.implied
            }
        }
    };
}

team_action!(
    /// [`TeamAction::ReadSecrets`] as a type: the store's secret reads.
    ReadSecrets
);
team_action!(
    /// [`TeamAction::WriteSecrets`] as a type: the store's secret writes.
    WriteSecrets => ReadSecrets
);
team_action!(
    /// [`TeamAction::ReadTeam`] as a type: the team and its members.
    ReadTeam
);
team_action!(
    /// [`TeamAction::ManageTeamKeys`] as a type.
    ManageTeamKeys
);
team_action!(
    /// [`TeamAction::ManageHistory`] as a type: destroying versions,
    /// undeleting and purging (restoring writes a version).
    ManageHistory => WriteSecrets
);
team_action!(
    /// [`TeamAction::AdministerTeam`] as a type: renaming the team, its
    /// members.
    AdministerTeam => ManageHistory
);
team_action!(
    /// [`TeamAction::DeleteTeam`] as a type.
    DeleteTeam => AdministerTeam
);

/// Permission to act on the caller's organization as a whole.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    org_id: String,
}

impl OrgAccess {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }
}

impl Principal {
    pub fn is_org_admin(&self) -> bool {
        self.key_type == KeyType::Personal
            && self.user.as_ref().is_some_and(|u| u.role == OrgRole::Admin)
    }

    fn team_role(&self, team_id: &str) -> Option<TeamRole> {
        self.memberships
            .iter()
            .find(|m| m.team_id == team_id)
            .map(|m| m.role)
    }

    /// Key types refused on every management route.
    fn is_limited(&self) -> bool {
        matches!(
            self.key_type,
            KeyType::WorkspaceInvoke
                | KeyType::WorkspaceExportMetrics
                | KeyType::Routes
                | KeyType::WorkspaceReadSecrets
        )
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.id.as_str())
    }
}

fn limited_key(p: &Principal) -> Denied {
    if p.key_type == KeyType::WorkspaceReadSecrets {
        return Denied::Forbidden(
            "WORKSPACE_READ_SECRETS keys may not use the management API; they read values through /runtime/v1".into(),
        );
    }
    Denied::Forbidden(format!(
        "{} keys may not use the management API",
        p.key_type
    ))
}

/// Permission to read the secrets of every team of the caller's
/// organization (org admins), so a listing needs no per-team decision.
#[derive(Debug, Clone)]
pub struct AllTeamsAccess {
    org_id: String,
}

impl AllTeamsAccess {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }
}

/// `Some` when the caller may read every team's secrets (org admins).
pub fn authorize_all_teams(p: &Principal) -> Option<AllTeamsAccess> {
    p.is_org_admin().then(|| AllTeamsAccess {
        org_id: p.org_id.clone(),
    })
}

/// Whether the caller may see this team (used to filter listings).
pub fn can_read_team(p: &Principal, team: &Team) -> bool {
    authorize_team::<ReadTeam>(p, team).is_ok()
}

/// Decides one team action, `A` (`authorize_team::<WriteSecrets>(p, &team)`),
/// and grants it. `team` must have been loaded by id; a team of another
/// organization is reported as not found.
pub fn authorize_team<A: TeamActionKind>(
    p: &Principal,
    team: &Team,
) -> Result<TeamAccess<A>, Denied> {
    decide_team(p, team, A::ACTION)?;
    Ok(TeamAccess::new(Arc::new(GrantedTeam {
        org_id: team.org_id.clone(),
        team_id: team.id.clone(),
        team_name: team.name.clone(),
    })))
}

/// The permission matrix for team actions.
fn decide_team(p: &Principal, team: &Team, action: TeamAction) -> Result<(), Denied> {
    if team.org_id != p.org_id {
        return Err(Denied::NotFound("team"));
    }
    if p.is_limited() {
        return Err(limited_key(p));
    }
    let allowed = match p.key_type {
        KeyType::Personal => {
            if p.is_org_admin() {
                true
            } else {
                match (action, p.team_role(&team.id)) {
                    (_, None) => false,
                    (
                        TeamAction::ReadSecrets | TeamAction::WriteSecrets | TeamAction::ReadTeam,
                        Some(_),
                    ) => true,
                    (
                        TeamAction::ManageTeamKeys
                        | TeamAction::AdministerTeam
                        | TeamAction::ManageHistory,
                        Some(role),
                    ) => role == TeamRole::Admin,
                    (TeamAction::DeleteTeam, Some(_)) => false,
                }
            }
        }
        KeyType::WorkspaceManageAll => {
            p.bound_team_id.as_deref() == Some(team.id.as_str())
                && !matches!(
                    action,
                    TeamAction::AdministerTeam | TeamAction::DeleteTeam | TeamAction::ManageHistory
                )
        }
        KeyType::WorkspaceManageApiKeys => {
            matches!(action, TeamAction::ReadTeam | TeamAction::ManageTeamKeys)
        }
        KeyType::WorkspaceInvoke
        | KeyType::WorkspaceExportMetrics
        | KeyType::Routes
        | KeyType::WorkspaceReadSecrets => false,
    };
    if !allowed {
        return Err(Denied::Forbidden(forbidden_message(p, action)));
    }
    Ok(())
}

fn forbidden_message(p: &Principal, action: TeamAction) -> String {
    let what = match action {
        TeamAction::ReadSecrets => "read this team's secrets",
        TeamAction::WriteSecrets => "change this team's secrets",
        TeamAction::ReadTeam => "see this team",
        TeamAction::ManageTeamKeys => "manage this team's API keys",
        TeamAction::AdministerTeam => "administer this team",
        TeamAction::DeleteTeam => "delete this team (org admins only)",
        TeamAction::ManageHistory => {
            "restore, destroy, undelete or purge this team's secrets (the team's admins and org admins only)"
        }
    };
    match p.key_type {
        KeyType::Personal => format!("this key's user may not {what}"),
        other => format!("a {other} key may not {what}"),
    }
}

/// Decides one organization-level action.
pub fn authorize_org(p: &Principal, action: OrgAction) -> Result<OrgAccess, Denied> {
    if action == OrgAction::Lookup {
        return Ok(OrgAccess {
            org_id: p.org_id.clone(),
        });
    }
    if p.is_limited() {
        return Err(limited_key(p));
    }
    let allowed = match action {
        OrgAction::ReadDirectory | OrgAction::ListTeams | OrgAction::ListKeys => true,
        OrgAction::ListSecrets => {
            matches!(p.key_type, KeyType::Personal | KeyType::WorkspaceManageAll)
        }
        OrgAction::ManageOrgKeys => {
            p.is_org_admin() || p.key_type == KeyType::WorkspaceManageApiKeys
        }
        OrgAction::AdministerOrg | OrgAction::ReadAudit => p.is_org_admin(),
        OrgAction::ManageOwnKeys => p.key_type == KeyType::Personal,
        OrgAction::Lookup => true,
    };
    if !allowed {
        let what = match action {
            OrgAction::ManageOrgKeys => "manage organization-wide API keys",
            OrgAction::ListSecrets => "read secrets",
            OrgAction::AdministerOrg => "administer the organization (org admins only)",
            OrgAction::ReadAudit => "read the organization's audit log (org admins only)",
            OrgAction::ManageOwnKeys => "create personal keys (only a user's personal key can)",
            _ => "do this",
        };
        return Err(Denied::Forbidden(format!(
            "a {} key may not {what}",
            p.key_type
        )));
    }
    Ok(OrgAccess {
        org_id: p.org_id.clone(),
    })
}

/// Where a key lives, for deciding who may see or revoke it.
#[derive(Debug, Clone, Copy)]
pub enum KeyScope<'a> {
    Personal { owner: &'a str },
    Team { team_id: &'a str },
    Org,
}

/// Whether the caller may see a key of its organization in listings.
pub fn can_see_key(p: &Principal, scope: KeyScope<'_>) -> bool {
    if p.is_limited() {
        return false;
    }
    match p.key_type {
        KeyType::WorkspaceManageApiKeys => true,
        KeyType::WorkspaceManageAll => {
            matches!(scope, KeyScope::Team { team_id } if p.bound_team_id.as_deref() == Some(team_id))
        }
        KeyType::Personal => {
            if p.is_org_admin() {
                return true;
            }
            match scope {
                KeyScope::Personal { owner } => p.user_id() == Some(owner),
                KeyScope::Team { team_id } => p.team_role(team_id) == Some(TeamRole::Admin),
                KeyScope::Org => false,
            }
        }
        _ => false,
    }
}

/// Whether the caller may create or revoke a key of `key_type` at `scope`.
///
/// The rule: no credential issues a credential with more power than its own.
/// Ordered by power within one organization: an org admin's personal key
/// (everything) above a team admin's personal key (its teams' secrets, keys
/// and members) above WORKSPACE_MANAGE_ALL (one team's secrets and workspace
/// keys); WORKSPACE_MANAGE_API_KEYS (every key's metadata, no secrets) issues
/// only its own kind and the three limited kinds, which can do nothing on
/// this server. WORKSPACE_READ_SECRETS keys are the exception to the rule's
/// shape: only people issue them, whatever a workspace key's power.
pub fn may_issue(p: &Principal, key_type: KeyType, scope: KeyScope<'_>) -> bool {
    if p.is_limited() {
        return false;
    }
    if p.is_org_admin() {
        return true;
    }
    let limited = matches!(
        key_type,
        KeyType::WorkspaceInvoke | KeyType::WorkspaceExportMetrics | KeyType::Routes
    );
    match (p.key_type, scope) {
        (KeyType::Personal, KeyScope::Personal { owner }) => p.user_id() == Some(owner),
        (KeyType::Personal, KeyScope::Team { team_id }) => {
            p.team_role(team_id) == Some(TeamRole::Admin)
        }
        (KeyType::WorkspaceManageAll, KeyScope::Team { team_id }) => {
            p.bound_team_id.as_deref() == Some(team_id)
                && (limited || key_type == KeyType::WorkspaceManageAll)
        }
        (KeyType::WorkspaceManageApiKeys, KeyScope::Org) => {
            key_type == KeyType::WorkspaceManageApiKeys
        }
        (KeyType::WorkspaceManageApiKeys, KeyScope::Team { .. }) => limited,
        _ => false,
    }
}

/// The team a route without `{team_id}` acts on: a team-bound key's own team,
/// otherwise the organization's default team (`None` here; the caller looks
/// it up).
pub fn implicit_team(p: &Principal) -> Option<&str> {
    if p.key_type.is_team_bound() {
        p.bound_team_id.as_deref()
    } else {
        None
    }
}

/// Permission to create or revoke one API key, and the scope its name must
/// be unique in.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    org_id: String,
    team_id: Option<String>,
    owner_id: Option<String>,
    name_scope: String,
}

impl KeyGrant {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }
    /// The team a team-bound key belongs to.
    pub fn team_id(&self) -> Option<&str> {
        self.team_id.as_deref()
    }
    /// The user a personal key belongs to.
    pub fn owner_id(&self) -> Option<&str> {
        self.owner_id.as_deref()
    }
    /// Key names are unique among live keys of this scope: per user for
    /// personal keys, per team for workspace keys, per organization for
    /// WORKSPACE_MANAGE_API_KEYS keys.
    pub fn name_scope(&self) -> &str {
        &self.name_scope
    }
}

/// Where a new key will live.
#[derive(Debug, Clone, Copy)]
pub enum KeyTarget<'a> {
    Personal { owner: &'a User },
    Team(&'a Team),
    Org,
}

fn grant_for(org_id: &str, scope: KeyScope<'_>) -> KeyGrant {
    let (team_id, owner_id, name_scope) = match scope {
        KeyScope::Personal { owner } => (None, Some(owner.to_owned()), format!("user:{owner}")),
        KeyScope::Team { team_id } => (Some(team_id.to_owned()), None, format!("team:{team_id}")),
        KeyScope::Org => (None, None, format!("org:{org_id}")),
    };
    KeyGrant {
        org_id: org_id.to_owned(),
        team_id,
        owner_id,
        name_scope,
    }
}

fn issue_denied(p: &Principal, key_type: KeyType, scope: KeyScope<'_>, verb: &str) -> Denied {
    let what = match (key_type, scope) {
        (KeyType::WorkspaceReadSecrets, _) => format!(
            "{verb} WORKSPACE_READ_SECRETS keys (only an org admin or the team's admin can, with a personal key)"
        ),
        (_, KeyScope::Personal { .. }) => {
            format!("{verb} personal keys of another user (org admins only)")
        }
        (_, KeyScope::Org) => format!("{verb} organization-wide API keys"),
        (t, KeyScope::Team { .. }) => format!("{verb} {t} keys for this team"),
    };
    Denied::Forbidden(match p.key_type {
        KeyType::Personal => format!("this key's user may not {what}"),
        other => format!("a {other} key may not {what}"),
    })
}

/// Decides whether the caller may create a key of `key_type` at `target`.
///
/// Personal keys are created by their owner, or minted by an org admin for
/// a user; nobody else can create a key that acts as another user.
pub fn authorize_new_key(
    p: &Principal,
    key_type: KeyType,
    target: KeyTarget<'_>,
) -> Result<KeyGrant, Denied> {
    // Another organization's objects are not found, whoever asks.
    match target {
        KeyTarget::Personal { owner } if owner.org_id != p.org_id => {
            return Err(Denied::NotFound("user"))
        }
        KeyTarget::Team(team) if team.org_id != p.org_id => return Err(Denied::NotFound("team")),
        _ => {}
    }
    if p.is_limited() {
        return Err(limited_key(p));
    }
    let scope = match target {
        KeyTarget::Personal { owner } => KeyScope::Personal { owner: &owner.id },
        KeyTarget::Team(team) => KeyScope::Team { team_id: &team.id },
        KeyTarget::Org => KeyScope::Org,
    };
    if !may_issue(p, key_type, scope) {
        return Err(issue_denied(p, key_type, scope, "create"));
    }
    Ok(grant_for(&p.org_id, scope))
}

/// Permission to revoke one key: names the key it covers.
#[derive(Debug, Clone)]
pub struct KeyRevocation {
    org_id: String,
    prefix: String,
}

impl KeyRevocation {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Decides whether the caller may revoke an existing key. Keys of other
/// organizations are reported as not found.
pub fn authorize_revocation(p: &Principal, key: &ApiKeyRecord) -> Result<KeyRevocation, Denied> {
    if key.org_id != p.org_id {
        return Err(Denied::NotFound("API key"));
    }
    if p.is_limited() {
        return Err(limited_key(p));
    }
    let scope = key_scope(key);
    if !may_issue(p, key.key_type, scope) {
        return Err(issue_denied(p, key.key_type, scope, "revoke"));
    }
    Ok(KeyRevocation {
        org_id: key.org_id.clone(),
        prefix: key.prefix.clone(),
    })
}

/// The scope of a stored key.
pub fn key_scope(key: &ApiKeyRecord) -> KeyScope<'_> {
    match (key.key_type, &key.user_id, &key.team_id) {
        (KeyType::Personal, Some(owner), _) => KeyScope::Personal { owner },
        (_, _, Some(team_id)) => KeyScope::Team { team_id },
        _ => KeyScope::Org,
    }
}

/// Permission to read values of one team through the runtime routes: a
/// WORKSPACE_READ_SECRETS key on its own team, possibly narrowed to some
/// names.
#[derive(Debug, Clone)]
pub struct DeliveryAccess {
    team: TeamAccess<ReadSecrets>,
    names: Option<Vec<String>>,
}

impl DeliveryAccess {
    pub fn team(&self) -> &TeamAccess<ReadSecrets> {
        &self.team
    }

    /// The canonical names the key is narrowed to, if it is.
    pub fn names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// Whether a secret of this canonical name is in the key's scope.
    pub fn allows(&self, canonical: &str) -> bool {
        self.names
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == canonical))
    }
}

/// Only WORKSPACE_READ_SECRETS keys read values, and only of their own team.
/// Every other key type, an org admin's included, is refused: values leave
/// the server through one audited kind of credential.
pub fn authorize_delivery(p: &Principal) -> Result<&str, Denied> {
    if p.key_type != KeyType::WorkspaceReadSecrets {
        return Err(Denied::Forbidden(format!(
            "only WORKSPACE_READ_SECRETS keys read secret values; a {} key may not",
            p.key_type
        )));
    }
    p.bound_team_id.as_deref().ok_or(Denied::NotFound("team"))
}

/// The grant for the team [`authorize_delivery`] named, once it is loaded.
pub fn delivery_access(p: &Principal, team: &Team) -> Result<DeliveryAccess, Denied> {
    let bound = authorize_delivery(p)?;
    if team.org_id != p.org_id || team.id != bound {
        return Err(Denied::NotFound("team"));
    }
    Ok(DeliveryAccess {
        team: TeamAccess::new(Arc::new(GrantedTeam {
            org_id: team.org_id.clone(),
            team_id: team.id.clone(),
            team_name: team.name.clone(),
        })),
        names: p.secret_names.clone(),
    })
}

// --- who answers for a key ----------------------------------------------------
//
// No key outlives the authority of the person who answers for it. A personal
// key acts as its owner, so its owner answers for it simply by being that
// user (it goes when the user is deleted). Every other key is answered for by
// the user who created it (through their personal key, or through a workspace
// key they created: `created_by` names the user either way), and only while
// that user could still issue it with their own personal key: by the issuing
// rule above ([`may_issue`]), an org admin for any key, a team admin for the
// keys of the teams they administer, and nobody else. A change that would
// take that away is refused unless it says what to do with such keys
// ([`KeyHandover`]).

/// The user who answers for a key: its creator, for every key type but
/// personal keys (whose owner answers for them by being that user).
pub fn answerer(key: &ApiKeyRecord) -> Option<&str> {
    match key.key_type {
        KeyType::Personal => None,
        _ => key.created_by.as_deref(),
    }
}

/// A person as the issuing rule sees them: their personal key's powers.
fn as_person(user: &User, memberships: &[Membership]) -> Principal {
    Principal {
        org_id: user.org_id.clone(),
        key_prefix: String::new(),
        key_type: KeyType::Personal,
        user: Some(user.clone()),
        memberships: memberships.to_vec(),
        bound_team_id: None,
        created_by: None,
        secret_names: None,
    }
}

/// Whether `user`, with `memberships`, may answer for `key`: whether their
/// own personal key could issue it.
pub fn may_answer_for(user: &User, memberships: &[Membership], key: &ApiKeyRecord) -> bool {
    user.org_id == key.org_id
        && may_issue(&as_person(user, memberships), key.key_type, key_scope(key))
}

/// A change that may take authority away from a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityChange<'a> {
    /// Adding to a team, or changing the role in it (a demotion from team
    /// admin takes authority away).
    SetTeamRole { team_id: &'a str, role: TeamRole },
    /// Removal from a team.
    LeaveTeam { team_id: &'a str },
    /// Deletion of the user.
    DeleteUser,
}

impl AuthorityChange<'_> {
    /// The memberships after the change; `None` when the user is gone.
    fn apply(&self, memberships: &[Membership]) -> Option<Vec<Membership>> {
        let others = |team: &str| {
            memberships
                .iter()
                .filter(|m| m.team_id != team)
                .cloned()
                .collect::<Vec<_>>()
        };
        match *self {
            AuthorityChange::SetTeamRole { team_id, role } => {
                let mut after = others(team_id);
                after.push(Membership {
                    team_id: team_id.to_owned(),
                    role,
                });
                Some(after)
            }
            AuthorityChange::LeaveTeam { team_id } => Some(others(team_id)),
            AuthorityChange::DeleteUser => None,
        }
    }
}

/// The keys among `keys` that `user` answers for and would no longer have
/// the authority to answer for after `change`.
pub fn keys_beyond_authority<'k>(
    user: &User,
    memberships: &[Membership],
    change: AuthorityChange<'_>,
    keys: &'k [ApiKeyRecord],
) -> Vec<&'k ApiKeyRecord> {
    let after = change.apply(memberships);
    keys.iter()
        .filter(|k| answerer(k) == Some(user.id.as_str()))
        .filter(|k| match &after {
            None => true,
            Some(after) => !may_answer_for(user, after, k),
        })
        .collect()
}

/// What a change that takes authority away does with the keys that would
/// outlive it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeyHandover {
    /// Refuse the change while there are any (the default: a person's
    /// automation does not stop, or go on, unnoticed).
    #[default]
    Refuse,
    /// Revoke them in the same transaction as the change.
    Revoke,
    /// Make this user (of the same organization, who may issue every one of
    /// them) answer for them.
    TransferTo(String),
}

#[cfg(test)]
mod answerer_tests {
    use super::*;

    fn user(id: &str, role: OrgRole) -> User {
        User {
            id: id.into(),
            org_id: "o".into(),
            email: None,
            name: None,
            role,
            created_at: 0,
        }
    }

    fn key(prefix: &str, key_type: KeyType, team: Option<&str>, by: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            prefix: prefix.into(),
            org_id: "o".into(),
            key_type,
            name: None,
            secret_hash: Vec::new(),
            user_id: (key_type == KeyType::Personal).then(|| by.to_owned()),
            team_id: team.map(str::to_owned),
            model_ids: None,
            secret_names: None,
            created_by: Some(by.into()),
            created_at: 0,
            last_used_at: None,
        }
    }

    fn admin_of(team: &str) -> Membership {
        Membership {
            team_id: team.into(),
            role: TeamRole::Admin,
        }
    }

    fn prefixes(keys: Vec<&ApiKeyRecord>) -> Vec<&str> {
        keys.iter().map(|k| k.prefix.as_str()).collect()
    }

    #[test]
    fn only_the_keys_whose_authority_goes_are_concerned() {
        let ana = user("ana", OrgRole::Member);
        let ms = vec![admin_of("t1"), admin_of("t2")];
        let keys = vec![
            key("read1", KeyType::WorkspaceReadSecrets, Some("t1"), "ana"),
            key("all2", KeyType::WorkspaceManageAll, Some("t2"), "ana"),
            key("own", KeyType::Personal, None, "ana"),
            key("bobs", KeyType::WorkspaceManageAll, Some("t1"), "bob"),
        ];
        let demote = AuthorityChange::SetTeamRole {
            team_id: "t1",
            role: TeamRole::Member,
        };
        assert_eq!(
            prefixes(keys_beyond_authority(&ana, &ms, demote, &keys)),
            ["read1"]
        );
        let leave = AuthorityChange::LeaveTeam { team_id: "t2" };
        assert_eq!(
            prefixes(keys_beyond_authority(&ana, &ms, leave, &keys)),
            ["all2"]
        );
        let gone = AuthorityChange::DeleteUser;
        assert_eq!(
            prefixes(keys_beyond_authority(&ana, &ms, gone, &keys)),
            ["read1", "all2"]
        );
        let promote = AuthorityChange::SetTeamRole {
            team_id: "t3",
            role: TeamRole::Admin,
        };
        assert!(keys_beyond_authority(&ana, &ms, promote, &keys).is_empty());
        // An org admin answers for any key whatever their team roles.
        let root = user("ana", OrgRole::Admin);
        assert!(keys_beyond_authority(&root, &ms, demote, &keys).is_empty());
    }

    #[test]
    fn a_successor_must_be_able_to_issue_the_key() {
        let k = key("read1", KeyType::WorkspaceReadSecrets, Some("t1"), "ana");
        let org_key = key("mak", KeyType::WorkspaceManageApiKeys, None, "ana");
        let bob = user("bob", OrgRole::Member);
        assert!(!may_answer_for(&bob, &[], &k));
        assert!(may_answer_for(&bob, &[admin_of("t1")], &k));
        assert!(!may_answer_for(&bob, &[admin_of("t1")], &org_key));
        assert!(may_answer_for(&user("root", OrgRole::Admin), &[], &org_key));
        let mut elsewhere = user("eve", OrgRole::Admin);
        elsewhere.org_id = "other".into();
        assert!(!may_answer_for(&elsewhere, &[], &k));
    }
}

#[cfg(test)]
mod grant_tests {
    use super::*;

    fn team(id: &str) -> Team {
        Team {
            id: id.into(),
            org_id: "o".into(),
            name: id.into(),
            is_default: false,
            created_at: 0,
        }
    }

    /// Every kind of caller the matrix distinguishes, on team `t`.
    fn callers() -> Vec<Principal> {
        let person = |role: OrgRole, team_role: Option<TeamRole>| Principal {
            org_id: "o".into(),
            key_prefix: "k".into(),
            key_type: KeyType::Personal,
            user: Some(User {
                id: "u".into(),
                org_id: "o".into(),
                email: None,
                name: None,
                role,
                created_at: 0,
            }),
            memberships: team_role
                .map(|role| Membership {
                    team_id: "t".into(),
                    role,
                })
                .into_iter()
                .collect(),
            bound_team_id: None,
            created_by: None,
            secret_names: None,
        };
        let key = |key_type: KeyType, bound: Option<&str>| Principal {
            org_id: "o".into(),
            key_prefix: "k".into(),
            key_type,
            user: None,
            memberships: vec![],
            bound_team_id: bound.map(str::to_owned),
            created_by: None,
            secret_names: None,
        };
        let mut all = vec![
            person(OrgRole::Admin, None),
            person(OrgRole::Member, None),
            person(OrgRole::Member, Some(TeamRole::Member)),
            person(OrgRole::Member, Some(TeamRole::Admin)),
        ];
        for key_type in [
            KeyType::WorkspaceManageAll,
            KeyType::WorkspaceManageApiKeys,
            KeyType::WorkspaceInvoke,
            KeyType::WorkspaceExportMetrics,
            KeyType::Routes,
            KeyType::WorkspaceReadSecrets,
        ] {
            all.push(key(key_type, Some("t")));
            all.push(key(key_type, Some("elsewhere")));
            all.push(key(key_type, None));
        }
        all
    }

    /// A grant derefs to the grant of a weaker action only where every
    /// caller allowed the stronger action is allowed the weaker one.
    #[test]
    fn implications_hold_in_the_matrix() {
        let links = [
            (TeamAction::WriteSecrets, TeamAction::ReadSecrets),
            (TeamAction::ManageHistory, TeamAction::WriteSecrets),
            (TeamAction::AdministerTeam, TeamAction::ManageHistory),
            (TeamAction::DeleteTeam, TeamAction::AdministerTeam),
        ];
        let t = team("t");
        for p in callers() {
            for (stronger, weaker) in links {
                if decide_team(&p, &t, stronger).is_ok() {
                    assert!(
                        decide_team(&p, &t, weaker).is_ok(),
                        "{:?} with {:?} may {stronger:?} but not {weaker:?}",
                        p.key_type,
                        p.memberships
                    );
                }
            }
        }
    }

    #[test]
    fn a_grant_records_its_action_and_team() {
        let admin = &callers()[0];
        let grant = authorize_team::<DeleteTeam>(admin, &team("t")).expect("org admin");
        assert_eq!(grant.action(), TeamAction::DeleteTeam);
        let read: &TeamAccess<ReadSecrets> = &grant;
        assert_eq!(read.action(), TeamAction::ReadSecrets);
        assert_eq!(read.team_id(), "t");
        let member = &callers()[2];
        assert!(authorize_team::<ReadSecrets>(member, &team("t")).is_ok());
        assert!(authorize_team::<ManageHistory>(member, &team("t")).is_err());
    }
}
