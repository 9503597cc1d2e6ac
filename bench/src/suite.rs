//! The benchmark run: start every target, load the data sets, measure each
//! workload on each target run after run (interleaved, so that the ratios
//! pair measurements taken minutes apart at most), then report.

use crate::config::{Plan, RunArgs};
use crate::delivery;
use crate::environment::environment;
use crate::measure::{self, Sample};
use crate::neighbour::{self, NEIGHBOUR};
use crate::pg::{self, Schema};
use crate::process::memory;
use crate::report::{self, Results, Run, Setup};
use crate::targets::ceiling::Ceiling;
use crate::targets::openbao::OpenBao;
use crate::targets::tessera::Tessera;
use crate::targets::{Kind, Target, Team, CEILING, OPENBAO, TESSERA_POSTGRES, TESSERA_SQLITE};
use crate::workloads::{Workload, LARGE_STORE, NAMES, SMALL_TEAM_SIZE, WAITERS_1K};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Restarts used to time `serve` becoming ready on an existing store.
const RESTARTS: usize = 3;
/// Memory is read after the process has been left alone this long.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Runs the benchmark; returns the exit code (non-zero when any request failed).
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let plan = Plan::new(&args);
    // propagate-1k holds 1,000 connections open at once (and the servers,
    // started from here, inherit the limit): raise the soft limit on open
    // files to the hard one.
    let open_files = rlimit::increase_nofile_limit(u64::MAX);
    match &open_files {
        Ok(n) if *n < WAITERS_1K as u64 + 256 => eprintln!(
            "warning: open-file limit {n}: too low for {WAITERS_1K} waiters; propagate-1k will fail"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: could not raise the open-file limit: {e}"),
    }
    std::fs::create_dir_all(&args.work_dir)?;
    // Data directories of this run; removed at the end.
    let work = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&args.work_dir)?;
    let started_at = chrono::Utc::now();
    let mut results = Results {
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: std::env::args().collect(),
        environment: environment(&args, open_files.ok()).await,
        plan: plan.clone(),
        targets: Vec::new(),
        skipped: Vec::new(),
        setup: BTreeMap::new(),
        runs: Vec::new(),
        delivery: Vec::new(),
        large_fetch: None,
        many_fetch: None,
        summary: None,
    };

    let schema = match &args.database_url {
        Some(url) => {
            let schema = Schema::create(url).await?;
            pg::prepare_pgbench(&schema, work.path()).await?;
            Some(schema)
        }
        None => {
            results.skipped.push(format!(
                "{TESSERA_POSTGRES} and pgbench: TESSERA_TEST_DATABASE_URL is not set"
            ));
            None
        }
    };

    let mut targets = start_targets(&args, work.path(), schema.as_ref(), &mut results).await?;
    results.targets = targets.iter().map(|t| t.name.clone()).collect();
    for target in &mut targets {
        let setup = prepare(target, &plan).await?;
        results.setup.insert(target.name.clone(), setup);
    }

    for run in 0..plan.runs {
        results
            .runs
            .push(measure_run(run, &targets, &plan, schema.as_ref(), work.path()).await?);
    }

    if plan.load_100k {
        for target in targets.iter().filter(|t| t.is_tessera()) {
            eprintln!(
                "{}: loading the big team up to {LARGE_STORE} secrets",
                target.name
            );
            let load = measure::load(target, Team::Big, NAMES..LARGE_STORE, &plan).await?;
            tokio::time::sleep(IDLE_WAIT).await;
            let setup = results.setup.entry(target.name.clone()).or_default();
            setup.memory_after_100k = Some(memory(target.pid())?);
            setup.loads.insert("to-100k".into(), load);
        }
    }

    // Issue 8: after everything else, so that its 1,000 connections and
    // the memory they leave behind touch no issue 5 figure.
    if plan.includes("delivery") {
        results.delivery = delivery::run_all(&mut targets, &plan, work.path()).await;
    }
    for p in &results.delivery {
        if let Some(why) = &p.skipped {
            results
                .skipped
                .push(format!("{} on {}: {why}", p.workload, p.target));
        }
    }

    for target in &mut targets {
        target.stop().await;
    }
    // Issues 24 and 27: last, each on a server of its own, alone on the machine.
    for shape in [crate::large_fetch::LARGE, crate::large_fetch::MANY] {
        if !plan.includes(shape.name) {
            continue;
        }
        let l = crate::large_fetch::run(&args.tessera, work.path(), &plan, shape).await;
        match &l.skipped {
            Some(why) => results
                .skipped
                .push(format!("{} on {}: {why}", shape.name, l.target)),
            None => eprintln!(
                "{}: peak RSS growth {:.1} MiB over idle, median fetch {} ms ({} fetches, {} errors)",
                shape.name,
                l.growth_mib,
                l.fetch_ms_median.map_or("-".into(), |v| format!("{v:.1}")),
                l.fetches_ok,
                l.errors
            ),
        }
        if shape.name == crate::large_fetch::LARGE_FETCH {
            results.large_fetch = Some(l);
        } else {
            results.many_fetch = Some(l);
        }
    }
    drop(schema);

    results.summarize();
    let report = report::render(&results);
    println!("{report}");
    let path = write_json(&args.out_dir, &results, started_at)?;
    println!("JSON results: {}", path.display());
    let errors = results.summary.as_ref().map_or(0, |s| s.total_errors);
    if errors > 0 {
        eprintln!(
            "\n!!! {errors} REQUESTS FAILED: this run is not valid (see the ERRORS section) !!!"
        );
        return Ok(3);
    }
    Ok(0)
}

