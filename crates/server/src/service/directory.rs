//! Who am I, and which organization: `users/me`, `organizations/me`.

use super::{ServiceError, ServiceResult};
use crate::domain::access::{authorize_org, OrgAction, Principal};
use crate::domain::types::{Organization, User};
use crate::store::IdentityStore;
use std::sync::Arc;

/// The directory aggregate: reads of the caller's own user and organization.
/// Holds the store's identity side only; no cache, no setting.
pub struct Directory {
    store: Arc<dyn IdentityStore + Send + Sync>,
}

impl Directory {
    pub(crate) fn new(store: Arc<dyn IdentityStore + Send + Sync>) -> Self {
        Self { store }
    }

    /// The caller's user: a personal key's owner, or for workspace keys the
    /// user who created the key.
    pub async fn current_user(&self, p: &Principal) -> ServiceResult<User> {
        let org = authorize_org(p, OrgAction::ReadDirectory)?;
        if let Some(user) = &p.user {
            return Ok(user.clone());
        }
        let creator = p
            .created_by
            .as_deref()
            .ok_or_else(|| ServiceError::NotFound("this key is not tied to a user".into()))?;
        self.store.find_user(&org, creator).await?.ok_or_else(|| {
            ServiceError::NotFound("the user who created this key no longer exists".into())
        })
    }

    pub async fn current_organization(&self, p: &Principal) -> ServiceResult<Organization> {
        let org = authorize_org(p, OrgAction::ReadDirectory)?;
        Ok(self.store.organization(&org).await?)
    }
}
