//! Issue 24, finding 3: the server's memory while eight clients fetch a
//! team at the quota on its values' bytes (the default 64 MiB: 1,024 values
//! of 64 KiB, the default largest value) at once, every one reading its
//! answer in full. The figure is the peak RSS over the fetches minus the
//! RSS of the same server idle just before them (target < 192 MiB). Before
//! answers were streamed, one such fetch held the whole team (ciphertexts,
//! plaintexts and the rendered body) at once.
//!
//! Runs on a Tessera (SQLite) of its own, started for it after everything
//! else, so that none of the other figures sees its 64 MiB of values.
//!
//! Issue 27 adds a second shape, `fetch-10k`: one client fetching a team at
//! the secrets quota (10,000 values of 100 bytes) again and again, the load
//! under which a cache smaller than one team flushes itself on every pass.

use crate::client::oneshot;
use crate::config::Plan;
use crate::process::memory;
use crate::targets::tessera::Tessera;
use crate::targets::Team;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub const LARGE_FETCH: &str = "fetch-large";
pub const MANY_FETCH: &str = "fetch-10k";
/// The target: peak RSS growth over idle, MiB.
pub const TARGET_MIB: f64 = 192.0;

/// What is fetched, by how many clients, how often.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub name: &'static str,
    secrets: usize,
    value_bytes: usize,
    clients: usize,
    rounds: usize,
    quick_rounds: usize,
}

/// 8 clients, 1,024 x 64 KiB = 64 MiB, the default quota exactly.
pub const LARGE: Shape = Shape {
    name: LARGE_FETCH,
    secrets: 1024,
    value_bytes: 64 * 1024,
    clients: 8,
    rounds: 5,
    quick_rounds: 2,
};

/// 1 client, 10,000 values of 100 bytes: the default secrets quota exactly.
pub const MANY: Shape = Shape {
    name: MANY_FETCH,
    secrets: 10_000,
    value_bytes: 100,
    clients: 1,
    rounds: 30,
    quick_rounds: 10,
};
/// Concurrent writes while the team is filled.
const WRITERS: usize = 8;
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Default, Serialize)]
pub struct LargeFetch {
    pub workload: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub secrets: usize,
    pub team_bytes: u64,
    pub clients: usize,
    /// Fetches each client made, one after another.
    pub fetches_per_client: usize,
    /// Fetches answered 200 and read in full.
    pub fetches_ok: usize,
    pub errors: usize,
    pub rss_idle_kib: u64,
    pub rss_peak_kib: u64,
    /// (peak - idle) / 1024.
    pub growth_mib: f64,
    /// Median time of one fetch (request sent -> body read), ms.
    pub fetch_ms_median: Option<f64>,
    pub seconds: f64,
}

/// Runs the workload; a failure is reported as `skipped` with its reason.
pub async fn run(bin: &Path, work: &Path, plan: &Plan, shape: Shape) -> LargeFetch {
    match measure(bin, work, plan, shape).await {
        Ok(m) => m,
        Err(e) => LargeFetch {
            workload: shape.name.into(),
            target: crate::targets::TESSERA_SQLITE.into(),
            skipped: Some(format!("{e:#}")),
            ..LargeFetch::default()
        },
    }
}

async fn measure(bin: &Path, work: &Path, plan: &Plan, shape: Shape) -> anyhow::Result<LargeFetch> {
    let mut tessera = Tessera::start(bin, work, None)
        .await
        .with_context(|| format!("starting Tessera for {}", shape.name))?;
    let result = measure_on(&tessera, plan, shape).await;
    tessera.stop().await;
    result
}

