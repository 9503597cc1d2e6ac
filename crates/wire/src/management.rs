//! The management API's response bodies that are plain owned data, in the
//! shapes of the Baseten contract (the OpenAPI names in `schema(as)`). The
//! server writes them (`tessera_server::api::views` builds them from its
//! records); the admin CLI and the tests read them back with the same types.
//! Bodies borrowed from the store's records while they are written (secret
//! listings, history) or that carry the domain's enums (keys, members) stay
//! with the server; the clients read the ones they use through owned types
//! of the same shape at the end of this file.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What remains of a deleted secret: its name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = SecretTombstoneV1)]
pub struct SecretTombstoneView {
    /// The stored spelling of the deleted secret's name.
    pub name: String,
}

/// A team.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = TeamV1)]
pub struct TeamView {
    pub id: String,
    pub name: String,
    /// True for the organization's default team.
    pub default: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A list of teams.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = TeamsV1)]
pub struct TeamsView {
    pub teams: Vec<TeamView>,
}

/// A user of the organization.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = UserInfoV1)]
pub struct UserView {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The organization's name.
    pub workspace_name: Option<String>,
}

/// The caller's organization.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = OrganizationInfoV1)]
pub struct OrganizationView {
    pub org_id: String,
    pub name: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A newly created API key. The key is shown here once and never again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = APIKeyV1)]
pub struct NewApiKeyView {
    /// The full key, `<prefix>.<secret>`.
    pub api_key: String,
}

/// What remains of a revoked key: its prefix.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = APIKeyTombstoneV1)]
pub struct ApiKeyTombstoneView {
    pub prefix: String,
}

/// The user a personal key belongs to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = APIKeyOwnerV1)]
pub struct ApiKeyOwnerView {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Paging information.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = PaginationResponseV1)]
pub struct PaginationView {
    pub has_more: bool,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub cursor: Option<String>,
}

/// A page of users.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = UsersResponseV1)]
pub struct UsersView {
    pub items: Vec<UserView>,
    pub pagination: PaginationView,
}

/// Extension: what remains of a deleted team.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TeamTombstoneView {
    pub id: String,
    pub name: String,
    /// Secrets deleted with it (cascade only).
    pub deleted_secrets: i64,
}

/// Extension: what remains of a deleted user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserTombstoneView {
    pub user_id: String,
}

// The bodies below the server writes from borrowed records or with the
// domain's enums (`tessera_server::api::views`: `SecretView`,
// `ApiKeyInfoView`, `UserAdminView`, `MemberView`); these are the same
// shapes as owned data, for the admin CLI and the tests to read them. Roles
// and key types are their wire spellings. The HTTP tests read every such
// response through them, so a field the server renames fails there.

/// A secret's metadata (`SecretV1`), as a listing or a write answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SecretInfo {
    pub id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub name: String,
    pub team_name: String,
}

/// A list of secrets (`SecretsV1`).
#[derive(Debug, Clone, Deserialize)]
pub struct SecretList {
    pub secrets: Vec<SecretInfo>,
}

/// An API key's metadata (`APIKeyInfoV1`).
#[derive(Debug, Deserialize)]
pub struct ApiKeyInfo {
    pub prefix: String,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub key_type: String,
    #[serde(default)]
    pub model_ids: Option<Vec<String>>,
    #[serde(default)]
    pub secret_names: Option<Vec<String>>,
    pub team_name: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub last_used_at: Option<String>,
    #[serde(default)]
    pub owner: Option<ApiKeyOwnerView>,
    #[serde(default)]
    pub answered_by: Option<String>,
}

/// A list of API keys (`APIKeysV1`).
#[derive(Debug, Deserialize)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKeyInfo>,
}

/// Extension: a user with its organization role (`ADMIN` or `MEMBER`).
#[derive(Debug, Clone, Deserialize)]
pub struct UserAdminInfo {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Extension: a team member with its role in the team.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberInfo {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: String,
}

/// Extension: the members of a team.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberList {
    pub members: Vec<MemberInfo>,
}

/// Extension: what a removal from a team answers.
#[derive(Debug, Clone, Deserialize)]
pub struct MembershipTombstone {
    pub team_id: String,
    pub user_id: String,
}
