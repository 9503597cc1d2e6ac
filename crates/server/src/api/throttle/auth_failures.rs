//! Failed authentication, made visible and throttled per client address
//! (issue 9, finding 5).
//!
//! - Every failure counts in `tessera_auth_failures_total{reason}`.
//! - The log gets one line per client address per [`LOG_INTERVAL`] (the
//!   first failure at once, then a summary of what followed), and at most
//!   [`MAX_LINES_PER_INTERVAL`] such lines over all addresses; the rest are
//!   summed up in one line. No line holds any part of a key.
//! - Each address has a budget of failures (a token bucket,
//!   `--auth-failure-limit`, default 60/min); past it, failures are answered
//!   429 with `Retry-After`. Only failures are counted and only failures are
//!   refused: a request with a valid key is authenticated first and never
//!   touches the budget, and a key the server recognises but refuses (a
//!   revoked one) neither spends it nor is refused for it.
//! - Memory is bounded: at most [`MAX_TRACKED_ADDRESSES`] addresses are
//!   tracked; when full, addresses not tracked share one overflow entry.
//! - Each log line is also an audit event ([`AuthFailures::take_summaries`],
//!   written by the app's sweeper, never on the request's path), so the
//!   audit log gets at most [`MAX_LINES_PER_INTERVAL`] + 1 of them a minute
//!   however many requests fail.

use super::rate::{Rate, TokenBucket};
use crate::net::client_addr::limit_key;
use crate::service::auth::AuthFailure;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const LOG_INTERVAL: Duration = Duration::from_secs(60);
pub const MAX_LINES_PER_INTERVAL: u64 = 100;
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

struct Entry {
    bucket: Option<TokenBucket>,
    /// Failures by reason since the last log line.
    unlogged: [u64; AuthFailure::ALL.len()],
    last_line: Option<Instant>,
    last_seen: Instant,
}

impl Entry {
    fn new(budget: Option<Rate>, now: Instant) -> Self {
        Self {
            bucket: budget.map(|r| TokenBucket::full(r, now)),
            unlogged: [0; AuthFailure::ALL.len()],
            last_line: None,
            last_seen: now,
        }
    }

    fn unlogged_total(&self) -> u64 {
        self.unlogged.iter().sum()
    }

    /// `reason=count` pairs of what has not been logged yet, then reset.
    fn take_summary(&mut self) -> (u64, String) {
        let total = self.unlogged_total();
        let mut by_label: Vec<(&str, u64)> = Vec::new();
        for (i, n) in self.unlogged.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let label = AuthFailure::ALL[i].as_str();
            match by_label.iter_mut().find(|(l, _)| *l == label) {
                Some((_, c)) => *c += n,
                None => by_label.push((label, *n)),
            }
        }
        self.unlogged = [0; AuthFailure::ALL.len()];
        let reasons = by_label
            .iter()
            .map(|(l, n)| format!("{l}={n}"))
            .collect::<Vec<_>>()
            .join(",");
        (total, reasons)
    }

    fn idle(&self, budget: Option<Rate>, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) >= LOG_INTERVAL
            && self.unlogged_total() == 0
            && match (&self.bucket, budget) {
                (Some(b), Some(r)) => b.is_full(r, now),
                _ => true,
            }
    }
}

/// What one log line said: failures from one address (`None`: addresses
/// not tracked, or beyond the interval's line budget) since its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureSummary {
    pub client: Option<IpAddr>,
    pub failures: u64,
    /// `reason=count` pairs.
    pub reasons: String,
}

struct Inner {
    /// Summaries not yet handed to the audit log (at most one per line).
    summaries: Vec<FailureSummary>,
    by_addr: HashMap<IpAddr, Entry>,
    /// Addresses that found the map full, or requests without an address.
    overflow: Entry,
    /// The global log-line budget of the current interval.
    window_start: Instant,
    lines: u64,
    suppressed: u64,
    last_eviction: Option<Instant>,
}

pub struct AuthFailures {
    budget: Option<Rate>,
    inner: Mutex<Inner>,
}

impl AuthFailures {
    pub fn new(budget: Option<Rate>) -> Self {
        let now = Instant::now();
        Self {
            budget,
            inner: Mutex::new(Inner {
                summaries: Vec::new(),
                by_addr: HashMap::new(),
                overflow: Entry::new(budget, now),
                window_start: now,
                lines: 0,
                suppressed: 0,
                last_eviction: None,
            }),
        }
    }

