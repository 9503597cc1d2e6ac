//! Records shared by the service and store layers.

use super::time::Micros;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an API key may be used for. Spelled as Baseten spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyType {
    Personal,
    Routes,
    WorkspaceManageAll,
    WorkspaceExportMetrics,
    WorkspaceInvoke,
    WorkspaceManageApiKeys,
    /// Tessera's own: reads values through the runtime routes, nothing else.
    WorkspaceReadSecrets,
}

impl KeyType {
    pub const ALL: [KeyType; 7] = [
        KeyType::Personal,
        KeyType::Routes,
        KeyType::WorkspaceManageAll,
        KeyType::WorkspaceExportMetrics,
        KeyType::WorkspaceInvoke,
        KeyType::WorkspaceManageApiKeys,
        KeyType::WorkspaceReadSecrets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Personal => "PERSONAL",
            KeyType::Routes => "ROUTES",
            KeyType::WorkspaceManageAll => "WORKSPACE_MANAGE_ALL",
            KeyType::WorkspaceExportMetrics => "WORKSPACE_EXPORT_METRICS",
            KeyType::WorkspaceInvoke => "WORKSPACE_INVOKE",
            KeyType::WorkspaceManageApiKeys => "WORKSPACE_MANAGE_API_KEYS",
            KeyType::WorkspaceReadSecrets => "WORKSPACE_READ_SECRETS",
        }
    }

    /// Keys bound to one team (as opposed to a user or the whole organization).
    pub fn is_team_bound(self) -> bool {
        !matches!(self, KeyType::Personal | KeyType::WorkspaceManageApiKeys)
    }

    /// Keys that may carry a `model_ids` scope.
    pub fn allows_model_ids(self) -> bool {
        matches!(
            self,
            KeyType::WorkspaceInvoke | KeyType::WorkspaceExportMetrics
        )
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        KeyType::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// A user's role in the organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrgRole {
    Admin,
    Member,
}

/// A user's role in one team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TeamRole {
    Admin,
    Member,
}

macro_rules! role_strings {
    ($t:ty) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self {
                    Self::Admin => "ADMIN",
                    Self::Member => "MEMBER",
                }
            }
        }
        impl FromStr for $t {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s {
                    "ADMIN" => Ok(Self::Admin),
                    "MEMBER" => Ok(Self::Member),
                    _ => Err(()),
                }
            }
        }
    };
}
role_strings!(OrgRole);
role_strings!(TeamRole);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: Micros,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub is_default: bool,
    pub created_at: Micros,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: OrgRole,
    pub created_at: Micros,
}

/// A user's membership of one team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub team_id: String,
    pub role: TeamRole,
}

/// An API key as stored: only the hash of its secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub prefix: String,
    pub org_id: String,
    pub key_type: KeyType,
    pub name: Option<String>,
    pub secret_hash: Vec<u8>,
    /// Owner of a personal key.
    pub user_id: Option<String>,
    /// Team of a team-bound key.
    pub team_id: Option<String>,
    pub model_ids: Option<Vec<String>>,
    /// WORKSPACE_READ_SECRETS keys only: the canonical names the key may
    /// read; `None` means every secret of its team.
    pub secret_names: Option<Vec<String>>,
    /// The user whose key created this one, when known.
    pub created_by: Option<String>,
    pub created_at: Micros,
    pub last_used_at: Option<Micros>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("prefix", &self.prefix)
            .field("key_type", &self.key_type)
            .field("secret_hash", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Secret metadata (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub id: String,
    pub org_id: String,
    pub team_id: String,
    pub team_name: String,
    pub name: String,
    pub canonical_name: String,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub version: i64,
}

/// What a listing shows of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSecret {
    pub team_id: String,
    pub team_name: String,
    pub id: String,
    pub name: String,
    pub canonical_name: String,
    pub created_at: Micros,
    pub version: i64,
}

/// A master key known to the database: its id and a check value sealed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekRecord {
    pub kek_id: String,
    pub check_value: Vec<u8>,
    pub created_at: Micros,
}
