//! Response and request bodies, in the shapes of the Baseten contract.
//! Descriptions are Tessera's own words.

use crate::domain::secret_value::SecretValue;
use crate::domain::time::rfc3339;
use crate::domain::types::{
    KeyType, ListedSecret, OrgRole, Organization, SecretRecord, Team, TeamRole, User,
};
use crate::store::KeyListing;
use serde::{Deserialize, Serialize};
// The owned response bodies are the wire's, so that the admin CLI and the
// tests read the same types the server writes.
pub use tessera_wire::management::{
    ApiKeyOwnerView, ApiKeyTombstoneView, NewApiKeyView, OrganizationView, PaginationView,
    SecretTombstoneView, TeamTombstoneView, TeamView, TeamsView, UserTombstoneView, UserView,
    UsersView,
};
use utoipa::ToSchema;

/// Metadata of a secret. The value is never returned. (Listings serialize
/// this type straight from the store's records, one page at a time.)
#[derive(Serialize, ToSchema)]
#[schema(as = SecretV1)]
pub struct SecretView<'a> {
    /// Opaque identifier; stays the same when the value changes.
    pub id: &'a str,
    /// When the secret was first created (RFC 3339, UTC).
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// The name, spelled as when the secret was created.
    pub name: &'a str,
    /// The team that owns the secret.
    pub team_name: &'a str,
}

impl<'a> From<&'a SecretRecord> for SecretView<'a> {
    fn from(s: &'a SecretRecord) -> Self {
        Self {
            id: &s.id,
            created_at: Timestamp(s.created_at),
            name: &s.name,
            team_name: &s.team_name,
        }
    }
}

impl<'a> From<&'a ListedSecret> for SecretView<'a> {
    fn from(s: &'a ListedSecret) -> Self {
        Self {
            id: &s.id,
            created_at: Timestamp(s.created_at),
            name: &s.name,
            team_name: &s.team_name,
        }
    }
}

/// A list of secrets (sent page by page; see `api/secrets.rs`).
#[derive(ToSchema)]
#[schema(as = SecretsV1)]
pub struct SecretsView<'a> {
    pub secrets: Vec<SecretView<'a>>,
}

/// Body of a secret upsert.
#[derive(Deserialize, ToSchema)]
#[schema(as = UpsertSecretRequestV1)]
pub struct UpsertSecretRequest {
    /// 1–253 characters of letters, digits, `.`, `_`, `-`; starts with a
    /// letter, digit or `_`. Names equal after mapping every non-alphanumeric
    /// character to `_` are the same secret.
    #[schema(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$")]
    pub name: String,
    /// The value (UTF-8, at most 64 KiB by default). Stored encrypted; never
    /// returned by this API.
    #[schema(value_type = String)]
    pub value: SecretValue,
    /// Extension (Tessera): destroy every previous version of this secret
    /// now, e.g. when rotating a leaked credential. Their metadata stays in
    /// the version listing; their values cannot be restored.
    #[serde(default)]
    #[schema(nullable = true)]
    pub destroy_previous: Option<bool>,
}

/// Extension: body of a team creation or rename.
#[derive(Deserialize, ToSchema)]
pub struct TeamNameRequest {
    /// 1 to 100 characters, unique in the organization.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
}

/// Extension: body of a user creation.
#[derive(Deserialize, ToSchema)]
pub struct CreateUserRequest {
    /// Unique in the organization.
    #[schema(pattern = "^[^@\\s]+@[^@\\s]+$", max_length = 254)]
    pub email: String,
    /// Display name, at most 200 characters.
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Organization role; default `MEMBER`.
    #[schema(value_type = Option<OrgRole>)]
    pub role: Option<String>,
}

/// Extension: body of a membership change.
#[derive(Deserialize, ToSchema)]
pub struct MembershipRequest {
    /// Team role; default `MEMBER`.
    #[schema(value_type = Option<TeamRole>)]
    pub role: Option<String>,
}

/// Extension: body of minting a personal key for a user.
#[derive(Deserialize, ToSchema)]
pub struct MintKeyRequest {
    /// Optional key name, unique among the user's live personal keys.
    #[schema(min_length = 1, max_length = 128)]
    pub name: Option<String>,
}

