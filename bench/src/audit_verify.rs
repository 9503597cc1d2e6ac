//! `tessera-bench audit-verify`: how long `tessera audit verify` takes over
//! a log of N events (issue 12's target: 1,000,000 in under 10 s). The log
//! is filled through the library (events of one kind, appended 10,000 per
//! transaction, as the server's own appender would), then the release
//! binary verifies it, timed from the outside, three times.

use anyhow::Context;
use clap::{Args, Parser};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct AuditVerifyArgs {
    /// The Tessera release binary.
    #[arg(long, default_value = "target/release/tessera")]
    pub tessera: PathBuf,
    /// Events in the log.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Scratch space (a real disk, as for `run`).
    #[arg(long, default_value = "target/bench-work")]
    pub work_dir: PathBuf,
}

/// The store's own flags, parsed as `tessera` parses them.
#[derive(Parser)]
struct Store {
    #[command(flatten)]
    args: tessera::config::StoreArgs,
}

const PER_TRANSACTION: usize = 10_000;

pub async fn run(args: AuditVerifyArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.work_dir)?;
    let dir = tempfile::tempdir_in(&args.work_dir)?;
    let data = dir.path().join("data");
    let data_arg = data.to_str().context("work dir is not UTF-8")?;
    let init = std::process::Command::new(&args.tessera)
        .args(["init", "--data-dir", data_arg])
        .output()?;
    anyhow::ensure!(init.status.success(), "tessera init failed");

    let store = Store::parse_from(["tessera", "--data-dir", data_arg]).args;
    let service = tessera::app::open_service(&store).await?;
    let started = Instant::now();
    let mut written = 0;
    while written < args.events {
        let n = PER_TRANSACTION.min(args.events - written);
        let batch = (0..n)
            .map(|i| {
                (
                    Some(format!("192.0.2.{}", i % 250)),
                    1,
                    "unknown_key=1".to_owned(),
                )
            })
            .collect();
        service.record_auth_failures(batch).await?;
        written += n;
    }
    println!(
        "filled the audit log: {written} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(service);

    let mut times = Vec::new();
    for round in 1..=3 {
        let started = Instant::now();
        let out = std::process::Command::new(&args.tessera)
            .args(["audit", "verify", "--data-dir", data_arg])
            .output()?;
        let took = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.status.success(),
            "audit verify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "[round {round}/3] tessera audit verify: {took:.2} s ({:.0} events/s) — {}",
            written as f64 / took,
            String::from_utf8_lossy(&out.stdout).trim()
        );
        times.push(took);
    }
    times.sort_by(f64::total_cmp);
    let median = times[1];
    println!(
        "audit verify over {written} events: median {median:.2} s ({:.0} events/s); target under 10 s: {}",
        written as f64 / median,
        if median < 10.0 { "met" } else { "NOT met" }
    );
    Ok(())
}
