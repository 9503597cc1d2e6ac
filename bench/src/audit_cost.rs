//! `tessera-bench audit-cost`: what the audit log costs, the same build
//! with it on and off (issue 12's targets: upsert-64 and fetch-100 with the
//! log on at least 0.85× of off). Four servers run side by side (SQLite and
//! PostgreSQL, each with `--audit-log on` and `off`), loaded alike; each
//! round measures every workload on each pair back to back, in alternating
//! order, so that every ratio pairs two measurements taken seconds apart.
//! Reported: each pair's median throughput and the median (and range) of
//! the per-round ratios.

use crate::config::Plan;
use crate::measure::{self, Sample};
use crate::pg::Schema;
use crate::stats::Stat;
use crate::targets::tessera::Tessera;
use crate::targets::{Kind, Target, Team};
use crate::workloads::{Workload, NAMES, SMALL_TEAM_SIZE};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct AuditCostArgs {
    /// The Tessera release binary.
    #[arg(long, default_value = "target/release/tessera")]
    pub tessera: PathBuf,
    /// PostgreSQL server for the two PostgreSQL targets (skipped without).
    #[arg(long, env = "TESSERA_TEST_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Rounds (each measures every workload once on every target).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds each measurement lasts.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Worker threads of the load client.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Scratch space (a real disk, as for `run`).
    #[arg(long, default_value = "target/bench-work")]
    pub work_dir: PathBuf,
}

const WORKLOADS: [Workload; 2] = [Workload::Upsert64, Workload::Fetch100];
/// The target the issue sets for each workload.
const TARGET_RATIO: f64 = 0.85;

/// One engine with the log on and off.
struct Pair {
    engine: &'static str,
    on: Target,
    off: Target,
    /// Per workload: (on, off) samples, one per round.
    samples: Vec<Vec<(Sample, Sample)>>,
}

pub async fn run(args: AuditCostArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.work_dir)?;
    let work = tempfile::Builder::new()
        .prefix("audit-cost-")
        .tempdir_in(&args.work_dir)?;
    let plan = plan(&args);
    let mut schemas = Vec::new();
    let mut pairs = Vec::new();
    for engine in ["sqlite", "postgres"] {
        let url = match (engine, &args.database_url) {
            ("sqlite", _) => None,
            (_, Some(admin)) => {
                let on = Schema::create(admin).await?;
                let off = Schema::create(admin).await?;
                let urls = (on.url(), off.url());
                schemas.extend([on, off]);
                Some(urls)
            }
            (_, None) => {
                eprintln!("postgres: skipped (TESSERA_TEST_DATABASE_URL is not set)");
                continue;
            }
        };
        let (url_on, url_off) = match url {
            Some((on, off)) => (Some(on), Some(off)),
            None => (None, None),
        };
        let mut on = start(&args, work.path(), engine, "on", url_on).await?;
        let mut off = start(&args, work.path(), engine, "off", url_off).await?;
        for target in [&mut on, &mut off] {
            prepare(target, &plan).await?;
        }
        pairs.push(Pair {
            engine,
            on,
            off,
            samples: vec![Vec::new(); WORKLOADS.len()],
        });
    }

    for round in 0..args.rounds {
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for pair in &mut pairs {
                // Alternate which of the two goes first.
                let first_on = round % 2 == 0;
                let mut measured = Vec::new();
                for on in [first_on, !first_on] {
                    let target = if on { &pair.on } else { &pair.off };
                    tokio::time::sleep(plan.settle).await;
                    let sample = measure::workload(target, *workload, &plan).await?;
                    anyhow::ensure!(
                        sample.errors == 0,
                        "{}: {} requests failed: {:?}",
                        target.name,
                        sample.errors,
                        sample.first_error
                    );
                    eprintln!(
                        "[round {}/{}] {:<9} {:<14} {:>9.0} {}",
                        round + 1,
                        args.rounds,
                        workload.name(),
                        target.name,
                        sample.rps,
                        workload.unit()
                    );
                    measured.push((on, sample));
                }
                let (a, b) = (measured.remove(0), measured.remove(0));
                let (on, off) = if a.0 { (a.1, b.1) } else { (b.1, a.1) };
                pair.samples[w].push((on, off));
            }
        }
    }

    println!(
        "\n### Audit log on vs off (the same build; {} rounds of {} s)\n",
        args.rounds, args.seconds
    );
    println!("| engine | workload | on (median) | off (median) | on/off per round: median | min–max | target ≥ {TARGET_RATIO} |");
    println!("|---|---|---|---|---|---|---|");
    for pair in &pairs {
        for (w, workload) in WORKLOADS.iter().enumerate() {
            let samples = &pair.samples[w];
            let on = Stat::of(samples.iter().map(|(on, _)| on.rps)).context("no samples")?;
            let off = Stat::of(samples.iter().map(|(_, off)| off.rps)).context("no samples")?;
            let ratio =
                Stat::of(samples.iter().map(|(on, off)| on.rps / off.rps)).context("no samples")?;
            println!(
                "| {} | {} | {:.0} {unit} | {:.0} {unit} | {:.2}× | {:.2}–{:.2}× | {} |",
                pair.engine,
                workload.name(),
                on.median,
                off.median,
                ratio.median,
                ratio.min,
                ratio.max,
                if ratio.median >= TARGET_RATIO {
                    "met"
                } else {
                    "NOT met"
                },
                unit = workload.unit(),
            );
        }
    }
    for pair in &mut pairs {
        pair.on.stop().await;
        pair.off.stop().await;
    }
    drop(schemas);
    Ok(())
}

fn plan(args: &AuditCostArgs) -> Plan {
    let each = Duration::from_secs(args.seconds);
    Plan {
        quick: false,
        runs: args.rounds,
        warmup: Duration::from_secs(1),
        upsert_64: each,
        upsert_1: each,
        list_100: each,
        list_10k: each,
        fetch_100: each,
        rounds: 0,
        round_settle: Duration::from_millis(200),
        idle_probe: Duration::ZERO,
        settle: Duration::from_millis(500),
        load_100k: false,
        client_threads: args.client_threads,
        only: Vec::new(),
    }
}

async fn start(
    args: &AuditCostArgs,
    work: &std::path::Path,
    engine: &str,
    audit: &str,
    database_url: Option<String>,
) -> anyhow::Result<Target> {
    let name = format!("{engine}-{audit}");
    eprintln!("starting {name}");
    let tessera = Tessera::start_with(&args.tessera, work, database_url, &["--audit-log", audit])
        .await
        .with_context(|| format!("starting {name}"))?;
    Ok(Target {
        name,
        kind: Kind::Tessera(tessera),
    })
}

/// The data sets `run` loads, and the workload key.
async fn prepare(target: &mut Target, plan: &Plan) -> anyhow::Result<()> {
    eprintln!(
        "{}: loading {NAMES} + {SMALL_TEAM_SIZE} secrets",
        target.name
    );
    measure::load(target, Team::Big, 0..NAMES, plan).await?;
    measure::load(target, Team::Small, 0..SMALL_TEAM_SIZE, plan).await?;
    if let Kind::Tessera(tessera) = &mut target.kind {
        tessera.create_read_key().await?;
    }
    Ok(())
}
