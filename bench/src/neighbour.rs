//! Issue 9 (hostile clients): large reads must not starve the server's
//! workers. Another team's list-100 is measured alone (idle), then again
//! while 8 connections list the big team (10,000 secrets, the default quota
//! per team) and one more upserts a secret of the big team every 50 ms, so
//! that most big listings are real reads from the store rather than the
//! server's cached listing. Tessera targets only; once per run.

use crate::client::{self, LoadResult, RequestSet, Spec};
use crate::config::Plan;
use crate::measure::Sample;
use crate::process::{cpu_seconds, machine_busy_seconds};
use crate::targets::{Target, Team};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

/// The measurement's name in the tables, the JSON and the error list.
pub const NEIGHBOUR: &str = "neighbour";
/// Connections listing the team of 100 (the measured neighbour).
pub const NEIGHBOUR_CONNECTIONS: usize = 8;
/// Connections listing the big team at the same time.
pub const BIG_LISTERS: usize = 8;
/// One upsert of the big team this often during the loaded phase.
pub const WRITE_EVERY: Duration = Duration::from_millis(50);
/// The goal of issue 9: loaded p99 / idle p99 below this.
pub const MAX_P99_RATIO: f64 = 3.0;
/// Upserts built for one loaded phase; each carries a value of its own,
/// so more than a phase can send (20 per second).
const WRITES_BUILT: usize = 8_192;
/// A write that takes longer than this counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One run of the measurement on one target.
#[derive(Debug, Clone, Serialize)]
pub struct Neighbour {
    /// list-100 on 8 connections, nothing else running.
    pub idle: Sample,
    /// The same, while the big team is listed and written.
    pub loaded: Sample,
    /// The 8 connections listing the big team during the loaded phase
    /// (rps: big listings per second).
    pub big: Sample,
    /// The upserts of the big team (one every 50 ms; rps: writes per second).
    pub writes: Sample,
}

impl Neighbour {
    pub fn errors(&self) -> u64 {
        self.parts().map(|(_, s)| s.errors).sum()
    }

    /// The four samples with the name of their part.
    pub fn parts(&self) -> impl Iterator<Item = (&'static str, &Sample)> {
        [
            ("idle list-100", &self.idle),
            ("loaded list-100", &self.loaded),
            ("big listings", &self.big),
            ("big-team writes", &self.writes),
        ]
        .into_iter()
    }

    /// loaded p99 / idle p99 (None when either has no successful request).
    pub fn p99_ratio(&self) -> Option<f64> {
        let (idle, loaded) = (self.idle.p99_ms, self.loaded.p99_ms);
        (idle.is_finite() && loaded.is_finite() && idle > 0.0).then(|| loaded / idle)
    }
}

/// Both phases on one target; `run` makes this run's written values differ
/// from every other run's.
pub async fn measure(target: &Target, plan: &Plan, run: usize) -> anyhow::Result<Neighbour> {
    let small = Arc::new(target.list(Team::Small)?);
    let big = Arc::new(target.list(Team::Big)?);
    let writes = target.fresh_upserts(WRITES_BUILT, (run as u64 + 1) << 32)?;
    let spec = |connections: usize, threads: usize| Spec {
        connections,
        warmup: plan.warmup,
        duration: Some(plan.list_100),
        limit: None,
        threads,
    };
    let addr = target.addr();
    let pid = target.pid();

    let cpu = Cpu::start(pid)?;
    let idle = client::run(
        addr,
        small.clone(),
        spec(NEIGHBOUR_CONNECTIONS, plan.client_threads),
    )
    .await;
    let mut idle = Sample::from(idle);
    cpu.finish(&mut idle)?;

    tokio::time::sleep(plan.settle).await;
    let cpu = Cpu::start(pid)?;
    // All three start together and share one measured window (same warm-up,
    // same duration). The big listers only drain their answers: one client
    // thread is enough for them.
    let (loaded, big, writes) = tokio::join!(
        client::run(
            addr,
            small,
            spec(NEIGHBOUR_CONNECTIONS, plan.client_threads)
        ),
        client::run(addr, big, spec(BIG_LISTERS, 1)),
        paced_writes(addr, &writes, plan.warmup, plan.list_100),
    );
    let mut loaded = Sample::from(loaded);
    cpu.finish(&mut loaded)?;
    Ok(Neighbour {
        idle,
        loaded,
        big: Sample::from(big),
        writes: Sample::from(writes),
    })
}

