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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Workload {
    Upsert64,
    Upsert1,
    List100,
    List10k,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Upsert64,
        Workload::Upsert1,
        Workload::List100,
        Workload::List10k,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Upsert64 => "upsert-64",
            Workload::Upsert1 => "upsert-1",
            Workload::List100 => "list-100",
            Workload::List10k => "list-10k",
        }
    }

    pub fn connections(self) -> usize {
        match self {
            Workload::Upsert64 | Workload::List100 => 64,
            Workload::Upsert1 | Workload::List10k => 1,
        }
    }

    pub fn duration(self, plan: &Plan) -> Duration {
        match self {
            Workload::Upsert64 => plan.upsert_64,
            Workload::Upsert1 => plan.upsert_1,
            Workload::List100 => plan.list_100,
            Workload::List10k => plan.list_10k,
        }
    }

    pub fn describe(self, plan: &Plan) -> String {
        let what: String = match self {
            Workload::Upsert64 | Workload::Upsert1 => {
                "upserts of 100-byte values, names cycling over 10,000 in one team".into()
            }
            Workload::List100 => "lists of a team of 100 secrets".into(),
            Workload::List10k => "lists of a team of 10,000 secrets".into(),
        };
        format!(
            "{} connection(s), {:?} per run: {what}",
            self.connections(),
            self.duration(plan)
        )
    }
}
