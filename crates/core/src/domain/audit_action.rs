//! The audit log's vocabulary: every action an event can record.
//!
//! One list, used by the code that records events (`service/`), by the
//! `action` filter of `GET /v1/audit_events` (which refuses a name not in
//! it) and by `/openapi.json` (whose `action` schema is generated from it),
//! so the names clients read about are the names the log holds.

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What an audit event records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action, in the order of the list above.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The name stored in the log and used by filters.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    /// A secret's value was written (created or updated).
    SecretWrite => "secret.write",
    /// An earlier version's value became current, as a new version.
    SecretVersionRestore => "secret.version.restore",
    /// An earlier version's value was destroyed.
    SecretVersionDestroy => "secret.version.destroy",
    /// A secret was deleted (it can be undeleted for a while).
    SecretDelete => "secret.delete",
    /// A deleted secret came back.
    SecretUndelete => "secret.undelete",
    /// A deleted secret was purged for good (the detail's `reason` says
    /// why: requested by a person, expired, pushed out of a full deleted
    /// list, deleted with nothing kept, or its team deleted).
    SecretPurge => "secret.purge",
    /// The purge job's count of expired secrets; recorded only by versions
    /// before every purge became a `secret.purge` of its own, and kept so
    /// that older logs can still be filtered on it.
    SecretsPurgeExpired => "secrets.purge_expired",
    /// A workload read values through the runtime API.
    SecretsRead => "secrets.read",
    /// A team was created.
    TeamCreate => "team.create",
    /// A team was renamed.
    TeamRename => "team.rename",
    /// A team was deleted.
    TeamDelete => "team.delete",
    /// A user joined a team or had their role in it changed.
    MemberSet => "member.set",
    /// A user left a team.
    MemberRemove => "member.remove",
    /// A user was created.
    UserCreate => "user.create",
    /// A user was deleted.
    UserDelete => "user.delete",
    /// An API key was created.
    ApiKeyCreate => "api_key.create",
    /// An API key was revoked.
    ApiKeyRevoke => "api_key.revoke",
    /// A key answered for by one person is handed over to another (a change
    /// took the first one's authority away).
    ApiKeyHandover => "api_key.handover",
    /// An organization was created.
    OrganizationCreate => "organization.create",
    /// Failed authentications from one client address, summed up.
    AuthFailed => "auth.failed",
    /// The retention job pruned old audit events behind a checkpoint.
    AuditPrune => "audit.prune",
}

impl AuditAction {
    /// The action named `name` (exactly as stored), if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == name)
    }

    /// Every name, comma-separated (for messages and descriptions).
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_round_trip() {
        let names: HashSet<_> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), AuditAction::ALL.len());
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::from_name(a.as_str()), Some(*a));
        }
        assert_eq!(AuditAction::from_name("secret.upsert"), None);
    }
}
