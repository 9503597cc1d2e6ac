//! Authentication: from an `Authorization` header to a [`Principal`].

use super::cache::TtlCache;
use super::{Service, ServiceError, ServiceResult};
use crate::domain::access::Principal;
use crate::domain::key_token::PresentedToken;
use crate::domain::types::KeyType;
use std::sync::Arc;
use std::time::Duration;

/// How long a resolved key may be reused without asking the store again.
/// Another node's revocation is therefore seen within this time (the design
/// requires under one second); this node's own revocations apply at once.
pub const PRINCIPAL_TTL: Duration = Duration::from_millis(500);

/// A resolved key: the hash to verify the presented secret against, and
/// the principal it stands for.
pub struct ResolvedKey {
    secret_hash: Vec<u8>,
    principal: Arc<Principal>,
}

/// Resolved keys, so a busy client does not cost three reads per request.
pub type PrincipalCache = TtlCache<String, ResolvedKey>;

/// Splits `Bearer <key>` or `Api-Key <key>` (scheme case-insensitive).
fn token_from_header(header: Option<&str>) -> ServiceResult<&str> {
    let header = header.ok_or(ServiceError::Unauthorized(
        "missing Authorization header (expected 'Bearer <api key>' or 'Api-Key <api key>')",
    ))?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(ServiceError::Unauthorized(
            "malformed Authorization header (expected 'Bearer <api key>' or 'Api-Key <api key>')",
        ))?;
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("api-key")) {
        return Err(ServiceError::Unauthorized(
            "unsupported Authorization scheme (expected 'Bearer' or 'Api-Key')",
        ));
    }
    Ok(token.trim())
}

const INVALID_KEY: &str = "invalid or revoked API key";

impl Service {
    pub async fn authenticate(&self, header: Option<&str>) -> ServiceResult<Arc<Principal>> {
        let token = token_from_header(header)?;
        let presented =
            PresentedToken::parse(token).ok_or(ServiceError::Unauthorized(INVALID_KEY))?;
        if let Some(resolved) = self.auth_cache.get(presented.prefix) {
            return if presented.matches(&resolved.secret_hash) {
                self.usage
                    .record(presented.prefix, crate::domain::time::now_micros());
                Ok(resolved.principal.clone())
            } else {
                Err(ServiceError::Unauthorized(INVALID_KEY))
            };
        }
        let key = self
            .store
            .find_api_key(presented.prefix)
            .await?
            .ok_or(ServiceError::Unauthorized(INVALID_KEY))?;
        if !presented.matches(&key.secret_hash) {
            return Err(ServiceError::Unauthorized(INVALID_KEY));
        }
        let (user, memberships) = match (&key.key_type, &key.user_id) {
            (KeyType::Personal, Some(user_id)) => {
                let user = self
                    .store
                    .find_user(user_id)
                    .await?
                    .ok_or(ServiceError::Unauthorized(INVALID_KEY))?;
                let memberships = self.store.memberships(user_id).await?;
                (Some(user), memberships)
            }
            (KeyType::Personal, None) => return Err(ServiceError::Unauthorized(INVALID_KEY)),
            _ => (None, Vec::new()),
        };
        let principal = Arc::new(Principal {
            org_id: key.org_id.clone(),
            key_prefix: key.prefix.clone(),
            key_type: key.key_type,
            user,
            memberships,
            bound_team_id: key.team_id.clone(),
            created_by: key.created_by.clone(),
            secret_names: key.secret_names.clone(),
        });
        self.auth_cache.put(
            key.prefix.clone(),
            Arc::new(ResolvedKey {
                secret_hash: key.secret_hash.clone(),
                principal: principal.clone(),
            }),
        );
        self.usage
            .record(&key.prefix, crate::domain::time::now_micros());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_are_accepted() {
        assert_eq!(token_from_header(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(token_from_header(Some("Api-Key abc")).unwrap(), "abc");
        assert_eq!(token_from_header(Some("bearer  abc ")).unwrap(), "abc");
        assert!(token_from_header(Some("Basic abc")).is_err());
        assert!(token_from_header(Some("abc")).is_err());
        assert!(token_from_header(None).is_err());
    }
}