/// CPU counters at the start of a phase (as measure::workload reads them).
struct Cpu {
    pid: u32,
    server: f64,
    client: f64,
    machine: f64,
    at: std::time::Instant,
}

impl Cpu {
    fn start(pid: u32) -> anyhow::Result<Self> {
        Ok(Cpu {
            pid,
            server: cpu_seconds(Some(pid))?,
            client: cpu_seconds(None)?,
            machine: machine_busy_seconds()?,
            at: std::time::Instant::now(),
        })
    }

    fn finish(self, sample: &mut Sample) -> anyhow::Result<()> {
        let wall = self.at.elapsed().as_secs_f64();
        let server = cpu_seconds(Some(self.pid))? - self.server;
        let client = cpu_seconds(None)? - self.client;
        let machine = machine_busy_seconds()? - self.machine;
        sample.server_cores = server / wall;
        sample.client_cores = client / wall;
        sample.other_cores = (machine - server - client).max(0.0) / wall;
        Ok(())
    }
}

/// One upsert every [`WRITE_EVERY`] on one keep-alive connection (reopened
/// after a failure) until the window ends; latencies and successes count
/// inside the window only, failures anywhere.
async fn paced_writes(
    addr: SocketAddr,
    set: &RequestSet,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let record_from = Instant::now() + warmup;
    let end = record_from + duration;
    let mut result = LoadResult::empty();
    let mut tick = tokio::time::interval(WRITE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut turn = 0;
    loop {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let mut conn = match sender.take() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    result.record_error("connect".into(), || format!("connect to {addr}: {e}"));
                    continue;
                }
            },
        };
        let started = Instant::now();
        let sent = tokio::time::timeout(WRITE_TIMEOUT, write(&mut conn, set, turn)).await;
        turn += 1;
        let finished = Instant::now();
        result.completed += 1;
        match sent {
            Ok(Ok(StatusCode::OK)) => {
                if finished >= record_from && finished <= end {
                    result.ok += 1;
                    let us = (finished - started).as_micros() as u64;
                    let _ = result.latency_us.record(us.max(1));
                }
                sender = Some(conn);
            }
            Ok(Ok(status)) => {
                result.record_error(format!("HTTP {}", status.as_u16()), || {
                    format!("big-team upsert answered {status}")
                });
                sender = Some(conn);
            }
            Ok(Err(e)) => {
                result.record_error("transport".into(), || format!("big-team upsert: {e}"));
            }
            Err(_) => {
                result.record_error("timeout".into(), || {
                    format!("a big-team upsert took more than {WRITE_TIMEOUT:?}")
                });
            }
        }
    }
    result.window = duration;
    result
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    // Drives the connection until the sender is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn write(
    sender: &mut SendRequest<Full<Bytes>>,
    set: &RequestSet,
    turn: usize,
) -> anyhow::Result<StatusCode> {
    sender.ready().await?;
    let res = sender.send_request(set.build(turn)).await?;
    let status = res.status();
    res.into_body().collect().await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::Neighbour;
    use crate::measure::Sample;
    use std::collections::BTreeMap;

    fn sample(p99_ms: f64, errors: u64) -> Sample {
        Sample {
            rps: 100.0,
            p50_ms: 1.0,
            p99_ms,
            ok: 10,
            errors,
            error_kinds: BTreeMap::new(),
            first_error: None,
            server_cores: f64::NAN,
            server_cpu_us_per_request: f64::NAN,
            client_cores: f64::NAN,
            other_cores: f64::NAN,
            memory: None,
        }
    }

    #[test]
    fn ratio_and_errors() {
        let n = Neighbour {
            idle: sample(2.0, 0),
            loaded: sample(5.0, 1),
            big: sample(40.0, 2),
            writes: sample(3.0, 0),
        };
        assert_eq!(n.p99_ratio(), Some(2.5));
        assert_eq!(n.errors(), 3);
        let none = Neighbour {
            idle: sample(f64::NAN, 0),
            ..n
        };
        assert_eq!(none.p99_ratio(), None);
    }
}
