//! Authentication: from an `Authorization` header to a [`Principal`].

use super::cache::{HeapSize, TtlCache};
use super::identity::IdentityContext;
use super::{ServiceError, ServiceResult};
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

/// Resolved keys by key prefix, so a busy client does not cost three reads
/// per request.
///
/// Contract: this cache's TTL ([`PRINCIPAL_TTL`]) and its clearing on every
/// local identity change (`IdentityContext::identity_changed`) together *are* the
/// guarantee that a revoked key is refused on every node within one second:
/// this node at once, others once their entry is [`PRINCIPAL_TTL`] old.
/// Memory: the default budget of [`TtlCache::new`], weighed per entry by
/// its strings and memberships.
pub type PrincipalCache = TtlCache<String, ResolvedKey>;

impl HeapSize for ResolvedKey {
    fn heap_bytes(&self) -> usize {
        let p = &*self.principal;
        let user = p.user.as_ref().map_or(0, |u| {
            u.id.heap_bytes() + u.org_id.heap_bytes() + u.email.heap_bytes() + u.name.heap_bytes()
        });
        let memberships = p.memberships.capacity()
            * std::mem::size_of::<crate::domain::types::Membership>()
            + p.memberships
                .iter()
                .map(|m| m.team_id.heap_bytes())
                .sum::<usize>();
        self.secret_hash.capacity()
            + 16
            + std::mem::size_of::<Principal>()
            + p.org_id.heap_bytes()
            + p.key_prefix.heap_bytes()
            + user
            + memberships
            + p.bound_team_id.heap_bytes()
            + p.created_by.heap_bytes()
            + p.secret_names.heap_bytes()
    }
}

/// Why a presented credential was refused. The label goes into the
/// `tessera_auth_failures_total{reason}` metric and the log; neither ever
/// holds any part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `<scheme> <key>` (or not valid text).
    MalformedHeader,
    /// A scheme other than `Bearer` or `Api-Key`.
    UnsupportedScheme,
    /// A key that is not `<prefix>.<secret>` of the right lengths.
    MalformedKey,
    /// No key with this prefix (never issued, or revoked).
    UnknownKey,
    /// The prefix exists; the secret does not match.
    WrongSecret,
    /// A personal key whose user no longer exists.
    UnknownUser,
    /// A key the server issued and revoked (or deleted with its user or
    /// team): prefix and secret match what was revoked.
    RevokedKey,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 8] = [
        AuthFailure::Missing,
        AuthFailure::MalformedHeader,
        AuthFailure::UnsupportedScheme,
        AuthFailure::MalformedKey,
        AuthFailure::UnknownKey,
        AuthFailure::WrongSecret,
        AuthFailure::UnknownUser,
        AuthFailure::RevokedKey,
    ];

    /// The metric and log label.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::MalformedHeader
            | AuthFailure::UnsupportedScheme
            | AuthFailure::MalformedKey => "malformed",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::WrongSecret => "wrong_secret",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::RevokedKey => "revoked_key",
        }
    }

    /// Whether the credential is one the server issued (its secret matched
    /// a key it knows, live once or still): refused, but never counted
    /// against the client address's budget of bad credentials, so a
    /// workload whose key was revoked hears 401 (and can act on it) even
    /// while another client on its address sends bad keys.
    pub fn recognised(self) -> bool {
        matches!(self, AuthFailure::RevokedKey | AuthFailure::UnknownUser)
    }

    /// What the client is told (the same for an unknown key and a wrong
    /// secret, so the answer does not reveal which prefixes exist).
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => {
                "missing Authorization header (expected 'Bearer <api key>' or 'Api-Key <api key>')"
            }
            AuthFailure::MalformedHeader => {
                "malformed Authorization header (expected 'Bearer <api key>' or 'Api-Key <api key>')"
            }
            AuthFailure::UnsupportedScheme => {
                "unsupported Authorization scheme (expected 'Bearer' or 'Api-Key')"
            }
            AuthFailure::MalformedKey
            | AuthFailure::UnknownKey
            | AuthFailure::WrongSecret
            | AuthFailure::UnknownUser
            | AuthFailure::RevokedKey => INVALID_KEY,
        }
    }
}

/// A failed authentication: refused credentials, or a store that could not
/// answer.
#[derive(Debug)]
pub enum AuthError {
    Refused(AuthFailure),
    Service(ServiceError),
}

impl From<ServiceError> for AuthError {
    fn from(e: ServiceError) -> Self {
        AuthError::Service(e)
    }
}

impl From<crate::store::StoreError> for AuthError {
    fn from(e: crate::store::StoreError) -> Self {
        AuthError::Service(e.into())
    }
}

impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Refused(f) => ServiceError::Unauthorized(f.message()),
            AuthError::Service(e) => e,
        }
    }
}

