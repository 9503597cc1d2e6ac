//! The user directory, and users as an org admin manages them (extension).

use super::audit::{event, Target};
use super::identity::IdentityContext;
use super::{Quotas, ServiceError, ServiceResult};
use crate::domain::access::{authorize_org, KeyHandover, OrgAction, Principal};
use crate::domain::audit_action::AuditAction;
use crate::domain::ids::{is_base62, new_id};
use crate::domain::names;
use crate::domain::time::now_micros;
use crate::domain::types::{OrgRole, User};
use crate::store::{IdentityStore, NewUser, UserQuery};
use std::sync::Arc;

/// One page of users.
pub struct UserPage {
    pub users: Vec<User>,
    /// Pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

pub const MAX_PAGE: usize = 1000;
pub const DEFAULT_PAGE: usize = 100;

/// The users aggregate: the organization's directory of users, creating
/// and deleting them. Holds the store's identity side, the identity context
/// (a deletion takes authority away and clears its caches) and the users
/// quota.
pub struct Users {
    store: Arc<dyn IdentityStore + Send + Sync>,
    identity: Arc<IdentityContext>,
    quotas: Quotas,
}

/// A user of the caller's organization.
pub(super) async fn find_user(
    store: &(dyn IdentityStore + Send + Sync),
    p: &Principal,
    user_id: &str,
) -> ServiceResult<User> {
    let org = authorize_org(p, OrgAction::ReadDirectory)?;
    store
        .find_user(&org, user_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("user not found".into()))
}

impl Users {
    pub(crate) fn new(
        store: Arc<dyn IdentityStore + Send + Sync>,
        identity: Arc<IdentityContext>,
        quotas: Quotas,
    ) -> Self {
        Self {
            store,
            identity,
            quotas,
        }
    }

    pub async fn list_users(
        &self,
        p: &Principal,
        cursor: Option<String>,
        limit: usize,
        email: Option<String>,
    ) -> ServiceResult<UserPage> {
        let org = authorize_org(p, OrgAction::ReadDirectory)?;
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ServiceError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        if let Some(c) = &cursor {
            if c.is_empty() || !is_base62(c) {
                return Err(ServiceError::Invalid(
                    "cursor is not one this server issued".into(),
                ));
            }
        }
        let mut users = self
            .store
            .list_users(
                &org,
                UserQuery {
                    after: cursor,
                    limit: limit + 1,
                    // Emails match case-insensitively (see `domain::names`).
                    email_key: email.map(|e| names::email_key(e.trim())),
                },
            )
            .await?;
        let has_more = users.len() > limit;
        users.truncate(limit);
        let next_cursor = has_more
            .then(|| users.last().map(|u| u.id.clone()))
            .flatten();
        Ok(UserPage { users, next_cursor })
    }

    pub async fn get_user(&self, p: &Principal, user_id: &str) -> ServiceResult<User> {
        find_user(self.store.as_ref(), p, user_id).await
    }

    pub async fn create_user(
        &self,
        p: &Principal,
        email: String,
        name: Option<String>,
        role: OrgRole,
    ) -> ServiceResult<User> {
        let org = authorize_org(p, OrgAction::AdministerOrg)?;
        let email = names::email(&email).map_err(|e| ServiceError::Invalid(e.0))?;
        let name = name
            .map(|n| names::display_name("name", &n, 200))
            .transpose()
            .map_err(|e| ServiceError::Invalid(e.0))?;
        let user = NewUser {
            id: new_id(),
            email: Some(email),
            name,
            role,
            created_at: now_micros(),
        };
        let target = Target::of(&user.id, user.email.as_deref().unwrap_or_default());
        let event = event(p, AuditAction::UserCreate, None, target, None);
        let max = self.quotas.users_per_org;
        Ok(self.store.create_user(&org, user, max, event).await?)
    }

    /// Deletes a user (org admins). The keys it answers for are revoked or
    /// handed over as `keys` says; with [`KeyHandover::Refuse`] and such
    /// keys, the deletion is refused (409, listing them).
    pub async fn delete_user(
        &self,
        p: &Principal,
        user_id: &str,
        keys: KeyHandover,
    ) -> ServiceResult<User> {
        let org = authorize_org(p, OrgAction::AdministerOrg)?;
        if p.user_id() == Some(user_id) {
            return Err(ServiceError::Invalid(
                "you cannot delete your own user".into(),
            ));
        }
        super::authority::check_handover(&keys, user_id)?;
        let user = self.get_user(p, user_id).await?;
        let target = Target::of(&user.id, user.email.as_deref().unwrap_or_default());
        let event = event(p, AuditAction::UserDelete, None, target, None);
        let outcome = self.store.delete_user(&org, user_id, keys, event).await?;
        self.identity.authority_changed(outcome, "user not found")?;
        Ok(user)
    }
}
