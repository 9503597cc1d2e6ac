//! Everything one benchmark run measured (serialized as the JSON results),
//! and the summary computed from it (medians, ranges, paired ratios).

mod goals;
mod render;
#[cfg(test)]
mod tests;

pub use render::render;

use crate::config::Plan;
use crate::delivery::Propagation;
use crate::measure::Sample;
use crate::neighbour::Neighbour;
use crate::pg::Pgbench;
use crate::process::Memory;
use crate::stats::Stat;
use crate::targets::{CEILING, OPENBAO, TESSERA_POSTGRES};
use crate::workloads::{Workload, SMALL_TEAM_SIZE};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Serialize)]
pub struct Environment {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub tessera_version: String,
    pub tessera_commit: String,
    pub openbao_version: String,
    /// The load client's open-file limit after raising it (servers inherit it).
    pub open_files_limit: Option<u64>,
}

/// What was measured while preparing a target (not part of the runs).
#[derive(Debug, Default, Serialize)]
pub struct Setup {
    /// Loading of data sets: name of the set -> load sample.
    pub loads: BTreeMap<String, Sample>,
    /// Tessera: spawn to `/readyz` 200 on an existing store, per restart.
    pub ready_ms: Vec<f64>,
    /// Tessera: just started on a fresh store, before any request.
    pub memory_fresh: Option<Memory>,
    /// Tessera: idle after a restart on the loaded store (10,100 secrets).
    pub memory_idle: Option<Memory>,
    /// Tessera: after loading the big team up to 100,000 secrets.
    pub memory_after_100k: Option<Memory>,
}

#[derive(Debug, Default, Serialize)]
pub struct Run {
    /// workload -> target -> sample.
    pub samples: BTreeMap<String, BTreeMap<String, Sample>>,
    pub pgbench: Option<Pgbench>,
    /// Issue 9: target -> the neighbour measurement (Tessera targets only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub neighbour: BTreeMap<String, Neighbour>,
}

impl Run {
    pub fn sample(&self, w: &str, target: &str) -> Option<&Sample> {
        self.samples.get(w)?.get(target)
    }
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub started_at: String,
    pub command: Vec<String>,
    pub environment: Environment,
    pub plan: Plan,
    pub targets: Vec<String>,
    /// Targets that were not measured, with the reason.
    pub skipped: Vec<String>,
    pub setup: BTreeMap<String, Setup>,
    pub runs: Vec<Run>,
    /// The issue 8 propagation workloads (after the runs; not interleaved).
    pub delivery: Vec<Propagation>,
    /// Issue 24: server memory under concurrent large fetches (last).
    pub large_fetch: Option<crate::large_fetch::LargeFetch>,
    /// Issue 27: repeated fetches of a team at the secrets quota (last).
    pub many_fetch: Option<crate::large_fetch::LargeFetch>,
    pub summary: Option<Summary>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub target: String,
    pub rps: Option<Stat>,
    pub p50_ms: Option<Stat>,
    pub p99_ms: Option<Stat>,
    pub errors: u64,
    /// rps / OpenBao's rps, computed per run, then the median of those.
    pub vs_openbao: Option<Stat>,
    /// rps / the ceiling's rps, computed per run, then the median.
    pub vs_ceiling: Option<Stat>,
    pub rss_mib: Option<Stat>,
    pub server_cpu_us_per_request: Option<Stat>,
    pub server_cores: Option<Stat>,
    pub client_cores: Option<Stat>,
    pub other_cores: Option<Stat>,
}

#[derive(Debug, Serialize)]
pub struct WorkloadSummary {
    pub name: String,
    pub description: String,
    /// What the throughput column counts ("req/s", "fetches/s").
    pub unit: String,
    pub rows: Vec<Row>,
    /// Targets that do not run this workload, with the reason.
    pub not_run: Vec<NotRun>,
}

#[derive(Debug, Serialize)]
pub struct NotRun {
    pub target: String,
    pub reason: String,
}

/// fetch-100's server CPU per secret returned beyond what list-100 costs:
/// (server µs per fetch − server µs per list-100) / 100, per run, median.
#[derive(Debug, Serialize)]
pub struct PerSecret {
    pub target: String,
    pub fetch_us: Option<Stat>,
    pub list_us: Option<Stat>,
    pub us_per_secret: Option<Stat>,
}