async fn start_targets(
    args: &RunArgs,
    work: &Path,
    schema: Option<&Schema>,
    results: &mut Results,
) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    eprintln!("starting {TESSERA_SQLITE}");
    let tessera = Tessera::start(&args.tessera, work, None)
        .await
        .context("starting Tessera on SQLite")?;
    targets.push(Target {
        name: TESSERA_SQLITE.into(),
        kind: Kind::Tessera(tessera),
    });
    if let Some(schema) = schema {
        eprintln!("starting {TESSERA_POSTGRES} (schema {})", schema.name);
        let tessera = Tessera::start(&args.tessera, work, Some(schema.url()))
            .await
            .context("starting Tessera on PostgreSQL")?;
        targets.push(Target {
            name: TESSERA_POSTGRES.into(),
            kind: Kind::Tessera(tessera),
        });
    }
    match &args.bao {
        Some(bao) => {
            eprintln!("starting {OPENBAO}");
            let openbao = OpenBao::start(bao, work)
                .await
                .context("starting OpenBao")?;
            targets.push(Target {
                name: OPENBAO.into(),
                kind: Kind::OpenBao(openbao),
            });
        }
        None => results.skipped.push(format!(
            "{OPENBAO}: no `bao` binary given (--bao / BENCH_BAO)"
        )),
    }
    eprintln!("starting {CEILING}");
    targets.push(Target {
        name: CEILING.into(),
        kind: Kind::Ceiling(Ceiling::start(work).await?),
    });
    Ok(targets)
}

/// Loads the data sets; for Tessera also times restarts and reads memory.
async fn prepare(target: &mut Target, plan: &Plan) -> anyhow::Result<Setup> {
    let mut setup = Setup::default();
    if target.is_tessera() {
        tokio::time::sleep(IDLE_WAIT).await;
        setup.memory_fresh = Some(memory(target.pid())?);
    }
    eprintln!(
        "{}: loading {NAMES} + {SMALL_TEAM_SIZE} secrets",
        target.name
    );
    let big = measure::load(target, Team::Big, 0..NAMES, plan).await?;
    let small = measure::load(target, Team::Small, 0..SMALL_TEAM_SIZE, plan).await?;
    report_load(&target.name, "big", &big);
    setup.loads.insert("big".into(), big);
    setup.loads.insert("small".into(), small);
    if let Kind::Tessera(tessera) = &mut target.kind {
        let restarts = if plan.quick { 1 } else { RESTARTS };
        for _ in 0..restarts {
            let ready = tessera.restart().await?;
            setup.ready_ms.push(ready.as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(IDLE_WAIT).await;
        setup.memory_idle = Some(memory(tessera.pid())?);
        // After the idle memory reading, so the issue 5 figures are taken
        // exactly as before.
        tessera
            .create_read_key()
            .await
            .with_context(|| format!("{}: creating the workload key", target.name))?;
    }
    Ok(setup)
}

fn report_load(target: &str, set: &str, s: &Sample) {
    eprintln!(
        "{target}: loaded {set}: {} ok at {:.0}/s, {} errors",
        s.ok, s.rps, s.errors
    );
}

/// One run: every workload on every target. The order of targets rotates
/// from run to run so that none is always measured first (or right after
/// the heaviest one).
async fn measure_run(
    run: usize,
    targets: &[Target],
    plan: &Plan,
    schema: Option<&Schema>,
    work: &Path,
) -> anyhow::Result<Run> {
    let mut record = Run::default();
    let n = targets.len();
    for w in Workload::ALL
        .into_iter()
        .filter(|w| plan.includes(w.name()))
    {
        for target in targets.iter().cycle().skip(run % n).take(n) {
            if w.not_run_on(&target.name).is_some() {
                continue;
            }
            tokio::time::sleep(plan.settle).await;
            let sample = measure::workload(target, w, plan).await?;
            eprintln!(
                "[run {}/{}] {:<9} {:<16} {:>9.0} {}  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
                run + 1,
                plan.runs,
                w.name(),
                target.name,
                sample.rps,
                w.unit(),
                sample.p50_ms,
                sample.p99_ms,
                sample.errors
            );
            record
                .samples
                .entry(w.name().to_string())
                .or_default()
                .insert(target.name.clone(), sample);
        }
        if let (Workload::Upsert64, Some(schema)) = (w, schema) {
            tokio::time::sleep(plan.settle).await;
            let pgbench = pg::run_pgbench(schema, work, w.connections(), plan.upsert_64).await?;
            eprintln!(
                "[run {}/{}] pgbench   single-row upsert {:>9.0} tps",
                run + 1,
                plan.runs,
                pgbench.tps
            );
            record.pgbench = Some(pgbench);
        }
    }
    // Issue 9: after the workloads, Tessera targets only, in the same
    // rotation.
    for target in targets.iter().cycle().skip(run % n).take(n) {
        if !target.is_tessera() || !plan.includes(NEIGHBOUR) {
            continue;
        }
        tokio::time::sleep(plan.settle).await;
        let m = neighbour::measure(target, plan, run).await?;
        eprintln!(
            "[run {}/{}] {NEIGHBOUR} {:<16} list-100 p99 idle {:>7.2} ms, loaded {:>7.2} ms \
             (p50 {:.2} -> {:.2}); {:.0} big listings/s, {:.0} writes/s; errors {}",
            run + 1,
            plan.runs,
            target.name,
            m.idle.p99_ms,
            m.loaded.p99_ms,
            m.idle.p50_ms,
            m.loaded.p50_ms,
            m.big.rps,
            m.writes.rps,
            m.errors()
        );
        record.neighbour.insert(target.name.clone(), m);
    }
    Ok(record)
}

fn write_json(
    dir: &Path,
    results: &Results,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.json", started_at.format("%Y%m%dT%H%M%SZ")));
    std::fs::write(&path, serde_json::to_vec_pretty(results)?)?;
    Ok(path)
}
