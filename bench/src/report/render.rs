//! The human-readable report: Markdown tables, so the output can be pasted
//! into an issue as is.

use super::{Results, Row};
use crate::neighbour::{BIG_LISTERS, NEIGHBOUR, NEIGHBOUR_CONNECTIONS, WRITE_EVERY};
use crate::stats::Stat;
use std::fmt::Write;

/// Thousands-separated integer: 12345.6 -> "12,346".
pub(super) fn int(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// Milliseconds with precision that suits their size.
fn ms(v: f64) -> String {
    match v {
        v if !v.is_finite() => "-".into(),
        v if v < 10.0 => format!("{v:.2}"),
        v if v < 100.0 => format!("{v:.1}"),
        v => format!("{v:.0}"),
    }
}

fn ratio(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.1}x")
    } else {
        format!("{v:.2}x")
    }
}

fn median_or_dash(s: Option<Stat>, f: fn(f64) -> String) -> String {
    s.map_or("-".into(), |s| f(s.median))
}

fn range(s: Option<Stat>, f: fn(f64) -> String) -> String {
    s.map_or("-".into(), |s| format!("{}–{}", f(s.min), f(s.max)))
}

fn ratio_cell(s: Option<Stat>) -> String {
    s.map_or(String::new(), |s| {
        if s.min == s.max {
            ratio(s.median)
        } else {
            format!("{} ({}–{})", ratio(s.median), ratio(s.min), ratio(s.max))
        }
    })
}

/// A count of failed requests, in bold when there are any.
fn errors_cell(errors: u64) -> String {
    if errors > 0 {
        format!("**{errors}**")
    } else {
        "0".into()
    }
}

fn workload_row(out: &mut String, r: &Row, with_rss: bool) {
    let errors = errors_cell(r.errors);
    let _ = write!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.target,
        median_or_dash(r.rps, int),
        range(r.rps, int),
        median_or_dash(r.p50_ms, ms),
        median_or_dash(r.p99_ms, ms),
        errors,
        ratio_cell(r.vs_openbao),
        ratio_cell(r.vs_ceiling),
        median_or_dash(r.server_cpu_us_per_request, |v| format!("{v:.0}")),
        median_or_dash(r.server_cores, |v| format!("{v:.2}")),
        median_or_dash(r.client_cores, |v| format!("{v:.2}")),
        r.other_cores
            .map_or("-".into(), |s| format!("{:.2}", s.max)),
    );
    if with_rss {
        let _ = write!(
            out,
            " {} |",
            median_or_dash(r.rss_mib, |v| format!("{v:.1}"))
        );
    }
    out.push('\n');
}

pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let env = &results.environment;
    let plan = &results.plan;
    let _ = writeln!(out, "## Benchmark results, {}\n", results.started_at);
    let _ = writeln!(
        out,
        "{} (commit {}); {}; {} CPUs ({}), kernel {}; {} run(s) per workload{}; \
         load client: {} threads, same machine, loopback.\n",
        env.tessera_version,
        env.tessera_commit,
        env.openbao_version,
        env.cpus,
        env.cpu_model,
        env.kernel,
        plan.runs,
        if plan.quick { " (QUICK smoke run)" } else { "" },
        plan.client_threads,
    );
    for skipped in &results.skipped {
        let _ = writeln!(out, "**Skipped:** {skipped}\n");
    }
    let Some(summary) = &results.summary else {
        return out;
    };
    if summary.total_errors > 0 {
        let _ = writeln!(
            out,
            "> **!!! {} REQUESTS FAILED: the figures below are not valid. Details at the end. !!!**\n",
            summary.total_errors
        );
    }
    noise_warning(&mut out, results);
    for w in &summary.workloads {
        let with_rss = w.rows.iter().any(|r| r.rss_mib.is_some());
        let _ = writeln!(out, "### {}: {}\n", w.name, w.description);
        let per = if w.unit == "req/s" { "req" } else { "fetch" };
        let _ = write!(
            out,
            "| target | {} (median) | min–max | p50 ms | p99 ms | errors | vs OpenBao | vs ceiling \
             | server CPU µs/{per} | server cores | client cores | other cores (max) |",
            w.unit
        );
        out.push_str(if with_rss { " RSS MiB |\n" } else { "\n" });
        out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        out.push_str(if with_rss { "--:|\n" } else { "\n" });
        for r in &w.rows {
            workload_row(&mut out, r, with_rss);
        }
        for n in &w.not_run {
            let cols = if with_rss { 12 } else { 11 };
            let _ = writeln!(
                out,
                "| {} | not run: {} |{}",
                n.target,
                n.reason,
                " - |".repeat(cols - 1)
            );
        }
        out.push('\n');
        if w.name == "fetch-100" && !summary.fetch_cpu_per_secret.is_empty() {
            per_secret_table(&mut out, summary);
        }
    }

    neighbour_table(&mut out, results);

    out.push_str("### Tessera process\n\n");
    out.push_str("| target | ready on existing store ms (median, min–max) | fresh RSS MiB | idle RSS MiB | load 10k upserts/s | RSS after 100k MiB | load to 100k upserts/s |\n");
    out.push_str("|---|--:|--:|--:|--:|--:|--:|\n");
    let mib = |m: Option<crate::process::Memory>| {
        m.map_or("-".into(), |m| format!("{:.1}", m.rss_kib as f64 / 1024.0))
    };
    let tessera = results.targets.iter().filter(|n| n.starts_with("tessera"));
    for (name, s) in tessera.filter_map(|n| Some((n, results.setup.get(n)?))) {
        let ready = Stat::of(s.ready_ms.iter().copied());
        let load = |set: &str| s.loads.get(set).map_or("-".into(), |l| int(l.rps));
        let _ = writeln!(
            out,
            "| {name} | {} ({}) | {} | {} | {} | {} | {} |",
            median_or_dash(ready, ms),
            range(ready, ms),
            mib(s.memory_fresh),
            mib(s.memory_idle),
            load("big"),
            mib(s.memory_after_100k),
            load("to-100k"),
        );
    }
    out.push('\n');

    if let Some(pg) = &summary.postgres {
        out.push_str(
            "### PostgreSQL: Tessera upsert-64 vs pgbench single-row upsert (64 clients)\n\n",
        );
        out.push_str(
            "| run | pgbench tps | tessera-postgres upsert-64 req/s | ratio |\n|---|--:|--:|--:|\n",
        );
        for (i, run) in results.runs.iter().enumerate() {
            let tps = run.pgbench.as_ref().map(|p| p.tps);
            let rps = run
                .sample("upsert-64", crate::targets::TESSERA_POSTGRES)
                .map(|s| s.rps);
            let r = match (rps, tps) {
                (Some(a), Some(b)) if b > 0.0 => ratio(a / b),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {r} |",
                i + 1,
                tps.map_or("-".into(), int),
                rps.map_or("-".into(), int)
            );
        }
        let _ = writeln!(
            out,
            "| median | {} | {} | {} |\n",
            median_or_dash(pg.pgbench_tps, int),
            median_or_dash(pg.tessera_upsert_64_rps, int),
            median_or_dash(pg.ratio, ratio),
        );
    }

    propagation_tables(&mut out, results);
    store_growth(&mut out, results);

    goals_table(&mut out, "Issue 5 targets", &summary.goals);
    goals_table(&mut out, "Issue 8 targets", &summary.goals_issue_8);
    if !summary.goals_issue_9.is_empty() {
        goals_table(&mut out, "Issue 9 targets", &summary.goals_issue_9);
    }
    if let Some(l) = &results.large_fetch {
        large_fetch_table(&mut out, "Large fetches (issue 24)", l);
    }
    if let Some(l) = &results.many_fetch {
        large_fetch_table(
            &mut out,
            "Fetches of a team at the secrets quota (issue 27)",
            l,
        );
    }
    if !summary.goals_issue_24.is_empty() {
        goals_table(&mut out, "Issue 24 targets", &summary.goals_issue_24);
    }
    if summary.total_errors > 0 {
        errors_section(&mut out, results);
    }
    out
}