    /// Records a failure from `client`; `Some(seconds)` when its address
    /// is over budget and the answer must be 429.
    pub fn record(&self, client: Option<IpAddr>, reason: AuthFailure) -> Option<u64> {
        metrics::counter!("tessera_auth_failures_total", "reason" => reason.as_str()).increment(1);
        let now = Instant::now();
        let budget = self.budget;
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.roll_window(now);
        let key = client.map(limit_key);
        if let Some(k) = key {
            if !inner.by_addr.contains_key(&k) && inner.by_addr.len() >= MAX_TRACKED_ADDRESSES {
                inner.evict(budget, now);
            }
        }
        let tracked = key.filter(|k| {
            inner.by_addr.contains_key(k) || inner.by_addr.len() < MAX_TRACKED_ADDRESSES
        });
        let entry = match tracked {
            Some(k) => inner
                .by_addr
                .entry(k)
                .or_insert_with(|| Entry::new(budget, now)),
            None => &mut inner.overflow,
        };
        entry.last_seen = now;
        let idx = AuthFailure::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        entry.unlogged[idx] += 1;
        let line = if entry
            .last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_INTERVAL)
        {
            entry.last_line = Some(now);
            Some(entry.take_summary())
        } else {
            None
        };
        // A credential the server recognises (a revoked key) is counted
        // and logged like any failure, but neither spends the address's
        // budget nor is refused for it: its client is told 401, and acts.
        let retry = match (&mut entry.bucket, budget) {
            (Some(bucket), Some(rate)) if !reason.recognised() => bucket.take(rate, now).err(),
            _ => None,
        };
        if let Some((failures, reasons)) = line {
            inner.log_line(tracked, failures, &reasons);
        }
        if retry.is_some() {
            metrics::counter!("tessera_rate_limited_total", "limit" => "auth_failures")
                .increment(1);
        }
        retry
    }

    /// The summaries logged since the last call, for the audit log.
    pub fn take_summaries(&self) -> Vec<FailureSummary> {
        let mut inner = self.inner.lock();
        std::mem::take(&mut inner.summaries)
    }

    /// Logs what has piled up since each address's last line and forgets
    /// addresses that have gone quiet. Runs periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let budget = self.budget;
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.roll_window(now);
        let mut lines = Vec::new();
        for (addr, entry) in inner.by_addr.iter_mut() {
            let due = entry
                .last_line
                .is_none_or(|t| now.saturating_duration_since(t) >= LOG_INTERVAL);
            if due && entry.unlogged_total() > 0 {
                entry.last_line = Some(now);
                let (n, reasons) = entry.take_summary();
                lines.push((Some(*addr), n, reasons));
            }
        }
        let o = &mut inner.overflow;
        if o.unlogged_total() > 0
            && o.last_line
                .is_none_or(|t| now.saturating_duration_since(t) >= LOG_INTERVAL)
        {
            o.last_line = Some(now);
            let (n, reasons) = o.take_summary();
            lines.push((None, n, reasons));
        }
        for (addr, n, reasons) in lines {
            inner.log_line(addr, n, &reasons);
        }
        inner.by_addr.retain(|_, e| !e.idle(budget, now));
    }
}

impl Inner {
    fn roll_window(&mut self, now: Instant) {
        if now.saturating_duration_since(self.window_start) < LOG_INTERVAL {
            return;
        }
        if self.suppressed > 0 {
            tracing::warn!(
                addresses = self.suppressed,
                "authentication failures from more addresses than the log shows \
                 (at most {MAX_LINES_PER_INTERVAL} lines a minute; see tessera_auth_failures_total)"
            );
            self.summaries.push(FailureSummary {
                client: None,
                failures: 0,
                reasons: format!("addresses_not_shown={}", self.suppressed),
            });
        }
        self.window_start = now;
        self.lines = 0;
        self.suppressed = 0;
    }

    fn log_line(&mut self, addr: Option<IpAddr>, failures: u64, reasons: &str) {
        if self.lines >= MAX_LINES_PER_INTERVAL {
            self.suppressed += 1;
            return;
        }
        self.lines += 1;
        self.summaries.push(FailureSummary {
            client: addr,
            failures,
            reasons: reasons.to_owned(),
        });
        let client = addr.map_or_else(|| "other".to_owned(), |a| a.to_string());
        tracing::warn!(
            %client,
            failures,
            %reasons,
            "authentication failed (one line per address per minute)"
        );
    }

    /// Makes room by forgetting idle addresses; at most once a second, so a
    /// flood of new addresses cannot make every request scan the map.
    fn evict(&mut self, budget: Option<Rate>, now: Instant) {
        if self
            .last_eviction
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_eviction = Some(now);
        self.by_addr.retain(|_, e| !e.idle(budget, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_budget_failures_are_throttled_per_address() {
        let f = AuthFailures::new(Some("3/min".parse().unwrap()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(f.record(Some(a), AuthFailure::UnknownKey), None);
        }
        let retry = f.record(Some(a), AuthFailure::WrongSecret).unwrap();
        assert!((1..=20).contains(&retry), "{retry}");
        assert_eq!(f.record(Some(b), AuthFailure::Missing), None);
        let off = AuthFailures::new(None);
        for _ in 0..100 {
            assert_eq!(off.record(Some(a), AuthFailure::Missing), None);
        }
    }

    #[test]
    fn recognised_keys_are_never_throttled_nor_spend_the_budget() {
        let f = AuthFailures::new(Some("2/min".parse().unwrap()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(f.record(Some(a), AuthFailure::RevokedKey), None);
        }
        assert_eq!(f.record(Some(a), AuthFailure::UnknownKey), None);
        assert_eq!(f.record(Some(a), AuthFailure::UnknownKey), None);
        assert!(f.record(Some(a), AuthFailure::UnknownKey).is_some());
        // Over budget for bad keys, the address's revoked key still is not.
        assert_eq!(f.record(Some(a), AuthFailure::RevokedKey), None);
    }

    #[test]
    fn the_map_is_bounded() {
        let f = AuthFailures::new(Some("1/h".parse().unwrap()));
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            f.record(Some(ip), AuthFailure::UnknownKey);
        }
        let inner = f.inner.lock();
        assert_eq!(inner.by_addr.len(), MAX_TRACKED_ADDRESSES);
        // The ten left over share the overflow entry: the first was logged
        // at once, nine wait for the next line.
        assert!(inner.overflow.last_line.is_some());
        assert_eq!(inner.overflow.unlogged_total(), 9);
    }
}
