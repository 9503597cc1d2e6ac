//! API keys: create, list, revoke.

use super::audit::{event, Target};
use super::identity::IdentityContext;
use super::{Quotas, ServiceError, ServiceResult, TeamRef};
use crate::domain::access::{
    authorize_new_key, authorize_org, authorize_revocation, can_see_key, key_scope, KeyTarget,
    OrgAction, Principal,
};
use crate::domain::audit_action::AuditAction;
use crate::domain::key_token::NewKeyToken;
use crate::domain::secret_name::SecretName;
use crate::domain::time::now_micros;
use crate::domain::types::KeyType;
use crate::store::{IdentityStore, KeyListing, KeyStore, NewApiKey, StoreError, AUTHORITY_GONE};
use std::sync::Arc;

/// What a client asked for when creating a key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: Option<String>,
    pub key_type: KeyType,
    pub model_ids: Option<Vec<String>>,
    pub team_id: Option<String>,
    /// WORKSPACE_READ_SECRETS only: narrow the key to these secret names.
    pub secret_names: Option<Vec<String>>,
}

/// Filters of the key listing.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub key_type: Option<KeyType>,
    pub created_by_me: bool,
}

const MAX_KEY_NAME: usize = 128;

/// A key name, when given: trimmed, NFC, 1 to 128 characters, nothing
/// invisible (see `domain::names`).
fn check_key_name(name: Option<String>) -> ServiceResult<Option<String>> {
    name.map(|n| {
        crate::domain::names::display_name("key name", &n, MAX_KEY_NAME)
            .map_err(|e| ServiceError::Invalid(e.0))
    })
    .transpose()
}

/// The keys aggregate: creating, listing and revoking API keys. Holds the
/// store's key side, its identity side (to find the user a personal key is
/// minted for), the identity context (the addressed team, pending uses, the
/// caches a revocation clears) and the key quotas.
pub struct Keys {
    store: Arc<dyn KeyStore + Send + Sync>,
    users: Arc<dyn IdentityStore + Send + Sync>,
    identity: Arc<IdentityContext>,
    quotas: Quotas,
}

impl Keys {
    pub(crate) fn new(
        store: Arc<dyn KeyStore + Send + Sync>,
        users: Arc<dyn IdentityStore + Send + Sync>,
        identity: Arc<IdentityContext>,
        quotas: Quotas,
    ) -> Self {
        Self {
            store,
            users,
            identity,
            quotas,
        }
    }

