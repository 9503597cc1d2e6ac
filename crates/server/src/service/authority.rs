//! No key outlives the authority of the person who answers for it (see
//! `domain::access::keys_beyond_authority`): what a change that would take
//! such authority away (a demotion, a removal from a team, the deletion of a
//! user) answers, and what it clears on this node once done.

use super::identity::IdentityContext;
use super::{ConcernedKey, ServiceError, ServiceResult};
use crate::domain::access::KeyHandover;
use crate::domain::types::ApiKeyRecord;
use crate::store::AuthorityOutcome;

/// How a refusal tells the client what it may ask for instead: the API's
/// parameters (the CLI names its own flags, see `cli::admin`).
const ASK: &str = "say what to do with them: revoke_keys=true revokes them, \
     transfer_keys_to=<user_id> makes that user (who must be able to issue them) answer for them";

fn listed(keys: &[ApiKeyRecord]) -> (String, Vec<ConcernedKey>) {
    let text = keys
        .iter()
        .map(|k| {
            let team = k
                .team_id
                .as_deref()
                .map(|t| format!(", team {t}"))
                .unwrap_or_default();
            format!("{} ({}{team})", k.prefix, k.key_type)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let keys = keys
        .iter()
        .map(|k| ConcernedKey {
            prefix: k.prefix.clone(),
            key_type: k.key_type.to_string(),
            name: k.name.clone(),
            team_id: k.team_id.clone(),
        })
        .collect();
    (text, keys)
}

impl IdentityContext {
    /// The answer to an authority change: `Ok` when it was made (the keys it
    /// revoked are refused on this node from now on), or the refusal.
    /// `not_found` is what a missing user or membership is told.
    pub(crate) fn authority_changed(
        &self,
        outcome: AuthorityOutcome,
        not_found: &str,
    ) -> ServiceResult<()> {
        match outcome {
            AuthorityOutcome::Done { revoked, .. } => {
                self.identity_changed();
                for key in &revoked {
                    self.forget_usage(&key.prefix);
                }
                Ok(())
            }
            AuthorityOutcome::NotFound => Err(ServiceError::NotFound(not_found.to_owned())),
            AuthorityOutcome::KeysConcerned(keys) => {
                let (text, keys) = listed(&keys);
                Err(ServiceError::KeysConcerned {
                    message: format!(
                        "this change would take away the authority of the user who answers for \
                         {n} API key(s): {text}; no key outlives the authority of the person who \
                         answers for it, so {ASK}",
                        n = keys.len()
                    ),
                    keys,
                })
            }
            AuthorityOutcome::SuccessorMayNot(keys) => {
                let (text, keys) = listed(&keys);
                Err(ServiceError::KeysConcerned {
                    message: format!(
                        "the user named by transfer_keys_to may not issue {n} of the API keys \
                         concerned, so cannot answer for them: {text} (an org admin may answer \
                         for any key, a team admin for the team's keys)",
                        n = keys.len()
                    ),
                    keys,
                })
            }
            AuthorityOutcome::SuccessorNotFound => Err(ServiceError::NotFound(
                "transfer_keys_to: no such user in this organization".into(),
            )),
        }
    }
}

/// Refuses a handover to the very user whose authority goes.
pub(crate) fn check_handover(keys: &KeyHandover, user_id: &str) -> ServiceResult<()> {
    match keys {
        KeyHandover::TransferTo(to) if to == user_id => Err(ServiceError::Invalid(
            "transfer_keys_to names the user whose authority this change takes away; name another user".into(),
        )),
        _ => Ok(()),
    }
}
