//! The targets of issues 5, 8 and 9, checked against the summary: each is met,
//! not met, or not measured in this run (e.g. quick mode, no PostgreSQL, no
//! agent subcommand in the binary).

use super::{Row, Setup, Summary};
use crate::delivery::{Propagation, AGENT, PROPAGATE_1K, PROPAGATE_PG};
use crate::stats::Stat;
use crate::targets::{TESSERA_POSTGRES, TESSERA_SQLITE};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Goal {
    pub target: String,
    pub goal: String,
    pub measured: String,
    /// None: not measured in this run.
    pub met: Option<bool>,
}

fn goal(
    target: &str,
    text: &str,
    value: Option<f64>,
    unit: &str,
    ok: impl Fn(f64) -> bool,
) -> Goal {
    Goal {
        target: target.to_string(),
        goal: text.to_string(),
        measured: value.map_or("not measured".into(), |v| format!("{v:.2}{unit}")),
        met: value.map(ok),
    }
}

fn row<'a>(summary: &'a Summary, workload: &str, target: &str) -> Option<&'a Row> {
    summary
        .workloads
        .iter()
        .find(|w| w.name == workload)?
        .rows
        .iter()
        .find(|r| r.target == target)
}

fn median(stat: Option<Stat>) -> Option<f64> {
    stat.map(|s| s.median)
}

pub fn evaluate(summary: &Summary, setup: &BTreeMap<String, Setup>) -> Vec<Goal> {
    let mut goals = Vec::new();
    let sqlite = TESSERA_SQLITE;
    let upsert = row(summary, "upsert-64", sqlite);
    goals.push(goal(
        sqlite,
        "upsert-64 >= 0.5x ceiling",
        upsert.and_then(|r| median(r.vs_ceiling)),
        "x",
        |v| v >= 0.5,
    ));
    goals.push(goal(
        sqlite,
        "upsert-64 >= 15x OpenBao",
        upsert.and_then(|r| median(r.vs_openbao)),
        "x",
        |v| v >= 15.0,
    ));
    for target in [TESSERA_SQLITE, TESSERA_POSTGRES] {
        let Some(s) = setup.get(target) else { continue };
        goals.push(goal(
            target,
            "upsert-1 p99 < 2 ms",
            row(summary, "upsert-1", target).and_then(|r| median(r.p99_ms)),
            " ms",
            |v| v < 2.0,
        ));
        goals.push(goal(
            target,
            "list-100 >= 0.4x ceiling",
            row(summary, "list-100", target).and_then(|r| median(r.vs_ceiling)),
            "x",
            |v| v >= 0.4,
        ));
        goals.push(goal(
            target,
            "list-10k p99 < 50 ms",
            row(summary, "list-10k", target).and_then(|r| median(r.p99_ms)),
            " ms",
            |v| v < 50.0,
        ));
        let mib = |m: Option<crate::process::Memory>| m.map(|m| m.rss_kib as f64 / 1024.0);
        goals.push(goal(
            target,
            "RSS after 100,000 secrets < 100 MiB",
            mib(s.memory_after_100k),
            " MiB",
            |v| v < 100.0,
        ));
        goals.push(goal(
            target,
            "idle RSS < 30 MiB",
            mib(s.memory_idle),
            " MiB",
            |v| v < 30.0,
        ));
        goals.push(goal(
            target,
            "ready on an existing store < 200 ms",
            median(Stat::of(s.ready_ms.iter().copied())),
            " ms",
            |v| v < 200.0,
        ));
    }
    if let Some(pg) = &summary.postgres {
        goals.push(goal(
            TESSERA_POSTGRES,
            "upsert-64 >= 0.8x pgbench single-row upsert",
            median(pg.ratio),
            "x",
            |v| v >= 0.8,
        ));
    }
    goals
}

/// A goal of a propagation workload: its figure, or why it was not measured.
fn propagation_goal(
    delivery: &[Propagation],
    workload: &str,
    text: &str,
    value: impl Fn(&Propagation) -> Option<f64>,
    unit: &str,
    ok: impl Fn(f64) -> bool,
) -> Option<Goal> {
    let p = delivery.iter().find(|p| p.workload == workload)?;
    let mut g = goal(&p.target, text, value(p), unit, ok);
    if let Some(why) = &p.skipped {
        g.measured = format!("skipped: {why}");
    }
    Some(g)
}

