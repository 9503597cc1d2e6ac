//! `tessera-bench soak`: good, bad and slow clients together against the
//! release binary for N minutes (loopback only), reporting errors, latency
//! drift (p50/p99 per minute) and RSS drift. `bench/soak.sh` is the entry
//! point.

mod good;
mod hostile;
mod stats;

use crate::pg::Schema;
use crate::process::memory;
use crate::targets::tessera::Tessera;
use crate::targets::Team;
use clap::Args;
use stats::Stats;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// How long each backend is soaked.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// The Tessera release binary.
    #[arg(long, default_value = "target/release/tessera")]
    pub tessera: PathBuf,
    /// Also soak Tessera on this PostgreSQL (a fresh schema, dropped after).
    #[arg(long, env = "TESSERA_TEST_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Good keep-alive connections, and their requests per second in all.
    #[arg(long, default_value_t = 16)]
    pub good_connections: usize,
    #[arg(long, default_value_t = 400)]
    pub good_rate: u64,
    /// Bad clients and their requests per second in all.
    #[arg(long, default_value_t = 8)]
    pub bad_clients: usize,
    #[arg(long, default_value_t = 100)]
    pub bad_rate: u64,
    /// Sockets trickling request heads, and sockets idling on keep-alive.
    #[arg(long, default_value_t = 300)]
    pub slowloris: usize,
    #[arg(long, default_value_t = 300)]
    pub idle: usize,
    /// Scratch space for the data directory (a real disk).
    #[arg(long, default_value = "target/bench-work")]
    pub work_dir: PathBuf,
}

pub struct Plan {
    pub addr: SocketAddr,
    pub key: String,
    pub team_id: String,
    pub end: Instant,
    pub good_connections: usize,
    pub good_rate: u64,
    pub bad_clients: usize,
    pub bad_rate: u64,
    /// The server's header-read timeout (its default).
    pub header_timeout: Duration,
}

/// A connection from a chosen loopback source address, so that the good,
/// bad and slow clients are three client addresses to the server.
pub async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().expect("an IP"), 0))?;
    let stream = socket.connect(to).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Runs the soak on each backend; returns the process exit code (3 on any
/// unexpected outcome).
pub async fn run(args: SoakArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.work_dir)?;
    let mut failed = false;
    failed |= !soak_one("sqlite", None, &args).await?;
    if let Some(url) = args.database_url.clone() {
        let schema = Schema::create(&url).await?;
        failed |= !soak_one("postgres", Some(schema.url()), &args).await?;
    } else {
        println!("\n(PostgreSQL skipped: TESSERA_TEST_DATABASE_URL is not set)");
    }
    Ok(if failed { 3 } else { 0 })
}

