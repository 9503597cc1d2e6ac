//! Per-key request rate limits: a token bucket per API key prefix, with a
//! rate per key type. Off unless configured (`--rate-limit`).

use super::rate::{Rate, TokenBucket};
use crate::domain::access::Principal;
use crate::domain::types::KeyType;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Instant;

/// `--rate-limit`: `TYPE=RATE` pairs separated by commas; `*` stands for
/// every type not listed. `off` (or empty): no limit.
/// Example: `PERSONAL=50/s,WORKSPACE_MANAGE_ALL=200/s,*=100/s`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateTable {
    by_type: HashMap<KeyType, Rate>,
    other: Option<Rate>,
}

impl FromStr for RateTable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut table = RateTable::default();
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("off") {
            return Ok(table);
        }
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (ty, rate) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected KEY_TYPE=RATE, e.g. PERSONAL=50/s"))?;
            let rate: Rate = rate.parse()?;
            match ty.trim() {
                "*" => table.other = Some(rate),
                name => {
                    let ty = KeyType::from_str(name).map_err(|()| {
                        let known: Vec<&str> = KeyType::ALL.iter().map(|t| t.as_str()).collect();
                        format!(
                            "`{name}` is not a key type (one of {}, or *)",
                            known.join(", ")
                        )
                    })?;
                    table.by_type.insert(ty, rate);
                }
            }
        }
        Ok(table)
    }
}

impl RateTable {
    pub fn is_off(&self) -> bool {
        self.by_type.is_empty() && self.other.is_none()
    }

    pub fn rate_for(&self, ty: KeyType) -> Option<Rate> {
        self.by_type.get(&ty).copied().or(self.other)
    }
}

pub struct KeyRates {
    table: RateTable,
    buckets: Mutex<HashMap<String, (Rate, TokenBucket)>>,
}

impl KeyRates {
    pub fn new(table: RateTable) -> Self {
        Self {
            table,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rate_for(&self, ty: KeyType) -> Option<Rate> {
        self.table.rate_for(ty)
    }

    /// `Err(seconds)` when the key has used up its rate.
    pub fn check(&self, p: &Principal) -> Result<(), u64> {
        let Some(rate) = self.table.rate_for(p.key_type) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let (_, bucket) = match buckets.get_mut(&p.key_prefix) {
            Some(entry) => entry,
            None => buckets
                .entry(p.key_prefix.clone())
                .or_insert_with(|| (rate, TokenBucket::full(rate, now))),
        };
        let result = bucket.take(rate, now);
        if result.is_err() {
            metrics::counter!("tessera_rate_limited_total", "limit" => "key", "key_type" => p.key_type.as_str())
                .increment(1);
        }
        result
    }

    /// Forgets buckets that have refilled (they would answer as a new one
    /// does), so memory follows the keys in use, not every key ever seen.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        buckets.retain(|_, (rate, bucket)| !bucket.is_full(*rate, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_parse() {
        let t: RateTable = "PERSONAL=50/s, WORKSPACE_MANAGE_ALL=200/s,*=10/min"
            .parse()
            .unwrap();
        assert_eq!(t.rate_for(KeyType::Personal).unwrap().count, 50);
        assert_eq!(t.rate_for(KeyType::WorkspaceManageAll).unwrap().count, 200);
        assert_eq!(t.rate_for(KeyType::Routes).unwrap().count, 10);
        assert!("off".parse::<RateTable>().unwrap().is_off());
        assert!("".parse::<RateTable>().unwrap().is_off());
        assert!("NOPE=1/s".parse::<RateTable>().is_err());
        assert!("PERSONAL".parse::<RateTable>().is_err());
        assert!("PERSONAL=fast".parse::<RateTable>().is_err());
    }

    #[test]
    fn by_default_only_read_keys_are_limited() {
        let t: RateTable = crate::api::throttle::DEFAULT_KEY_RATES.parse().unwrap();
        assert_eq!(
            t.rate_for(KeyType::WorkspaceReadSecrets),
            Some(Rate {
                count: 6000,
                per: std::time::Duration::from_secs(60)
            })
        );
        assert_eq!(t.rate_for(KeyType::Personal), None);
        assert_eq!(
            crate::api::throttle::ThrottleSettings::default().key_rates,
            t
        );
    }
}