/// A team as the API shows it.
pub fn team_view(t: Team) -> TeamView {
    TeamView {
        id: t.id,
        name: t.name,
        default: t.is_default,
        created_at: rfc3339(t.created_at),
    }
}

/// A user as the API shows it, with its organization's name.
pub fn user_view(u: User, workspace_name: Option<String>) -> UserView {
    UserView {
        user_id: u.id,
        email: u.email,
        name: u.name,
        workspace_name,
    }
}

/// The caller's organization as the API shows it.
pub fn organization_view(o: Organization) -> OrganizationView {
    OrganizationView {
        org_id: o.id,
        name: Some(o.name),
        created_at: rfc3339(o.created_at),
    }
}

/// Metadata of an API key (never the key itself).
#[derive(Serialize, ToSchema)]
#[schema(as = APIKeyInfoV1)]
pub struct ApiKeyInfoView {
    /// The key's public prefix; revoke it with `DELETE /v1/api_keys/{prefix}`.
    pub prefix: String,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub key_type: KeyType,
    /// Present only for model-scoped keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_ids: Option<Vec<String>>,
    /// Extension: present only for WORKSPACE_READ_SECRETS keys narrowed to
    /// some secrets (their canonical names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_names: Option<Vec<String>>,
    pub team_name: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Last use, RFC 3339 UTC, or null when never used. Written in batches,
    /// so it may lag by about a second on other nodes.
    pub last_used_at: Option<String>,
    /// Personal keys only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<ApiKeyOwnerView>,
    /// Extension, every key type but personal keys: the id of the user who
    /// answers for the key (its creator, or whom it was handed over to); the
    /// key lives only as long as that user may issue it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
}

impl From<KeyListing> for ApiKeyInfoView {
    fn from(k: KeyListing) -> Self {
        let owner = match k.key.key_type {
            KeyType::Personal => k.owner.map(|u| ApiKeyOwnerView {
                user_id: u.id,
                email: u.email,
                name: u.name,
            }),
            _ => None,
        };
        let answered_by = crate::domain::access::answerer(&k.key).map(str::to_owned);
        Self {
            prefix: k.key.prefix,
            name: k.key.name,
            key_type: k.key.key_type,
            model_ids: k.key.model_ids,
            secret_names: k.key.secret_names,
            team_name: k.team_name,
            created_at: rfc3339(k.key.created_at),
            last_used_at: k.key.last_used_at.map(rfc3339),
            answered_by,
            owner,
        }
    }
}

/// A list of API keys.
#[derive(Serialize, ToSchema)]
#[schema(as = APIKeysV1)]
pub struct ApiKeysView {
    pub keys: Vec<ApiKeyInfoView>,
}

/// Body of a key creation.
#[derive(Deserialize, ToSchema)]
#[schema(as = CreateAPIKeyRequestV1)]
pub struct CreateApiKeyRequest {
    /// Optional; unique among live keys of the same scope.
    pub name: Option<String>,
    /// Read as text so an unknown type gets a message listing the known ones.
    #[schema(value_type = KeyType, required = true)]
    pub r#type: Option<String>,
    /// Only for WORKSPACE_INVOKE and WORKSPACE_EXPORT_METRICS keys.
    pub model_ids: Option<Vec<String>>,
    /// The team of a team-bound key; must match the URL's team when both are
    /// given; not allowed for PERSONAL and WORKSPACE_MANAGE_API_KEYS.
    pub team_id: Option<String>,
    /// Extension, WORKSPACE_READ_SECRETS only: the secret names (any
    /// spelling) the key may read; absent means every secret of its team.
    #[schema(min_items = 1)]
    pub secret_names: Option<Vec<String>>,
}

/// Extension: a user with its organization role.
#[derive(Serialize, ToSchema)]
pub struct UserAdminView {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: OrgRole,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<User> for UserAdminView {
    fn from(u: User) -> Self {
        Self {
            user_id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// Extension: a team member.
#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: TeamRole,
}

/// Extension: the members of a team.
#[derive(Serialize, ToSchema)]
pub struct MembersView {
    pub members: Vec<MemberView>,
}

/// An RFC 3339 timestamp written into the output without an intermediate string.
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(crate::domain::time::Rfc3339::new(self.0).as_str())
    }
}