#[derive(Debug, Serialize)]
pub struct PgSummary {
    pub pgbench_tps: Option<Stat>,
    pub tessera_upsert_64_rps: Option<Stat>,
    /// Tessera-PostgreSQL upsert-64 rps / pgbench tps, per run, median.
    pub ratio: Option<Stat>,
}

/// Issue 9's neighbour measurement on one target, over the runs.
#[derive(Debug, Serialize)]
pub struct NeighbourRow {
    pub target: String,
    pub idle_rps: Option<Stat>,
    pub idle_p50_ms: Option<Stat>,
    pub idle_p99_ms: Option<Stat>,
    pub loaded_rps: Option<Stat>,
    pub loaded_p50_ms: Option<Stat>,
    pub loaded_p99_ms: Option<Stat>,
    /// loaded p99 / idle p99, per run, then the median.
    pub p99_ratio: Option<Stat>,
    /// Listings of the big team per second during the loaded phase.
    pub big_rps: Option<Stat>,
    pub writes_rps: Option<Stat>,
    /// Failed requests of all four parts, over the runs.
    pub errors: u64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub workloads: Vec<WorkloadSummary>,
    pub postgres: Option<PgSummary>,
    pub fetch_cpu_per_secret: Vec<PerSecret>,
    /// The issue 5 targets.
    pub goals: Vec<goals::Goal>,
    pub goals_issue_8: Vec<goals::Goal>,
    pub neighbour: Vec<NeighbourRow>,
    pub goals_issue_9: Vec<goals::Goal>,
    pub goals_issue_24: Vec<goals::Goal>,
    /// Failed requests anywhere: workloads, data loading and propagation.
    pub total_errors: u64,
}

impl Results {
    pub fn summarize(&mut self) {
        let workloads: Vec<WorkloadSummary> = Workload::ALL
            .iter()
            .map(|w| self.workload_summary(*w))
            .collect();
        let postgres = self.targets.iter().any(|t| t == TESSERA_POSTGRES).then(|| {
            let per_run =
                |f: &dyn Fn(&Run) -> Option<f64>| Stat::of(self.runs.iter().filter_map(f));
            let tessera = |r: &Run| Some(r.sample("upsert-64", TESSERA_POSTGRES)?.rps);
            let pgbench = |r: &Run| Some(r.pgbench.as_ref()?.tps);
            PgSummary {
                pgbench_tps: per_run(&pgbench),
                tessera_upsert_64_rps: per_run(&tessera),
                ratio: per_run(&|r| ratio(tessera(r)?, pgbench(r)?)),
            }
        });
        let total_errors = self
            .runs
            .iter()
            .flat_map(|r| r.samples.values().flat_map(|m| m.values()))
            .chain(self.setup.values().flat_map(|s| s.loads.values()))
            .map(|s| s.errors)
            .sum::<u64>()
            + self.delivery.iter().map(|p| p.errors).sum::<u64>()
            + self.large_fetch.as_ref().map_or(0, |l| l.errors as u64)
            + self.many_fetch.as_ref().map_or(0, |l| l.errors as u64)
            + self
                .runs
                .iter()
                .flat_map(|r| r.neighbour.values())
                .map(Neighbour::errors)
                .sum::<u64>();
        let neighbour = self
            .targets
            .iter()
            .filter(|t| self.runs.iter().any(|r| r.neighbour.contains_key(*t)))
            .map(|t| self.neighbour_row(t))
            .collect();
        let fetch_cpu_per_secret = self
            .targets
            .iter()
            .filter(|t| t.starts_with("tessera"))
            .map(|t| self.per_secret(t))
            .collect();
        let mut summary = Summary {
            workloads,
            postgres,
            fetch_cpu_per_secret,
            goals: Vec::new(),
            goals_issue_8: Vec::new(),
            neighbour,
            goals_issue_9: Vec::new(),
            goals_issue_24: Vec::new(),
            total_errors,
        };
        summary.goals = goals::evaluate(&summary, &self.setup);
        summary.goals_issue_8 = goals::evaluate_issue_8(&summary, &self.delivery);
        summary.goals_issue_9 = goals::evaluate_issue_9(&summary);
        summary.goals_issue_24 = goals::evaluate_issue_24(self.large_fetch.as_ref());
        self.summary = Some(summary);
    }

