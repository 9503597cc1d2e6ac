//! The `serve` flags of the API's throttles, each with its `TESSERA_*`
//! environment equivalent. Flattened into `serve` right after the network
//! layer's flags, where they were listed before the crates were split.

use super::{Rate, RateTable, ThrottleSettings};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ThrottleArgs {
    /// Request rate per API key, by key type: `TYPE=RATE,...` with RATE as
    /// N/s, N/min or N/h, `*` for every other type, e.g.
    /// `PERSONAL=50/s,*=200/s`; `off` for none. The default limits read
    /// keys only (a long poll that waits does not count); a table given
    /// here replaces it.
    #[arg(long, env = "TESSERA_RATE_LIMIT", default_value = super::DEFAULT_KEY_RATES, value_parser = parse_rate_table)]
    pub rate_limit: RateTable,

    /// Failed authentications allowed per client address (N/s, N/min or
    /// N/h; also the burst) before they are answered 429; `off` to never
    /// throttle. Valid keys are never throttled by it.
    #[arg(long, env = "TESSERA_AUTH_FAILURE_LIMIT", default_value = super::DEFAULT_AUTH_FAILURE_BUDGET, value_parser = parse_budget)]
    pub auth_failure_limit: FailureBudget,
}

impl ThrottleArgs {
    pub fn throttle_settings(&self) -> ThrottleSettings {
        ThrottleSettings {
            auth_failure_budget: self.auth_failure_limit.0,
            key_rates: self.rate_limit.clone(),
        }
    }
}

fn parse_rate_table(s: &str) -> Result<RateTable, String> {
    s.parse()
}

/// A rate, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct FailureBudget(pub Option<Rate>);

fn parse_budget(s: &str) -> Result<FailureBudget, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        Ok(FailureBudget(None))
    } else {
        s.parse().map(|r| FailureBudget(Some(r)))
    }
}