/// Issues 24 and 27: server memory and fetch time while clients fetch a
/// team at a quota.
fn large_fetch_table(out: &mut String, title: &str, l: &crate::large_fetch::LargeFetch) {
    if l.skipped.is_some() {
        return;
    }
    let _ = write!(
        out,
        "### {title}: {} clients each fetching a team of {} values, {:.1} MiB, \
         {} times\n\n\
         | target | idle RSS MiB | peak RSS MiB | growth MiB | fetch ms (median) | fetches | errors | seconds |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|\n\
         | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.1} |\n\n",
        l.clients,
        l.secrets,
        l.team_bytes as f64 / f64::from(1 << 20),
        l.fetches_per_client,
        l.target,
        l.rss_idle_kib as f64 / 1024.0,
        l.rss_peak_kib as f64 / 1024.0,
        l.growth_mib,
        l.fetch_ms_median.map_or("-".into(), |v| format!("{v:.1}")),
        l.fetches_ok,
        l.errors,
        l.seconds,
    );
}

fn goals_table(out: &mut String, title: &str, goals: &[super::goals::Goal]) {
    let _ = write!(
        out,
        "### {title}\n\n| target | goal | measured | met |\n|---|---|--:|---|\n"
    );
    for g in goals {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "not measured",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {met} |",
            g.target, g.goal, g.measured
        );
    }
    out.push('\n');
}

/// Issue 9: another team's list-100, idle and while the big team is listed.
fn neighbour_table(out: &mut String, results: &Results) {
    let Some(summary) = &results.summary else {
        return;
    };
    if summary.neighbour.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "### {NEIGHBOUR}: another team's list-100 while {BIG_LISTERS} clients list a team of \
         10,000\n\n\
         {NEIGHBOUR_CONNECTIONS} connections list the team of 100 for {:?} alone (idle), then \
         for {:?} again while {BIG_LISTERS} other connections list the big team (10,000 secrets) \
         and one more upserts one of its secrets every {} ms (new values, so most big listings \
         are read from the store). p99 ratio = loaded p99 / idle p99, per run, then the median.\n\n\
         | target | idle p50 ms | idle p99 ms | loaded p50 ms | loaded p99 ms \
         | p99 ratio (median over runs, min–max) | big listings/s | errors |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|\n",
        results.plan.list_100,
        results.plan.list_100,
        WRITE_EVERY.as_millis(),
    );
    for n in &summary.neighbour {
        let errors = errors_cell(n.errors);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {errors} |",
            n.target,
            median_or_dash(n.idle_p50_ms, ms),
            median_or_dash(n.idle_p99_ms, ms),
            median_or_dash(n.loaded_p50_ms, ms),
            median_or_dash(n.loaded_p99_ms, ms),
            n.p99_ratio.map_or("-".into(), |s| format!(
                "{} ({})",
                ratio(s.median),
                range(Some(s), ratio)
            )),
            median_or_dash(n.big_rps, |v| format!("{v:.1}")),
        );
    }
    out.push('\n');
    for n in &summary.neighbour {
        let _ = writeln!(
            out,
            "{}: list-100 {} req/s idle, {} req/s loaded; {} big-team writes/s.",
            n.target,
            median_or_dash(n.idle_rps, int),
            median_or_dash(n.loaded_rps, int),
            median_or_dash(n.writes_rps, |v| format!("{v:.1}")),
        );
    }
    out.push('\n');
}