/// Splits `Bearer <key>` or `Api-Key <key>` (scheme case-insensitive).
fn token_from_header(header: Option<&str>) -> Result<&str, AuthFailure> {
    let header = header.ok_or(AuthFailure::Missing)?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(AuthFailure::MalformedHeader)?;
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("api-key")) {
        return Err(AuthFailure::UnsupportedScheme);
    }
    Ok(token.trim())
}

const INVALID_KEY: &str = "invalid or revoked API key";

impl IdentityContext {
    /// Why a key without a live row is refused: revoked, when it is one the
    /// server revoked (same prefix, same secret), else unknown.
    async fn unknown_key(&self, presented: &PresentedToken<'_>) -> Result<AuthFailure, AuthError> {
        Ok(match self.keys.revoked_key_hash(presented.prefix).await? {
            Some(hash) if presented.matches(&hash) => AuthFailure::RevokedKey,
            _ => AuthFailure::UnknownKey,
        })
    }

    pub async fn authenticate(&self, header: Option<&str>) -> ServiceResult<Arc<Principal>> {
        Ok(self.authenticate_detailed(header).await?)
    }

    /// Like [`IdentityContext::authenticate`], saying why credentials were refused.
    pub async fn authenticate_detailed(
        &self,
        header: Option<&str>,
    ) -> Result<Arc<Principal>, AuthError> {
        use AuthError::Refused;
        let token = token_from_header(header).map_err(Refused)?;
        let presented = PresentedToken::parse(token).ok_or(Refused(AuthFailure::MalformedKey))?;
        if let Some(resolved) = self.principals.get(presented.prefix) {
            return if presented.matches(&resolved.secret_hash) {
                self.usage
                    .record(presented.prefix, crate::domain::time::now_micros());
                Ok(resolved.principal.clone())
            } else {
                Err(Refused(AuthFailure::WrongSecret))
            };
        }
        let Some(key) = self.keys.find_api_key(presented.prefix).await? else {
            return Err(Refused(self.unknown_key(&presented).await?));
        };
        if !presented.matches(&key.secret_hash) {
            return Err(Refused(AuthFailure::WrongSecret));
        }
        let (user, memberships) = match (&key.key_type, &key.user_id) {
            (KeyType::Personal, Some(user_id)) => {
                let user = self
                    .identities
                    .principal_user(user_id)
                    .await?
                    .ok_or(Refused(AuthFailure::UnknownUser))?;
                let memberships = self.identities.memberships(user_id).await?;
                (Some(user), memberships)
            }
            (KeyType::Personal, None) => return Err(Refused(AuthFailure::UnknownUser)),
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
        self.principals.put(
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
    use crate::service::cache::ManualClock;

    /// The revocation guarantee, as far as this cache holds it: a resolved
    /// key is used for less than a second, and not at all once cleared.
    #[test]
    fn a_resolved_key_lives_under_one_second() {
        assert!(PRINCIPAL_TTL < Duration::from_secs(1));
        let clock = Arc::new(ManualClock::default());
        let cache = PrincipalCache::new(PRINCIPAL_TTL).with_clock(clock.clone());
        let resolved = || {
            Arc::new(ResolvedKey {
                secret_hash: vec![1; 32],
                principal: Arc::new(Principal {
                    org_id: "org".into(),
                    key_prefix: "prefix".into(),
                    key_type: KeyType::WorkspaceReadSecrets,
                    user: None,
                    memberships: Vec::new(),
                    bound_team_id: Some("team".into()),
                    created_by: None,
                    secret_names: None,
                }),
            })
        };
        cache.put("prefix".into(), resolved());
        clock.advance(PRINCIPAL_TTL - Duration::from_millis(1));
        assert!(cache.get("prefix").is_some());
        clock.advance(Duration::from_millis(1));
        assert!(cache.get("prefix").is_none(), "used past its TTL");
        // A local revocation clears the cache: refused at once.
        cache.put("prefix".into(), resolved());
        cache.clear();
        assert!(cache.get("prefix").is_none());
        assert!(resolved().heap_bytes() > std::mem::size_of::<Principal>());
    }

    #[test]
    fn both_schemes_are_accepted() {
        assert_eq!(token_from_header(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(token_from_header(Some("Api-Key abc")).unwrap(), "abc");
        assert_eq!(token_from_header(Some("bearer  abc ")).unwrap(), "abc");
        assert_eq!(
            token_from_header(Some("Basic abc")),
            Err(AuthFailure::UnsupportedScheme)
        );
        assert_eq!(
            token_from_header(Some("abc")),
            Err(AuthFailure::MalformedHeader)
        );
        assert_eq!(token_from_header(None), Err(AuthFailure::Missing));
    }
}