/// The targets of issue 8 (workload delivery).
pub fn evaluate_issue_8(summary: &Summary, delivery: &[Propagation]) -> Vec<Goal> {
    let mut goals = Vec::new();
    for per in &summary.fetch_cpu_per_secret {
        goals.push(goal(
            &per.target,
            "fetch-100 server CPU per secret beyond list-100 <= 2 µs",
            median(per.us_per_secret),
            " µs",
            |v| v <= 2.0,
        ));
        goals.push(goal(
            &per.target,
            "fetch-100 >= 10x OpenBao (fetches/s; OpenBao: 100 GETs per fetch)",
            row(summary, "fetch-100", &per.target).and_then(|r| median(r.vs_openbao)),
            "x",
            |v| v >= 10.0,
        ));
    }
    let p99 = |p: &Propagation| p.p99_ms;
    goals.extend(propagation_goal(
        delivery,
        PROPAGATE_1K,
        "propagate-1k p99 < 100 ms (upsert sent -> last of 1,000 waiters answered)",
        p99,
        " ms",
        |v| v < 100.0,
    ));
    goals.extend(propagation_goal(
        delivery,
        PROPAGATE_1K,
        "RSS per idle waiter < 32 KiB",
        |p| p.idle.as_ref().map(|i| i.rss_per_waiter_kib),
        " KiB",
        |v| v < 32.0,
    ));
    goals.extend(propagation_goal(
        delivery,
        PROPAGATE_1K,
        "server CPU while 1,000 waiters idle < 1% of a core",
        |p| p.idle.as_ref().map(|i| i.server_cores * 100.0),
        "%",
        |v| v < 1.0,
    ));
    goals.extend(propagation_goal(
        delivery,
        crate::delivery::read_growth::READ_GROWTH,
        "read-growth: one read key at full speed for 60 s grows the store < 1 MB",
        |p| p.store_growth.as_ref().map(|g| g.growth_bytes as f64 / 1e6),
        " MB",
        |v| v < 1.0,
    ));
    goals.extend(propagation_goal(
        delivery,
        PROPAGATE_PG,
        "propagate-pg p99 < 500 ms (write on node A -> last of 100 waiters on node B)",
        p99,
        " ms",
        |v| v < 500.0,
    ));
    goals.extend(propagation_goal(
        delivery,
        AGENT,
        "agent end to end p99 < 200 ms (upsert sent -> file holds the new bytes)",
        p99,
        " ms",
        |v| v < 200.0,
    ));
    goals
}

/// The target of issue 24, finding 3: memory under concurrent large fetches.
pub fn evaluate_issue_24(large: Option<&crate::large_fetch::LargeFetch>) -> Vec<Goal> {
    let Some(l) = large else { return Vec::new() };
    let text = format!(
        "{}: peak RSS growth over idle, 8 clients fetching a team at the 64 MiB value quota < {} MiB",
        crate::large_fetch::LARGE_FETCH,
        crate::large_fetch::TARGET_MIB
    );
    let measured = (l.skipped.is_none() && l.errors == 0).then_some(l.growth_mib);
    let mut g = goal(&l.target, &text, measured, " MiB", |v| {
        v < crate::large_fetch::TARGET_MIB
    });
    if let Some(why) = &l.skipped {
        g.measured = format!("skipped: {why}");
    } else if l.errors > 0 {
        g.measured = format!("{} fetches failed", l.errors);
    }
    vec![g]
}

/// The target of issue 9 (hostile clients): large reads do not starve the
/// workers serving another team.
pub fn evaluate_issue_9(summary: &Summary) -> Vec<Goal> {
    summary
        .neighbour
        .iter()
        .map(|n| {
            goal(
                &n.target,
                "neighbour list-100 p99 under 8 big listings < 3x idle p99",
                median(n.p99_ratio),
                "x",
                |v| v < crate::neighbour::MAX_P99_RATIO,
            )
        })
        .collect()
}
