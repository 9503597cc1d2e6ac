//! The workloads and the data they use, identical for every target.

use crate::config::Plan;
use serde::Serialize;
use std::time::Duration;

/// Names the upserts cycle over; also the size of the big team listed by
/// list-10k (it is loaded with exactly these names before the runs).
pub const NAMES: usize = 10_000;
/// Size of the small team listed by list-100.
pub const SMALL_TEAM_SIZE: usize = 100;
/// Secrets in Tessera's big team when its memory is read at the end.
pub const LARGE_STORE: usize = 100_000;
/// Connections used to load data sets (not a measured workload).
pub const LOAD_CONNECTIONS: usize = 64;
/// Long-poll waiters of propagate-1k (one node).
pub const WAITERS_1K: usize = 1_000;
/// Long-poll waiters on the second node in propagate-pg.
pub const WAITERS_PG: usize = 100;
/// The `wait` of every long poll, in seconds (the most the server allows).
pub const WAIT_SECONDS: u64 = 60;
/// The secret of the small team that the propagation workloads update.
pub const PROPAGATED: usize = 0;

/// Fixed width, so every request of a workload has the same size.
pub fn secret_name(i: usize) -> String {
    format!("bench-{i:06}")
}

/// The 100-byte value every upsert writes.
pub fn value() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..100)
        .map(|i| ALPHABET[(i * 7) % ALPHABET.len()] as char)
        .collect()
}

/// A 100-byte value that differs with `seed` (the propagation workloads
/// write a new one each round, so a waiter or the agent's file can only hold
/// it once the round's write reached it).
pub fn fresh_value(seed: u64) -> String {
    let head = format!("fresh-{seed:020}-");
    let mut v = head;
    v.push_str(&value()[v.len()..]);
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Workload {
    Upsert64,
    Upsert1,
    List100,
    List10k,
    Fetch100,
}

impl Workload {
    /// In the order each run measures them: the issue 5 workloads first, as
    /// they were before fetch-100 existed.
    pub const ALL: [Workload; 5] = [
        Workload::Upsert64,
        Workload::Upsert1,
        Workload::List100,
        Workload::List10k,
        Workload::Fetch100,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Upsert64 => "upsert-64",
            Workload::Upsert1 => "upsert-1",
            Workload::List100 => "list-100",
            Workload::List10k => "list-10k",
            Workload::Fetch100 => "fetch-100",
        }
    }

    /// What one counted unit is (the throughput column's heading).
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Fetch100 => "fetches/s",
            _ => "req/s",
        }
    }

    /// Why a target does not run this workload (None: it does).
    pub fn not_run_on(self, target: &str) -> Option<&'static str> {
        (self == Workload::Fetch100 && target == crate::targets::CEILING)
            .then_some("no equivalent (it stores no values to return)")
    }

    pub fn connections(self) -> usize {
        match self {
            Workload::Upsert64 | Workload::List100 | Workload::Fetch100 => 64,
            Workload::Upsert1 | Workload::List10k => 1,
        }
    }

    pub fn duration(self, plan: &Plan) -> Duration {
        match self {
            Workload::Upsert64 => plan.upsert_64,
            Workload::Upsert1 => plan.upsert_1,
            Workload::List100 => plan.list_100,
            Workload::List10k => plan.list_10k,
            Workload::Fetch100 => plan.fetch_100,
        }
    }

    pub fn describe(self, plan: &Plan) -> String {
        let what: String = match self {
            Workload::Upsert64 | Workload::Upsert1 => {
                "upserts of 100-byte values, names cycling over 10,000 in one team".into()
            }
            Workload::List100 => "lists of a team of 100 secrets".into(),
            Workload::List10k => "lists of a team of 10,000 secrets".into(),
            Workload::Fetch100 => "fetches of the values of a team of 100 secrets (Tessera: one \
                `GET /runtime/v1/secrets` with a WORKSPACE_READ_SECRETS key; OpenBao: 100 \
                sequential KV v2 `GET`s on one connection make one fetch; its fetches/s are its 200 `GET`s per \
                second / 100)"
                .into(),
        };
        format!(
            "{} connection(s), {:?} per run: {what}",
            self.connections(),
            self.duration(plan)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{fresh_value, value, Workload};

    #[test]
    fn fresh_values_are_100_bytes_and_differ() {
        assert_eq!(value().len(), 100);
        let (a, b) = (fresh_value(1), fresh_value(2));
        assert_eq!((a.len(), b.len()), (100, 100));
        assert_ne!(a, b);
        assert_ne!(a, value());
        assert_eq!(fresh_value(u64::MAX).len(), 100);
    }

    #[test]
    fn fetch_100_has_no_ceiling_equivalent() {
        assert!(Workload::Fetch100.not_run_on("ceiling").is_some());
        assert!(Workload::Fetch100.not_run_on("openbao").is_none());
        assert!(Workload::List100.not_run_on("ceiling").is_none());
    }
}
