//! Throttling at the API edge: failed authentication per client address,
//! and request rates per API key.

pub mod args;
pub mod auth_failures;
pub mod key_rates;
pub mod rate;

use super::error::{ApiError, ErrorCode};
use crate::domain::access::Principal;
use crate::service::auth::AuthFailure;
pub use key_rates::RateTable;
pub use rate::Rate;
use std::net::IpAddr;

/// What `serve`'s flags set.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failed authentications an address may make (burst and rate);
    /// `None`: never throttled.
    pub auth_failure_budget: Option<Rate>,
    /// Request rates per key type; empty: no limit.
    pub key_rates: RateTable,
}

pub const DEFAULT_AUTH_FAILURE_BUDGET: &str = "60/min";

/// The default `--rate-limit`: read keys only, at a rate no real fleet
/// reaches (a long poll that waits does not count, so an agent spends one
/// token per change it receives and one at start; a fleet of 6,000 that
/// restarts at once, or 100 restarts a second, fits), while one key can no
/// longer read at full speed for ever.
pub const DEFAULT_KEY_RATES: &str = "WORKSPACE_READ_SECRETS=6000/min";

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            auth_failure_budget: DEFAULT_AUTH_FAILURE_BUDGET.parse().ok(),
            key_rates: DEFAULT_KEY_RATES.parse().unwrap_or_default(),
        }
    }
}

pub struct Throttles {
    auth_failures: auth_failures::AuthFailures,
    key_rates: key_rates::KeyRates,
}

impl Throttles {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            auth_failures: auth_failures::AuthFailures::new(settings.auth_failure_budget),
            key_rates: key_rates::KeyRates::new(settings.key_rates),
        }
    }

    /// The answer to refused credentials: 401, or 429 once the client's
    /// address has used up its failure budget. A credential the server
    /// recognises (a revoked key) is always 401: it is counted and logged,
    /// but neither spends nor is refused for the address's budget.
    pub fn auth_failed(&self, client: Option<IpAddr>, reason: AuthFailure) -> ApiError {
        match self.auth_failures.record(client, reason) {
            None => ApiError::new(ErrorCode::Unauthorized, reason.message()),
            Some(secs) => rate_limited(
                "too many failed authentication attempts from this address",
                secs,
            ),
        }
    }

    /// 429 when the caller's key has used up its request rate.
    pub fn check_key(&self, p: &Principal) -> Result<(), ApiError> {
        self.key_rates
            .check(p)
            .map_err(|secs| self.key_limited(p, secs))
    }

    /// Spends one of the key's tokens: `Err(seconds until one is back)`.
    pub fn take_key_token(&self, p: &Principal) -> Result<(), u64> {
        self.key_rates.check(p)
    }

    /// The 429 of a key that has used up its rate.
    pub fn key_limited(&self, p: &Principal, retry_after: u64) -> ApiError {
        let rate = self
            .key_rates
            .rate_for(p.key_type)
            .map_or_else(String::new, |r| format!(" ({r} for {} keys", p.key_type));
        let why = if rate.is_empty() {
            String::new()
        } else if p.key_type == crate::domain::types::KeyType::WorkspaceReadSecrets {
            format!("{rate}; long polls that wait do not count)")
        } else {
            format!("{rate})")
        };
        rate_limited(
            &format!("request rate limit of this API key exceeded{why}; retry in {retry_after} s"),
            retry_after,
        )
    }

    /// Periodic upkeep: pending log lines, forgetting idle state.
    pub fn sweep(&self) {
        self.auth_failures.sweep();
        self.key_rates.sweep();
    }

    /// Failed-authentication summaries logged since the last call.
    pub fn take_auth_failure_summaries(&self) -> Vec<auth_failures::FailureSummary> {
        self.auth_failures.take_summaries()
    }
}

fn rate_limited(message: &str, retry_after: u64) -> ApiError {
    let mut e = ApiError::new(ErrorCode::RateLimited, message);
    e.retry_after = Some(retry_after);
    e
}
