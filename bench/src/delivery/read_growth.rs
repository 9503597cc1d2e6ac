//! read-growth (issue 24, finding 4): one read key fetching its scope at
//! full speed for 60 s, with a new `X-Tessera-Agent` instance id on every
//! request and the rate limit off (the bench serves with `--rate-limit
//! off`); the figure is how much the SQLite store's files grew. Reads fold
//! on what the server knows, so the target is under 1 MB.

use super::Propagation;
use crate::targets::tessera::Tessera;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub const READ_GROWTH: &str = "read-growth";

/// How long the key reads.
const READ_FOR: Duration = Duration::from_secs(60);

/// Connections reading at once (one key, as fast as they can).
const CONNECTIONS: usize = 4;

/// Time for the server's once-a-second flushes to land after the reads.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize)]
pub struct StoreGrowth {
    pub seconds: f64,
    pub reads: u64,
    pub reads_per_s: f64,
    pub store_bytes_before: u64,
    pub store_bytes_after: u64,
    pub growth_bytes: i64,
}

/// The SQLite store's files (database, WAL, shared memory), in bytes.
fn store_bytes(t: &Tessera) -> u64 {
    let Ok(dir) = std::fs::read_dir(t.data_dir()) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("tessera.db"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

pub async fn run(t: &Tessera, p: &mut Propagation) -> anyhow::Result<()> {
    let key = t.read_key().context("no read key")?.to_owned();
    let addr = t.addr;
    // One read first, so that the measured window starts after the
    // content's first record.
    one_read(addr, &key, "warm").await?;
    tokio::time::sleep(SETTLE).await;
    let before = store_bytes(t);
    let reads = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + READ_FOR;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (key, reads, errors) = (key.clone(), reads.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let run = async {
                let stream = TcpStream::connect(addr).await?;
                let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let req = Request::builder()
                        .uri("/runtime/v1/secrets")
                        .header(HOST, addr.to_string())
                        .header(AUTHORIZATION, format!("Bearer {key}"))
                        .header("x-tessera-agent", format!("bench-{c}-{n}"))
                        .body(Full::new(Bytes::new()))?;
                    sender.ready().await?;
                    let res = sender.send_request(req).await?;
                    let status = res.status();
                    let _ = res.into_body().collect().await?;
                    if status == StatusCode::OK {
                        reads.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            };
            run.await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let after = store_bytes(t);
    let reads = reads.load(Ordering::Relaxed);
    p.errors = errors.load(Ordering::Relaxed);
    p.store_growth = Some(StoreGrowth {
        seconds,
        reads,
        reads_per_s: reads as f64 / seconds,
        store_bytes_before: before,
        store_bytes_after: after,
        growth_bytes: after as i64 - before as i64,
    });
    Ok(())
}

async fn one_read(addr: std::net::SocketAddr, key: &str, instance: &str) -> anyhow::Result<()> {
    let (status, _) = crate::client::oneshot(
        addr,
        hyper::Method::GET,
        "/runtime/v1/secrets",
        &[
            (AUTHORIZATION, &format!("Bearer {key}")),
            (
                hyper::header::HeaderName::from_static("x-tessera-agent"),
                instance,
            ),
        ],
        Bytes::new(),
    )
    .await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET /runtime/v1/secrets answered {status}"
    );
    Ok(())
}
