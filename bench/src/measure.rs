//! One measurement: a workload against a target, or the loading of a data
//! set, condensed into a serializable sample.

use crate::client::{self, LoadResult, Spec};
use crate::config::Plan;
use crate::process::{cpu_seconds, machine_busy_seconds, memory, Memory};
use crate::targets::{Target, Team};
use crate::workloads::{Workload, LOAD_CONNECTIONS, NAMES};
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Successful (200) responses per second over the measured window (for
    /// a unit of requests, such as OpenBao's 100 GETs of fetch-100: units
    /// whose every request answered 200).
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub error_kinds: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Average cores the server process kept busy during the phase
    /// (warm-up included). For Tessera on PostgreSQL the database's own
    /// processes are not counted.
    pub server_cores: f64,
    /// Server CPU time per completed request (or unit), in microseconds.
    pub server_cpu_us_per_request: f64,
    /// Average cores the load client used: near the machine's core count it
    /// would be competing with the server for CPU.
    pub client_cores: f64,
    /// Average cores used by every other process of the machine (for
    /// Tessera on PostgreSQL this includes the database). Well above zero
    /// for the other targets, something else competed for the CPU.
    pub other_cores: f64,
    /// Server memory right after the measurement (list-10k only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

impl From<LoadResult> for Sample {
    fn from(r: LoadResult) -> Self {
        Sample {
            rps: r.rps(),
            p50_ms: r.quantile_ms(0.50),
            p99_ms: r.quantile_ms(0.99),
            ok: r.ok,
            errors: r.error_count(),
            error_kinds: r.errors,
            first_error: r.first_error,
            server_cores: f64::NAN,
            server_cpu_us_per_request: f64::NAN,
            client_cores: f64::NAN,
            other_cores: f64::NAN,
            memory: None,
        }
    }
}

pub async fn workload(target: &Target, w: Workload, plan: &Plan) -> anyhow::Result<Sample> {
    let set = match w {
        Workload::Upsert64 | Workload::Upsert1 => target.upsert(Team::Big, 0..NAMES)?,
        Workload::List100 => target.list(Team::Small)?,
        Workload::List10k => target.list(Team::Big)?,
        Workload::Fetch100 => target
            .fetch_small()?
            .with_context(|| format!("{} has no fetch-100", target.name))?,
    };
    let spec = Spec {
        connections: w.connections(),
        warmup: plan.warmup,
        duration: Some(w.duration(plan)),
        limit: None,
        threads: plan.client_threads,
    };
    let pid = target.pid();
    let server_before = cpu_seconds(Some(pid))?;
    let client_before = cpu_seconds(None)?;
    let machine_before = machine_busy_seconds()?;
    let started = std::time::Instant::now();
    let result = client::run(target.addr(), Arc::new(set), spec).await;
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(Some(pid))? - server_before;
    let client_cpu = cpu_seconds(None)? - client_before;
    let machine_cpu = machine_busy_seconds()? - machine_before;
    let completed = result.completed.max(1) as f64;
    let mut sample = Sample::from(result);
    sample.server_cores = server_cpu / wall;
    sample.server_cpu_us_per_request = server_cpu * 1e6 / completed;
    sample.client_cores = client_cpu / wall;
    sample.other_cores = (machine_cpu - server_cpu - client_cpu).max(0.0) / wall;
    if w == Workload::List10k {
        sample.memory = Some(memory(target.pid())?);
    }
    Ok(sample)
}

/// Upserts each name of `names` once, over concurrent connections.
pub async fn load(
    target: &Target,
    team: Team,
    names: Range<usize>,
    plan: &Plan,
) -> anyhow::Result<Sample> {
    let set = target.upsert(team, names)?;
    let spec = Spec {
        connections: LOAD_CONNECTIONS,
        warmup: std::time::Duration::ZERO,
        duration: None,
        limit: Some(set.len()),
        threads: plan.client_threads,
    };
    Ok(Sample::from(
        client::run(target.addr(), Arc::new(set), spec).await,
    ))
}
