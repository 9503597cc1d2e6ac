//! The limits and quotas a deployment may tune.

use super::{delivery_stream, history};

/// Limits a deployment may tune.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_value_bytes: usize,
    pub quotas: Quotas,
    pub history: history::Retention,
    /// Whether changes and reads are recorded in the audit log (off only to
    /// measure what it costs).
    pub audit_log: bool,
    /// How long audit events are kept before the prune job removes them
    /// (`None`: for ever).
    pub audit_retention: Option<std::time::Duration>,
    /// Ciphertext bytes per page of a streamed runtime answer (and the most
    /// a scope may hold to be answered whole); small only in tests.
    pub delivery_page_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: crate::domain::secret_value::DEFAULT_MAX_VALUE_BYTES,
            quotas: Quotas::default(),
            history: history::Retention::default(),
            audit_log: true,
            audit_retention: None,
            delivery_page_bytes: delivery_stream::PAGE_BYTES,
        }
    }
}

/// How many of each thing one team, organization or user may hold.
/// Creating one more answers 409 `QUOTA_EXCEEDED` naming the quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    pub secrets_per_team: i64,
    pub teams_per_org: i64,
    pub users_per_org: i64,
    /// Live personal keys per user.
    pub keys_per_user: i64,
    /// Live keys bound to one team; also the organization-wide
    /// (WORKSPACE_MANAGE_API_KEYS) keys of one organization.
    pub keys_per_team: i64,
    /// Bytes of one team's current values (the plaintext lengths of every
    /// secret's current version): what one full fetch of the team returns.
    /// A write that would grow them past it is refused; one that keeps or
    /// shrinks them is not, so a team over a lowered quota can shrink.
    pub value_bytes_per_team: i64,
}

/// The default [`Quotas::value_bytes_per_team`]: 64 MiB.
pub const DEFAULT_VALUE_BYTES_PER_TEAM: i64 = 64 << 20;

impl Default for Quotas {
    fn default() -> Self {
        Self {
            secrets_per_team: 10_000,
            teams_per_org: 1_000,
            users_per_org: 10_000,
            keys_per_user: 100,
            keys_per_team: 1_000,
            value_bytes_per_team: DEFAULT_VALUE_BYTES_PER_TEAM,
        }
    }
}