/// fetch-100's server CPU beyond list-100's, per secret returned.
fn per_secret_table(out: &mut String, summary: &super::Summary) {
    out.push_str(
        "Server CPU per secret returned beyond list-100 = (server µs per fetch-100 − server µs \
         per list-100) / 100, per run, then the median:\n\n\
         | target | server µs per fetch-100 | server µs per list-100 | µs per secret beyond list-100 | min–max |\n\
         |---|--:|--:|--:|--:|\n",
    );
    let us = |v: f64| format!("{v:.1}");
    let per = |v: f64| format!("{v:.2}");
    for p in &summary.fetch_cpu_per_secret {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            p.target,
            median_or_dash(p.fetch_us, us),
            median_or_dash(p.list_us, us),
            median_or_dash(p.us_per_secret, per),
            range(p.us_per_secret, per),
        );
    }
    out.push('\n');
}

/// The issue 8 propagation workloads: one row each, then the idle waiters.
fn propagation_tables(out: &mut String, results: &Results) {
    if results.delivery.is_empty() {
        return;
    }
    out.push_str(
        "### Propagation (issue 8): upsert sent → the last waiter has its whole 200 answer \
         (agent: the file holds the new bytes)\n\n\
         | workload | target | how | rounds | median ms | p99 ms | first waiter ms (median) \
         | median waiter ms (median) | upsert acked ms (median) | 304s | errors | server cores \
         | client cores | other cores |\n\
         |---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    let med = |v: &[f64]| median_or_dash(Stat::of(v.iter().copied()), ms);
    let cores = |v: f64| {
        if v.is_finite() {
            format!("{v:.2}")
        } else {
            "-".into()
        }
    };
    for p in &results.delivery {
        if let Some(why) = &p.skipped {
            let _ = writeln!(
                out,
                "| {} | {} | **skipped: {why}** |{}",
                p.workload,
                p.target,
                " - |".repeat(11)
            );
            continue;
        }
        if p.workload == crate::delivery::read_growth::READ_GROWTH {
            // Not a propagation: its own table follows.
            continue;
        }
        let errors = errors_cell(p.errors);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {errors} | {} | {} | {} |",
            p.workload,
            p.target,
            p.setup,
            p.last_ms.len(),
            p.rounds_planned,
            p.median_ms.map_or("-".into(), ms),
            p.p99_ms.map_or("-".into(), ms),
            med(&p.first_ms),
            med(&p.median_waiter_ms),
            med(&p.upsert_ms),
            p.not_modified,
            cores(p.server_cores),
            cores(p.client_cores),
            cores(p.other_cores),
        );
    }
    out.push_str(
        "\np99 is the nearest rank over the rounds (with 20 rounds, the slowest). For \
         propagate-pg the server is node B (the waiters' node); node A and PostgreSQL count as \
         other. For the agent, other includes the agent.\n\n",
    );
    let idle: Vec<_> = results
        .delivery
        .iter()
        .filter_map(|p| Some((p, p.idle.as_ref()?)))
        .collect();
    if !idle.is_empty() {
        out.push_str(
            "| idle waiters | target | RSS before MiB | RSS with waiters MiB | RSS per waiter KiB \
             | server CPU while they wait (% of a core) | watched for s |\n\
             |---|---|--:|--:|--:|--:|--:|\n",
        );
        for (p, i) in idle {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2}% | {:.1} |",
                i.waiters,
                p.target,
                i.rss_before_kib as f64 / 1024.0,
                i.rss_with_waiters_kib as f64 / 1024.0,
                i.rss_per_waiter_kib,
                i.server_cores * 100.0,
                i.idle_seconds,
            );
        }
        out.push('\n');
    }
}

