//! The bodies of the history routes (extensions: versions, consumers,
//! restore, destroy, deleted secrets) and of the audit log, as the admin CLI
//! and the tests read them. The server writes the same shapes from its
//! records (`tessera_server::api::history_views` and `api::audit`); a test
//! there serializes each of its views, reads it back through these types and
//! writes it again, so a field renamed, added or dropped on one side fails.
//! Metadata only: no value and no fingerprint ever appears in these bodies.

use serde::{Deserialize, Serialize};

/// Who wrote a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The prefix of the API key that wrote it.
    pub key_prefix: Option<String>,
    /// The user behind that key.
    pub user_id: Option<String>,
}

/// A workload that received a version: its key and agent instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    pub key_prefix: String,
    /// The agent instance; empty when the client sent none.
    pub instance: String,
    /// `agent`, `supervisor`, `one-shot` or `unspecified`.
    pub kind: String,
    /// The client's address when it was last seen.
    pub client: Option<String>,
    /// The version of this secret it last received.
    pub version: i64,
    /// RFC 3339, UTC.
    pub received_at: String,
    /// RFC 3339, UTC.
    pub last_seen_at: String,
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: i64,
    /// RFC 3339, UTC: when this version was written.
    pub created_at: String,
    pub created_by: Actor,
    pub current: bool,
    /// Whether its value was destroyed.
    pub destroyed: bool,
    pub destroyed_at: Option<String>,
    /// The consumers whose last delivery of this secret was this version.
    pub consumers: Vec<ConsumerInfo>,
}

/// A secret's versions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersions {
    pub id: String,
    pub name: String,
    pub team_name: String,
    pub current_version: i64,
    pub versions: Vec<VersionInfo>,
}

/// How many consumers hold one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCount {
    pub version: i64,
    pub consumers: u64,
}

/// Who holds which version of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretConsumers {
    pub id: String,
    pub name: String,
    pub team_name: String,
    pub current_version: i64,
    /// In words, e.g. "3 consumers: 2 on version 7, 1 on version 6, last
    /// seen 4 s ago".
    pub summary: String,
    /// Newest version first.
    pub by_version: Vec<VersionCount>,
    pub consumers: Vec<ConsumerInfo>,
    /// Present when one-shot runs are listed: what they hold is a guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A secret after a restore or an undelete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersion {
    pub id: String,
    pub name: String,
    pub team_name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Its current version now.
    pub version: i64,
}

/// A destroyed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedVersion {
    pub name: String,
    pub version: i64,
    pub destroyed: bool,
    /// Present when one-shot runs recently received this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A deleted secret that can still be undeleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSecret {
    pub id: String,
    pub name: String,
    pub team_name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Its version when it was deleted.
    pub version: i64,
    /// RFC 3339, UTC.
    pub deleted_at: String,
    /// The prefix of the API key that deleted it.
    pub deleted_by: Option<String>,
    /// RFC 3339, UTC: when the purge job removes it for good.
    pub purge_after: String,
}

/// A team's deleted secrets, most recently deleted first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSecrets {
    pub deleted_secrets: Vec<DeletedSecret>,
}

/// A purged deleted secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgedSecret {
    pub id: String,
    pub name: String,
    pub purged: bool,
}

/// One event of the organization's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// RFC 3339, UTC.
    pub time: String,
    /// The event's place in the log: its chain and seq.
    pub chain: String,
    pub seq: u64,
    /// The prefix of the API key that acted.
    pub actor_key_prefix: Option<String>,
    pub actor_key_type: Option<String>,
    pub actor_user_id: Option<String>,
    pub team_id: Option<String>,
    /// What was done (an audit action's name).
    pub action: String,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    /// `ok` or `denied`.
    pub result: String,
    pub request_id: Option<String>,
    pub client: Option<String>,
    /// Details, as JSON text.
    pub detail: Option<String>,
    /// The event's chain MAC, hex.
    pub mac: String,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvents {
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}
