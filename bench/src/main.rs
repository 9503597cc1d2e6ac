//! `tessera-bench`: starts Tessera, OpenBao and a no-storage axum "ceiling"
//! on loopback, drives them all with the same load client and workloads, and
//! prints one table per workload (also written as JSON). `bench/run.sh` is the
//! documented entry point; it builds the binaries and installs OpenBao first.

// A measuring tool, not the server: a broken invariant ends the run loudly,
// which is what a benchmark should do.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly where it cannot go on"
)]

mod audit_cost;
mod audit_verify;
mod ceiling;
mod client;
mod config;
mod delivery;
mod environment;
mod large_fetch;
mod measure;
mod neighbour;
mod pg;
mod process;
mod report;
mod soak;
mod stats;
mod suite;
mod targets;
mod workloads;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "tessera-bench",
    about = "Side-by-side load benchmark: Tessera, OpenBao, and a no-storage ceiling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole benchmark and print the tables.
    Run(config::RunArgs),
    /// Serve the ceiling target (used by `run`, which starts it as a child
    /// process so that it is measured exactly like the other servers).
    Ceiling {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Good, bad and slow clients together for N minutes against the
    /// release binary (loopback only); reports errors, latency and RSS drift.
    Soak(soak::SoakArgs),
    /// Time `tessera audit verify` over a log of N events (default 1,000,000).
    AuditVerify(audit_verify::AuditVerifyArgs),
    /// upsert-64 and fetch-100 with the audit log on against off, the same
    /// build side by side, on both engines.
    AuditCost(audit_cost::AuditCostArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        // Default worker count (one per core), like the servers it stands in for.
        Command::Ceiling { listen } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(ceiling::serve(listen)),
        Command::AuditCost(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(audit_cost::run(args)),
        Command::AuditVerify(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(audit_verify::run(args)),
        Command::Soak(args) => {
            let code = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(async {
                    tokio::select! {
                        code = soak::run(args) => code,
                        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
                    }
                })?;
            std::process::exit(code);
        }
        Command::Run(args) => {
            // Orchestration only: the load client runs its own threads (see
            // client::load), so one thread is enough here.
            let code = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    // On Ctrl-C, dropping the run stops every server it
                    // started, drops the PostgreSQL schema and removes the
                    // data directories.
                    tokio::select! {
                        code = suite::run(args) => code,
                        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
                    }
                })?;
            std::process::exit(code);
        }
    }
}