/// read-growth's figures (issue 24, finding 4).
fn store_growth(out: &mut String, results: &Results) {
    let rows: Vec<_> = results
        .delivery
        .iter()
        .filter_map(|p| Some((p, p.store_growth.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "### Read growth (issue 24): one read key at full speed, a new instance id per request, \
         rate limit off\n\n\
         | read-growth | target | reads | reads/s | store before MiB | store after MiB | growth KB \
         | errors |\n\
         |---|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for (p, g) in rows {
        let _ = writeln!(
            out,
            "| {:.0} s | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} |",
            g.seconds,
            p.target,
            g.reads,
            g.reads_per_s,
            g.store_bytes_before as f64 / 1_048_576.0,
            g.store_bytes_after as f64 / 1_048_576.0,
            g.growth_bytes as f64 / 1000.0,
            errors_cell(p.errors),
        );
    }
    out.push('\n');
}

/// Above this many cores used by unrelated processes during a measurement,
/// the report warns that the machine was not quiet.
const NOISE_CORES: f64 = 0.2;

fn noise_warning(out: &mut String, results: &Results) {
    // Tessera on PostgreSQL legitimately has "other" CPU: the database.
    let noisy: Vec<String> = results
        .runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.samples.iter().flat_map(move |(w, m)| {
                m.iter()
                    .filter(|(t, s)| {
                        *t != crate::targets::TESSERA_POSTGRES && s.other_cores > NOISE_CORES
                    })
                    .map(move |(t, s)| format!("run {} {w} {t}: {:.2}", i + 1, s.other_cores))
            })
        })
        .collect();
    // Of the propagation workloads, only propagate-1k runs with nothing else
    // of ours on the machine (propagate-pg has node A and PostgreSQL, the
    // agent workload the agent).
    let noisy: Vec<String> = noisy
        .into_iter()
        .chain(
            results
                .delivery
                .iter()
                .filter(|p| p.workload == crate::delivery::PROPAGATE_1K)
                .filter(|p| p.other_cores > NOISE_CORES)
                .map(|p| format!("{} {}: {:.2}", p.workload, p.target, p.other_cores)),
        )
        .collect();
    if !noisy.is_empty() {
        let _ = writeln!(
            out,
            "> **Warning: other processes used CPU during {} measurement(s)** (cores: {}). \
             The machine was not quiet; rerun for clean numbers.\n",
            noisy.len(),
            noisy.join(", ")
        );
    }
}

/// Every measurement with failures: where, how many, of which kind, and the
/// first failure's text.
fn errors_section(out: &mut String, results: &Results) {
    let total = results.summary.as_ref().map_or(0, |s| s.total_errors);
    let _ = writeln!(out, "### !!! ERRORS: {total} failed requests !!!\n");
    let loads = results.setup.iter().flat_map(|(t, s)| {
        s.loads
            .iter()
            .map(move |(set, l)| (format!("setup: load {set}"), t, l))
    });
    let runs = results.runs.iter().enumerate().flat_map(|(i, r)| {
        r.samples.iter().flat_map(move |(w, m)| {
            m.iter()
                .map(move |(t, s)| (format!("run {}: {w}", i + 1), t, s))
        })
    });
    let neighbour = results.runs.iter().enumerate().flat_map(|(i, r)| {
        r.neighbour.iter().flat_map(move |(t, n)| {
            n.parts()
                .map(move |(part, s)| (format!("run {}: {NEIGHBOUR} {part}", i + 1), t, s))
        })
    });
    for (what, target, s) in loads
        .chain(runs)
        .chain(neighbour)
        .filter(|(_, _, s)| s.errors > 0)
    {
        let _ = writeln!(
            out,
            "- {what} on {target}: {} failed ({:?}); first: {}",
            s.errors,
            s.error_kinds,
            s.first_error.as_deref().unwrap_or("?")
        );
    }
    for p in results.delivery.iter().filter(|p| p.errors > 0) {
        let _ = writeln!(
            out,
            "- {} on {}: {} failures ({:?}); first: {}",
            p.workload,
            p.target,
            p.errors,
            p.error_kinds,
            p.first_error.as_deref().unwrap_or("?")
        );
    }
    out.push('\n');
}
