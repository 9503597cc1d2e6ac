//! Response and request bodies, in the shapes of the Baseten contract.
//! Descriptions are Tessera's own words.

use crate::domain::time::rfc3339;
use crate::domain::types::{Organization, SecretRecord, Team, User};
use serde::Serialize;
use utoipa::ToSchema;

/// Metadata of a secret. The value is never returned.
#[derive(Serialize, ToSchema)]
#[schema(as = SecretV1)]
pub struct SecretView {
    /// Opaque identifier; stays the same when the value changes.
    pub id: String,
    /// When the secret was first created (RFC 3339, UTC).
    pub created_at: String,
    /// The name, spelled as when the secret was created.
    pub name: String,
    /// The team that owns the secret.
    pub team_name: String,
}

impl From<SecretRecord> for SecretView {
    fn from(s: SecretRecord) -> Self {
        Self {
            id: s.id,
            created_at: rfc3339(s.created_at),
            name: s.name,
            team_name: s.team_name,
        }
    }
}

/// A list of secrets.
#[derive(Serialize, ToSchema)]
#[schema(as = SecretsV1)]
pub struct SecretsView {
    pub secrets: Vec<SecretView>,
}

/// What remains of a deleted secret: its name.
#[derive(Serialize, ToSchema)]
#[schema(as = SecretTombstoneV1)]
pub struct SecretTombstoneView {
    /// The stored spelling of the deleted secret's name.
    pub name: String,
}

/// Body of a secret upsert.
#[derive(ToSchema)]
#[schema(as = UpsertSecretRequestV1)]
#[allow(dead_code)]
pub struct UpsertSecretRequest {
    /// 1–253 characters of letters, digits, `.`, `_`, `-`; starts with a
    /// letter, digit or `_`. Names equal after mapping every non-alphanumeric
    /// character to `_` are the same secret.
    pub name: String,
    /// The value (UTF-8, at most 64 KiB by default). Stored encrypted; never
    /// returned by this API.
    pub value: String,
}

/// A team.
#[derive(Serialize, ToSchema)]
#[schema(as = TeamV1)]
pub struct TeamView {
    pub id: String,
    pub name: String,
    /// True for the organization's default team.
    pub default: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<Team> for TeamView {
    fn from(t: Team) -> Self {
        Self {
            id: t.id,
            name: t.name,
            default: t.is_default,
            created_at: rfc3339(t.created_at),
        }
    }
}

/// A list of teams.
#[derive(Serialize, ToSchema)]
#[schema(as = TeamsV1)]
pub struct TeamsView {
    pub teams: Vec<TeamView>,
}

/// A user of the organization.
#[derive(Serialize, ToSchema)]
#[schema(as = UserInfoV1)]
pub struct UserView {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The organization's name.
    pub workspace_name: Option<String>,
}

impl UserView {
    pub fn new(u: User, workspace_name: Option<String>) -> Self {
        Self {
            user_id: u.id,
            email: u.email,
            name: u.name,
            workspace_name,
        }
    }
}

/// The caller's organization.
#[derive(Serialize, ToSchema)]
#[schema(as = OrganizationInfoV1)]
pub struct OrganizationView {
    pub org_id: String,
    pub name: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<Organization> for OrganizationView {
    fn from(o: Organization) -> Self {
        Self {
            org_id: o.id,
            name: Some(o.name),
            created_at: rfc3339(o.created_at),
        }
    }
}