async fn measure_on(tessera: &Tessera, plan: &Plan, shape: Shape) -> anyhow::Result<LargeFetch> {
    let addr = tessera.addr;
    let (team, admin) = tessera.tenant(Team::Big);
    let admin = format!("Bearer {admin}");
    eprintln!(
        "{}: filling a team with {} values of {} bytes",
        shape.name, shape.secrets, shape.value_bytes
    );
    fill(addr, &admin, shape).await?;
    let key = read_key(addr, &admin, team).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = tessera.pid();
    let idle = memory(pid)?.rss_kib;
    // Reset the kernel's peak (VmHWM) to the RSS now, so that the peak read
    // at the end is that of the fetches; sampled too, in case it cannot be.
    let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let done = Arc::new(AtomicBool::new(false));
    let sampled = Arc::new(AtomicU64::new(idle));
    let sampler = {
        let (done, sampled) = (done.clone(), sampled.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(m) = memory(pid) {
                    sampled.fetch_max(m.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    let rounds = if plan.quick {
        shape.quick_rounds
    } else {
        shape.rounds
    };
    let started = Instant::now();
    let clients: Vec<_> = (0..shape.clients)
        .map(|_| {
            let auth = format!("Bearer {key}");
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut errors = 0;
                for _ in 0..rounds {
                    let t = Instant::now();
                    match fetch(addr, &auth).await {
                        Ok(bytes) if bytes as usize > shape.secrets * shape.value_bytes => {
                            times.push(t.elapsed().as_secs_f64() * 1000.0)
                        }
                        Ok(_) | Err(_) => errors += 1,
                    }
                }
                (times, errors)
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (t, e) = c.await?;
        times.extend(t);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let mut peak = sampled.load(Ordering::Relaxed);
    if hwm_reset {
        peak = peak.max(memory(pid)?.hwm_kib);
    }
    let fetches_ok = times.len();
    Ok(LargeFetch {
        workload: shape.name.into(),
        target: crate::targets::TESSERA_SQLITE.into(),
        skipped: None,
        secrets: shape.secrets,
        team_bytes: (shape.secrets * shape.value_bytes) as u64,
        clients: shape.clients,
        fetches_per_client: rounds,
        fetches_ok,
        errors,
        rss_idle_kib: idle,
        rss_peak_kib: peak,
        growth_mib: peak.saturating_sub(idle) as f64 / 1024.0,
        fetch_ms_median: crate::stats::Stat::of(times.iter().copied()).map(|s| s.median),
        seconds,
    })
}

/// Writes the team's values, a few at a time.
async fn fill(addr: SocketAddr, admin: &str, shape: Shape) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (next, admin) = (next.clone(), admin.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= shape.secrets {
                        return anyhow::Ok(());
                    }
                    let head = format!("large-{i:05}-");
                    let mut value = head.clone();
                    value.push_str(&"x".repeat(shape.value_bytes.saturating_sub(head.len())));
                    let body = serde_json::json!({"name": format!("large-{i:05}"), "value": value});
                    let (status, reply) = oneshot(
                        addr,
                        Method::POST,
                        "/v1/secrets",
                        &[(AUTHORIZATION, admin.as_str())],
                        serde_json::to_vec(&body)?,
                    )
                    .await?;
                    anyhow::ensure!(
                        status == StatusCode::OK,
                        "writing value {i}: {status} {}",
                        String::from_utf8_lossy(&reply)
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    Ok(())
}

/// A WORKSPACE_READ_SECRETS key of the team.
async fn read_key(addr: SocketAddr, admin: &str, team: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"type": "WORKSPACE_READ_SECRETS", "name": "fetch-large"});
    let (status, reply) = oneshot(
        addr,
        Method::POST,
        &format!("/v1/teams/{team}/api_keys"),
        &[(AUTHORIZATION, admin)],
        serde_json::to_vec(&body)?,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "creating a read key: {status}");
    let reply: serde_json::Value = serde_json::from_slice(&reply)?;
    Ok(reply["api_key"]
        .as_str()
        .context("no api_key in the answer")?
        .to_owned())
}

/// One full fetch, reading the body as it arrives and keeping none of it;
/// returns the bytes read.
async fn fetch(addr: SocketAddr, auth: &str) -> anyhow::Result<u64> {
    let req = Request::builder()
        .method(Method::GET)
        .uri("/runtime/v1/secrets")
        .header(HOST, addr.to_string())
        .header(AUTHORIZATION, auth)
        .body(Empty::<Bytes>::new())?;
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        let call = async move {
            let res = sender.send_request(req).await?;
            anyhow::ensure!(res.status() == StatusCode::OK, "fetch: {}", res.status());
            let mut body = res.into_body();
            let mut bytes = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    bytes += data.len() as u64;
                }
            }
            anyhow::Ok(bytes)
        };
        let (_, reply) = tokio::join!(conn, call);
        reply
    };
    tokio::time::timeout(Duration::from_secs(120), exchange)
        .await
        .context("a large fetch did not finish in 120 s")?
}