    /// Creates a key; `url_team` is the `{team_id}` of the team-scoped route.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        url_team: Option<&str>,
        mut req: NewKey,
    ) -> ServiceResult<NewKeyToken> {
        let t = req.key_type;
        if req.model_ids.is_some() && !t.allows_model_ids() {
            return Err(ServiceError::Invalid(format!(
                "model_ids is only allowed for WORKSPACE_INVOKE and WORKSPACE_EXPORT_METRICS keys, not {t}"
            )));
        }
        if req.model_ids.as_ref().is_some_and(Vec::is_empty) {
            req.model_ids = None;
        }
        let secret_names = narrowing(t, req.secret_names.take())?;
        if !t.is_team_bound() {
            if req.team_id.is_some() {
                return Err(ServiceError::Invalid(format!(
                    "team_id is not allowed for {t} keys"
                )));
            }
            if url_team.is_some() {
                return Err(ServiceError::Invalid(format!(
                    "{t} keys are not bound to a team; create them with POST /v1/api_keys"
                )));
            }
        }
        if let (Some(body), Some(url)) = (&req.team_id, url_team) {
            if body != url {
                return Err(ServiceError::Invalid(
                    "team_id must match the team in the URL".into(),
                ));
            }
        }
        req.name = check_key_name(req.name)?;
        let owner;
        let team;
        let target = match t {
            KeyType::Personal => {
                owner = p.user.clone().ok_or_else(|| {
                    ServiceError::Forbidden(format!(
                        "a {} key has no user; only a user's personal key can create personal keys",
                        p.key_type
                    ))
                })?;
                KeyTarget::Personal { owner: &owner }
            }
            KeyType::WorkspaceManageApiKeys => KeyTarget::Org,
            _ => {
                let team_ref = match req.team_id.as_deref().or(url_team) {
                    Some(id) => TeamRef::Id(id),
                    None => TeamRef::Implicit,
                };
                team = self.identity.load_team(p, team_ref).await?;
                KeyTarget::Team(&team)
            }
        };
        let grant = authorize_new_key(p, t, target)?;
        self.insert_key(p, &grant, t, req.name, req.model_ids, secret_names)
            .await
    }

    /// An org admin mints a personal key for a user (so that user can start).
    pub async fn mint_personal_key(
        &self,
        p: &Principal,
        user_id: &str,
        name: Option<String>,
    ) -> ServiceResult<NewKeyToken> {
        let name = check_key_name(name)?;
        let org = authorize_org(p, OrgAction::Lookup)?;
        let user = self
            .users
            .find_user(&org, user_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("user not found".into()))?;
        let grant = authorize_new_key(p, KeyType::Personal, KeyTarget::Personal { owner: &user })?;
        self.insert_key(p, &grant, KeyType::Personal, name, None, None)
            .await
    }

    async fn insert_key(
        &self,
        p: &Principal,
        grant: &crate::domain::access::KeyGrant,
        key_type: KeyType,
        name: Option<String>,
        model_ids: Option<Vec<String>>,
        secret_names: Option<Vec<String>>,
    ) -> ServiceResult<NewKeyToken> {
        let token = NewKeyToken::generate();
        let record = NewApiKey {
            prefix: token.prefix.clone(),
            key_type,
            name,
            secret_hash: token.secret_hash.clone(),
            model_ids,
            secret_names,
            created_by: acting_user(p).map(str::to_owned),
            created_at: now_micros(),
        };
        let max = if grant.owner_id().is_some() {
            self.quotas.keys_per_user
        } else {
            self.quotas.keys_per_team
        };
        let detail = serde_json::json!({ "key_type": record.key_type.to_string() });
        let event = event(
            p,
            AuditAction::ApiKeyCreate,
            None,
            Target {
                id: Some(&record.prefix),
                name: record.name.as_deref(),
            },
            Some(detail.to_string()),
        );
        match self.store.insert_api_key(grant, record, max, event).await {
            Ok(_) => Ok(token),
            // The creator lost the role that allowed this key meanwhile.
            Err(StoreError::Conflict(m)) if m == AUTHORITY_GONE => Err(ServiceError::Forbidden(m)),
            // The issue asks for a 400 that says why: the name is taken.
            Err(StoreError::Conflict(m)) => Err(ServiceError::Invalid(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// Keys the caller may manage, newest last.
    pub async fn list_api_keys(
        &self,
        p: &Principal,
        filter: KeyFilter,
    ) -> ServiceResult<Vec<KeyListing>> {
        let org = authorize_org(p, OrgAction::ListKeys)?;
        let me = acting_user(p);
        let mut keys: Vec<KeyListing> = self
            .store
            .list_api_keys(&org)
            .await?
            .into_iter()
            .filter(|k| can_see_key(p, key_scope(&k.key)))
            .filter(|k| filter.key_type.is_none_or(|t| k.key.key_type == t))
            .filter(|k| {
                !filter.created_by_me || (me.is_some() && k.key.created_by.as_deref() == me)
            })
            .collect();
        for k in &mut keys {
            if let Some(at) = self.identity.pending_use(&k.key.prefix) {
                k.key.last_used_at = Some(k.key.last_used_at.unwrap_or(0).max(at));
            }
        }
        Ok(keys)
    }

    /// Revokes a key; it stops working on the next request on this node and
    /// within [`super::auth::PRINCIPAL_TTL`] on every other node.
    pub async fn revoke_api_key(&self, p: &Principal, prefix: &str) -> ServiceResult<String> {
        // Another organization's key and a key that does not exist answer
        // alike: the same status and the same message.
        let not_found = || ServiceError::NotFound(format!("no API key with prefix {prefix:?}"));
        let org = authorize_org(p, OrgAction::Lookup)?;
        let key = self
            .store
            .org_api_key(&org, prefix)
            .await?
            .ok_or_else(not_found)?;
        let grant = authorize_revocation(p, &key)?;
        let target = Target {
            id: Some(&key.prefix),
            name: key.name.as_deref(),
        };
        let event = event(p, AuditAction::ApiKeyRevoke, None, target, None);
        if !self.store.delete_api_key(&grant, event).await? {
            return Err(not_found());
        }
        self.identity.identity_changed();
        self.identity.forget_usage(prefix);
        Ok(key.prefix)
    }
}

/// Validates a WORKSPACE_READ_SECRETS key's `secret_names` into canonical
/// names; the field is refused on every other key type.
fn narrowing(t: KeyType, names: Option<Vec<String>>) -> ServiceResult<Option<Vec<String>>> {
    let Some(names) = names else { return Ok(None) };
    if t != KeyType::WorkspaceReadSecrets {
        return Err(ServiceError::Invalid(format!(
            "secret_names is only allowed for WORKSPACE_READ_SECRETS keys, not {t}"
        )));
    }
    if names.is_empty() {
        return Err(ServiceError::Invalid(
            "secret_names must not be empty; omit it to let the key read every secret of its team"
                .into(),
        ));
    }
    let mut canonical = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let name = SecretName::parse(n)
            .map_err(|e| ServiceError::Invalid(format!("secret_names[{i}]: {e}")))?;
        canonical.push(name.canonical().to_owned());
    }
    canonical.sort();
    canonical.dedup();
    Ok(Some(canonical))
}

/// The user on whose behalf the caller acts: a personal key's owner, or the
/// user who created a workspace key.
fn acting_user(p: &Principal) -> Option<&str> {
    p.user_id().or(p.created_by.as_deref())
}