    fn neighbour_row(&self, target: &str) -> NeighbourRow {
        let over_runs = |f: &dyn Fn(&Neighbour) -> Option<f64>| {
            Stat::of(
                self.runs
                    .iter()
                    .filter_map(|r| r.neighbour.get(target))
                    .filter_map(f),
            )
        };
        NeighbourRow {
            target: target.to_string(),
            idle_rps: over_runs(&|n| Some(n.idle.rps)),
            idle_p50_ms: over_runs(&|n| Some(n.idle.p50_ms)),
            idle_p99_ms: over_runs(&|n| Some(n.idle.p99_ms)),
            loaded_rps: over_runs(&|n| Some(n.loaded.rps)),
            loaded_p50_ms: over_runs(&|n| Some(n.loaded.p50_ms)),
            loaded_p99_ms: over_runs(&|n| Some(n.loaded.p99_ms)),
            p99_ratio: over_runs(&Neighbour::p99_ratio),
            big_rps: over_runs(&|n| Some(n.big.rps)),
            writes_rps: over_runs(&|n| Some(n.writes.rps)),
            errors: self
                .runs
                .iter()
                .filter_map(|r| r.neighbour.get(target))
                .map(Neighbour::errors)
                .sum(),
        }
    }

    fn per_secret(&self, target: &str) -> PerSecret {
        let cpu = |r: &Run, w: Workload| {
            Some(r.sample(w.name(), target)?.server_cpu_us_per_request).filter(|v| v.is_finite())
        };
        let over_runs = |f: &dyn Fn(&Run) -> Option<f64>| Stat::of(self.runs.iter().filter_map(f));
        PerSecret {
            target: target.to_string(),
            fetch_us: over_runs(&|r| cpu(r, Workload::Fetch100)),
            list_us: over_runs(&|r| cpu(r, Workload::List100)),
            us_per_secret: over_runs(&|r| {
                Some(
                    (cpu(r, Workload::Fetch100)? - cpu(r, Workload::List100)?)
                        / SMALL_TEAM_SIZE as f64,
                )
            }),
        }
    }

    fn workload_summary(&self, w: Workload) -> WorkloadSummary {
        let name = w.name();
        let over_runs = |f: &dyn Fn(&Run) -> Option<f64>| Stat::of(self.runs.iter().filter_map(f));
        let rows = self
            .targets
            .iter()
            .filter(|t| w.not_run_on(t).is_none())
            .map(|t| {
                let vs = |other: &str| {
                    if t == other || (other == OPENBAO && !t.starts_with("tessera")) {
                        return None;
                    }
                    over_runs(&|r| ratio(r.sample(name, t)?.rps, r.sample(name, other)?.rps))
                };
                Row {
                    target: t.clone(),
                    rps: over_runs(&|r| Some(r.sample(name, t)?.rps)),
                    p50_ms: over_runs(&|r| Some(r.sample(name, t)?.p50_ms)),
                    p99_ms: over_runs(&|r| Some(r.sample(name, t)?.p99_ms)),
                    errors: self
                        .runs
                        .iter()
                        .filter_map(|r| Some(r.sample(name, t)?.errors))
                        .sum(),
                    vs_openbao: vs(OPENBAO),
                    vs_ceiling: vs(CEILING),
                    rss_mib: over_runs(&|r| {
                        Some(r.sample(name, t)?.memory?.rss_kib as f64 / 1024.0)
                    }),
                    server_cpu_us_per_request: over_runs(&|r| {
                        Some(r.sample(name, t)?.server_cpu_us_per_request)
                    }),
                    server_cores: over_runs(&|r| Some(r.sample(name, t)?.server_cores)),
                    client_cores: over_runs(&|r| Some(r.sample(name, t)?.client_cores)),
                    other_cores: over_runs(&|r| Some(r.sample(name, t)?.other_cores)),
                }
            })
            .collect();
        let not_run = self
            .targets
            .iter()
            .filter_map(|t| {
                Some(NotRun {
                    target: t.clone(),
                    reason: w.not_run_on(t)?.to_string(),
                })
            })
            .collect();
        WorkloadSummary {
            name: name.to_string(),
            description: w.describe(&self.plan),
            unit: w.unit().to_string(),
            rows,
            not_run,
        }
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}