async fn soak_one(
    backend: &str,
    database_url: Option<String>,
    args: &SoakArgs,
) -> anyhow::Result<bool> {
    let mut server = Tessera::start(&args.tessera, &args.work_dir, database_url).await?;
    let pid = server.pid();
    let (team_id, key) = server.tenant(Team::Big);
    let start = Instant::now();
    let duration = Duration::from_secs(args.minutes * 60);
    let plan = Arc::new(Plan {
        addr: server.addr,
        key: key.to_string(),
        team_id: team_id.to_string(),
        end: start + duration,
        good_connections: args.good_connections,
        good_rate: args.good_rate,
        bad_clients: args.bad_clients,
        bad_rate: args.bad_rate,
        header_timeout: Duration::from_secs(10),
    });
    let stats = Arc::new(Stats::new(start, args.minutes as usize));
    println!(
        "\n## soak: tessera-{backend}, {} min: {} good connections at {} req/s, {} bad clients at {} req/s, \
         {} slowloris and {} idle sockets",
        args.minutes, args.good_connections, args.good_rate, args.bad_clients, args.bad_rate,
        args.slowloris, args.idle
    );
    let idle_rss = memory(pid)?.rss_kib;
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..args.good_connections {
        tasks.spawn(good::run(plan.clone(), stats.clone(), id));
    }
    for id in 0..args.bad_clients {
        tasks.spawn(hostile::bad(plan.clone(), stats.clone(), id));
    }
    for i in 0..(args.slowloris + args.idle) {
        let idle = i >= args.slowloris;
        let (plan, stats) = (plan.clone(), stats.clone());
        tasks.spawn(async move {
            // Spread the sockets' start over the first 10 s.
            tokio::time::sleep(Duration::from_millis((i as u64 * 17) % 10_000)).await;
            hostile::slow(plan, stats, idle).await
        });
    }
    // RSS every 5 s, printed once a minute.
    let sampler = {
        let (stats, plan) = (stats.clone(), plan.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            while Instant::now() < plan.end {
                tick.tick().await;
                if let Ok(m) = memory(pid) {
                    stats.rss(Instant::now(), m.rss_kib);
                }
            }
        }
    };
    let progress = {
        let plan = plan.clone();
        async move {
            let mut minute = 0;
            while Instant::now() < plan.end {
                tokio::time::sleep_until(
                    (start + Duration::from_secs(60 * (minute + 1))).min(plan.end),
                )
                .await;
                minute += 1;
                eprintln!("soak: {backend}: minute {minute} done");
            }
        }
    };
    tokio::join!(sampler, progress, async {
        while tasks.join_next().await.is_some() {}
    });
    let final_rss = memory(pid)?.rss_kib;
    let stop_started = std::time::Instant::now();
    server.stop().await;
    let stop_took = stop_started.elapsed();
    let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
    report(&stats, idle_rss, final_rss, stop_took, &log);
    let unexpected = stats.unexpected();
    let panicked = log.contains("panic");
    if unexpected > 0 || panicked {
        println!(
            "\n**FAILED**: {unexpected} unexpected outcomes{}; first: {}",
            if panicked {
                ", and the server panicked"
            } else {
                ""
            },
            stats.first_error.lock().clone().unwrap_or_default()
        );
        return Ok(false);
    }
    println!("\nNo unexpected outcome.");
    Ok(true)
}

fn report(stats: &Stats, idle_rss: u64, final_rss: u64, stop_took: Duration, log: &str) {
    let minutes = stats.minutes.lock();
    println!("\n| minute | good 200s | good errors | p50 ms | p99 ms | max RSS MiB |");
    println!("|---|---|---|---|---|---|");
    let q = |m: &stats::Minute, q: f64| {
        if m.latency_us.is_empty() {
            f64::NAN
        } else {
            m.latency_us.value_at_quantile(q) as f64 / 1000.0
        }
    };
    for (i, m) in minutes.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.1} |",
            i + 1,
            m.ok,
            m.errors.values().sum::<u64>(),
            q(m, 0.5),
            q(m, 0.99),
            m.rss_kib as f64 / 1024.0
        );
    }
    if let (Some(first), Some(last)) = (minutes.first(), minutes.last()) {
        println!(
            "\nDrift, last minute vs first: p50 {:.2}x, p99 {:.2}x, max RSS {:+.1} MiB. \
             RSS idle before the soak {:.1} MiB, at its end {:.1} MiB.",
            q(last, 0.5) / q(first, 0.5),
            q(last, 0.99) / q(first, 0.99),
            (last.rss_kib as f64 - first.rss_kib as f64) / 1024.0,
            idle_rss as f64 / 1024.0,
            final_rss as f64 / 1024.0
        );
    }
    println!("\n| hostile client | outcome | count |");
    println!("|---|---|---|");
    for (kind, outcomes) in stats.hostile.lock().iter() {
        for (outcome, n) in outcomes {
            println!("| {kind} | {outcome} | {n} |");
        }
    }
    println!("\n| socket | closed by the server after (s): p50 | max |");
    println!("|---|---|---|");
    for (kind, h) in stats.held_ms.lock().iter() {
        println!(
            "| {kind} | {:.1} | {:.1} |",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    let auth_lines = log.matches("authentication failed").count();
    println!(
        "\nServer log: {auth_lines} authentication-failure lines, {} accept-error lines, \
         {} connection-refusal lines; graceful stop took {:.1} s.",
        log.matches("accepting connections fails").count(),
        log.matches("refusing connections beyond a limit").count(),
        stop_took.as_secs_f64()
    );
}
