//! The issue 8 propagation workloads: how long a write takes to reach the
//! workloads that follow a team.
//!
//! - propagate-1k: 1,000 long-poll waiters on one node (SQLite); one upsert;
//!   upsert sent → the last waiter has read its whole 200 answer. Also the
//!   server's RSS per idle waiter and its CPU while they wait.
//! - propagate-pg: a second node on the same PostgreSQL database; the write
//!   on the first, 100 waiters on the second.
//! - agent: `tessera agent --dir DIR`; upsert sent → the agent's file holds
//!   the new bytes.
//! - read-growth (issue 24): the store's growth while one read key reads at
//!   full speed (see `read_growth.rs`).
//!
//! Each runs a number of rounds (one upsert each, a new value each time) and
//! reports the median and the nearest-rank p99 over the rounds.

mod agent;
pub mod read_growth;
#[cfg(test)]
mod tests;
mod waiters;

use crate::config::Plan;
use crate::process::{cpu_seconds, machine_busy_seconds, memory};
use crate::stats::{percentile, Stat};
use crate::targets::tessera::Tessera;
use crate::targets::{Kind, Target, Team, TESSERA_POSTGRES, TESSERA_SQLITE};
use crate::workloads::{
    fresh_value, secret_name, PROPAGATED, WAITERS_1K, WAITERS_PG, WAIT_SECONDS,
};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use waiters::{parse_etag, Event, Waiters};

pub const PROPAGATE_1K: &str = "propagate-1k";
pub const PROPAGATE_PG: &str = "propagate-pg";
pub const AGENT: &str = "agent";

/// A round whose waiters have not all answered by then is a failure.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// Time given to freshly started waiters to connect and park their poll.
const ARM_SETTLE: Duration = Duration::from_secs(2);

/// The server's cost of 1,000 waiters that wait (propagate-1k).
#[derive(Debug, Clone, Serialize)]
pub struct IdleWaiters {
    pub waiters: usize,
    pub rss_before_kib: u64,
    pub rss_with_waiters_kib: u64,
    /// (RSS with the waiters − RSS before they connected) / waiters.
    pub rss_per_waiter_kib: f64,
    /// How long the server's CPU time was watched while they waited.
    pub idle_seconds: f64,
    /// Server CPU over that time, as a fraction of one core (0.01 = 1%).
    /// /proc counts in 10 ms ticks, so the resolution is 0.01 s / idle_seconds.
    pub server_cores: f64,
}

/// One propagation workload's rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Propagation {
    pub workload: String,
    pub target: String,
    /// Why it was not measured (then nothing else is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// How it was measured, in a few words (where DIR was, which nodes).
    pub setup: String,
    /// Waiters per round (1 for the agent: its file).
    pub waiters: usize,
    pub rounds_planned: usize,
    /// Per completed round: upsert sent → the last waiter's whole answer (or
    /// the agent's file holding the new bytes), in ms.
    pub last_ms: Vec<f64>,
    /// Per completed round: upsert sent → the first waiter's answer, in ms.
    pub first_ms: Vec<f64>,
    /// Per completed round: upsert sent → the median waiter's answer, in ms
    /// (how the answers spread between the first and the last).
    pub median_waiter_ms: Vec<f64>,
    /// Per round: upsert sent → its own 200 (the write is durable), in ms.
    pub upsert_ms: Vec<f64>,
    pub median_ms: Option<f64>,
    /// Nearest rank: with 20 rounds, the slowest.
    pub p99_ms: Option<f64>,
    /// 304 answers (a wait that ended without a change): expected only if a
    /// round outlasts the 60 s wait; not errors.
    pub not_modified: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub error_kinds: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleWaiters>,
    /// read-growth: the store's growth under one read key at full speed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_growth: Option<read_growth::StoreGrowth>,
    /// Over the rounds: cores used by the server (the waiters' node), by the
    /// bench process, and by everything else on the machine.
    pub server_cores: f64,
    pub client_cores: f64,
    pub other_cores: f64,
}

impl Propagation {
    fn new(workload: &str, target: &str, waiters: usize, plan: &Plan) -> Self {
        Propagation {
            workload: workload.into(),
            target: target.into(),
            waiters,
            rounds_planned: plan.rounds,
            server_cores: f64::NAN,
            client_cores: f64::NAN,
            other_cores: f64::NAN,
            ..Default::default()
        }
    }

    pub fn skipped(workload: &str, target: &str, why: &str) -> Self {
        Propagation {
            workload: workload.into(),
            target: target.into(),
            skipped: Some(why.into()),
            ..Default::default()
        }
    }

    pub fn record_error(&mut self, kind: &str, detail: impl FnOnce() -> String) {
        self.errors += 1;
        *self.error_kinds.entry(kind.to_string()).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(detail());
        }
    }

    /// Medians and p99 over the completed rounds.
    fn finish(&mut self) {
        self.median_ms = Stat::of(self.last_ms.iter().copied()).map(|s| s.median);
        self.p99_ms = percentile(&self.last_ms, 0.99);
        let done = self.last_ms.len();
        let planned = self.rounds_planned;
        if done < planned && self.skipped.is_none() && self.errors == 0 {
            self.record_error("incomplete", || {
                format!("only {done} of {planned} rounds completed")
            });
        }
    }
}

/// Runs the three workloads on the targets that have them. A workload that
/// cannot run to the end is reported as failed, not skipped.
pub async fn run_all(targets: &mut [Target], plan: &Plan, work: &Path) -> Vec<Propagation> {
    // propagate-1k reads the server's RSS before and with the waiters: on
    // the process that has just served every other workload, memory its
    // allocator freed but kept would absorb part of the waiters' and the
    // figure would depend on what ran before. So it runs on a fresh process
    // (a restart on the same store: the team and the key are kept).
    let mut restart_error = None;
    for t in targets.iter_mut().filter(|t| t.name == TESSERA_SQLITE) {
        if let Kind::Tessera(x) = &mut t.kind {
            if let Err(e) = x.restart().await {
                restart_error = Some(format!("restarting {TESSERA_SQLITE}: {e:#}"));
            }
        }
    }
    let targets = &*targets;
    let tessera = |name: &str| {
        targets.iter().find_map(|t| match &t.kind {
            Kind::Tessera(x) if t.name == name => Some(x),
            _ => None,
        })
    };
    let mut out = Vec::new();
    let sqlite = tessera(TESSERA_SQLITE);
    match sqlite {
        Some(t) => {
            eprintln!("{TESSERA_SQLITE}: {PROPAGATE_1K}");
            let mut p = Propagation::new(PROPAGATE_1K, TESSERA_SQLITE, WAITERS_1K, plan);
            p.setup = format!(
                "{WAITERS_1K} waiters and the writer on one node (restarted first), {} rounds",
                plan.rounds
            );
            if let Some(e) = restart_error {
                p.record_error("setup", || e);
            } else if let Err(e) = propagate(t, t.addr, t.pid(), &mut p, plan, true).await {
                p.record_error("setup", || format!("{e:#}"));
            }
            p.finish();
            out.push(p);
        }
        None => out.push(Propagation::skipped(
            PROPAGATE_1K,
            TESSERA_SQLITE,
            "no tessera-sqlite target",
        )),
    }
    match tessera(TESSERA_POSTGRES) {
        Some(t) => {
            eprintln!("{TESSERA_POSTGRES}: {PROPAGATE_PG}");
            let mut p = Propagation::new(PROPAGATE_PG, TESSERA_POSTGRES, WAITERS_PG, plan);
            p.setup = format!(
                "writes on node A, {WAITERS_PG} waiters on node B (same database and master key), {} rounds",
                plan.rounds
            );
            match t.start_peer(work).await {
                Ok(mut peer) => {
                    if let Err(e) = propagate(t, peer.addr, peer.pid(), &mut p, plan, false).await {
                        p.record_error("setup", || format!("{e:#}"));
                    }
                    peer.stop().await;
                }
                Err(e) => p.record_error("setup", || format!("{e:#}")),
            }
            p.finish();
            out.push(p);
        }
        None => out.push(Propagation::skipped(
            PROPAGATE_PG,
            TESSERA_POSTGRES,
            "TESSERA_TEST_DATABASE_URL is not set",
        )),
    }
    match sqlite {
        Some(t) => {
            eprintln!("{TESSERA_SQLITE}: {AGENT} end to end");
            let mut p = Propagation::new(AGENT, TESSERA_SQLITE, 1, plan);
            match agent::run(t, &mut p, plan, work).await {
                Ok(()) => {}
                Err(e) => p.record_error("agent", || format!("{e:#}")),
            }
            if p.skipped.is_none() {
                p.finish();
            }
            out.push(p);
        }
        None => out.push(Propagation::skipped(
            AGENT,
            TESSERA_SQLITE,
            "no tessera-sqlite target",
        )),
    }
    // Last: its folded reads and its connections touch no other figure.
    match sqlite {
        Some(t) => {
            eprintln!("{TESSERA_SQLITE}: {}", read_growth::READ_GROWTH);
            let mut p = Propagation::new(read_growth::READ_GROWTH, TESSERA_SQLITE, 1, plan);
            p.rounds_planned = 0;
            p.setup = "one read key, 4 connections at full speed for 60 s, a new X-Tessera-Agent per request, rate limit off".into();
            if let Err(e) = read_growth::run(t, &mut p).await {
                p.record_error("read-growth", || format!("{e:#}"));
            }
            out.push(p);
        }
        None => out.push(Propagation::skipped(
            read_growth::READ_GROWTH,
            TESSERA_SQLITE,
            "no tessera-sqlite target",
        )),
    }
    out
}

/// A keep-alive connection that upserts the propagated secret of the small
/// team with its organization admin's key.
pub struct Writer {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    auth: HeaderValue,
    path: String,
}

impl Writer {
    pub async fn connect(addr: SocketAddr, tessera: &Tessera) -> anyhow::Result<Self> {
        let (team_id, key) = tessera.tenant(Team::Small);
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Writer {
            sender,
            host: HeaderValue::from_str(&addr.to_string())?,
            auth: HeaderValue::from_str(&format!("Bearer {key}"))?,
            path: format!("/v1/teams/{team_id}/secrets"),
        })
    }

    /// Sends the upsert of `value`; returns the instant it was sent and
    /// when its 200 arrived.
    pub async fn upsert(&mut self, value: &str) -> anyhow::Result<(Instant, Instant)> {
        let body = serde_json::json!({"name": secret_name(PROPAGATED), "value": value});
        let mut req = Request::new(Full::new(Bytes::from(serde_json::to_vec(&body)?)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.path.parse()?;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(AUTHORIZATION, self.auth.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.sender.ready().await?;
        let sent = Instant::now();
        let res = self.sender.send_request(req).await?;
        let status = res.status();
        let reply = res.into_body().collect().await?.to_bytes();
        let acked = Instant::now();
        anyhow::ensure!(
            status == StatusCode::OK,
            "upsert answered {status}: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(300)])
        );
        Ok((sent, acked))
    }
}

/// The team's current ETag, from one plain fetch with the read key.
async fn current_etag(addr: SocketAddr, key: &str) -> anyhow::Result<i64> {
    let auth = format!("Bearer {key}");
    let req = Request::builder()
        .uri("/runtime/v1/secrets")
        .header(HOST, addr.to_string())
        .header(AUTHORIZATION, auth)
        .body(Full::new(Bytes::new()))?;
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender.send_request(req).await?;
    let status = res.status();
    let etag = res
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_etag);
    let _ = res.into_body().collect().await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET /runtime/v1/secrets answered {status}"
    );
    etag.context("GET /runtime/v1/secrets answered without an ETag")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Rounds of one upsert (to `tessera`, node A) and `p.waiters` waiters on
/// the node at `waiters_addr` (pid `waiters_pid`). With `idle`, also
/// measures the waiters' RSS and the server's CPU while they wait.
async fn propagate(
    tessera: &Tessera,
    waiters_addr: SocketAddr,
    waiters_pid: u32,
    p: &mut Propagation,
    plan: &Plan,
    idle: bool,
) -> anyhow::Result<()> {
    let key = tessera
        .read_key()
        .context("no WORKSPACE_READ_SECRETS key")?;
    let mut etag = current_etag(waiters_addr, key).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = memory(waiters_pid)?;
    let mut waiters = Waiters::start(
        waiters_addr,
        key,
        p.waiters,
        plan.client_threads,
        etag,
        WAIT_SECONDS,
    )?;
    let result = rounds(
        tessera,
        &mut waiters,
        &mut etag,
        waiters_pid,
        before,
        p,
        plan,
        idle,
    )
    .await;
    waiters.stop().await;
    result
}

#[expect(
    clippy::too_many_arguments,
    reason = "one round's settings, named at the call"
)]
async fn rounds(
    tessera: &Tessera,
    waiters: &mut Waiters,
    etag: &mut i64,
    pid: u32,
    before: crate::process::Memory,
    p: &mut Propagation,
    plan: &Plan,
    idle: bool,
) -> anyhow::Result<()> {
    tokio::time::sleep(ARM_SETTLE).await;
    absorb(p, waiters.pending(), "before the first round");
    if idle {
        let with = memory(pid)?;
        let cpu_before = cpu_seconds(Some(pid))?;
        let started = std::time::Instant::now();
        tokio::time::sleep(plan.idle_probe).await;
        let cpu = cpu_seconds(Some(pid))? - cpu_before;
        let secs = started.elapsed().as_secs_f64();
        p.idle = Some(IdleWaiters {
            waiters: p.waiters,
            rss_before_kib: before.rss_kib,
            rss_with_waiters_kib: with.rss_kib,
            rss_per_waiter_kib: (with.rss_kib as f64 - before.rss_kib as f64) / p.waiters as f64,
            idle_seconds: secs,
            server_cores: cpu / secs,
        });
        absorb(p, waiters.pending(), "while idle");
    }
    let mut writer = Writer::connect(tessera.addr, tessera).await?;
    let server_before = cpu_seconds(Some(pid))?;
    let client_before = cpu_seconds(None)?;
    let machine_before = machine_busy_seconds()?;
    let wall = std::time::Instant::now();
    for round in 0..plan.rounds {
        absorb(p, waiters.pending(), "between rounds");
        let value = fresh_value(seed(round));
        let (sent, acked) = match writer.upsert(&value).await {
            Ok(times) => times,
            Err(e) => {
                p.record_error("upsert", || format!("round {}: {e:#}", round + 1));
                tokio::time::sleep(plan.round_settle).await;
                continue;
            }
        };
        p.upsert_ms.push(ms(acked - sent));
        let deadline = sent + ROUND_TIMEOUT;
        let mut answered = vec![false; p.waiters];
        let (mut got, mut failed) = (0, 0);
        let mut times = Vec::with_capacity(p.waiters);
        let mut new_etag = *etag;
        while got + failed < p.waiters {
            match waiters.next(deadline).await {
                None => {
                    let all = p.waiters;
                    p.record_error("timeout", || {
                        format!(
                            "round {}: {got} of {all} waiters answered within {ROUND_TIMEOUT:?}",
                            round + 1,
                        )
                    });
                    break;
                }
                Some(Event::Answered {
                    waiter,
                    etag: e,
                    at,
                }) => {
                    if e <= *etag || answered[waiter] {
                        p.record_error("stale", || {
                            format!(
                                "round {}: waiter {waiter} answered 200 with ETag {e} (held {})",
                                round + 1,
                                *etag
                            )
                        });
                        continue;
                    }
                    answered[waiter] = true;
                    got += 1;
                    new_etag = new_etag.max(e);
                    times.push(at);
                }
                Some(Event::NotModified) => p.not_modified += 1,
                Some(Event::Failed {
                    waiter,
                    kind,
                    detail,
                }) => {
                    failed += 1;
                    p.record_error(&kind, || {
                        format!("round {}: waiter {waiter}: {detail}", round + 1)
                    });
                }
            }
        }
        *etag = new_etag;
        times.sort();
        let after = |i: usize| times.get(i).map_or(f64::NAN, |t| ms(*t - sent));
        let last = after(times.len().wrapping_sub(1));
        if got == p.waiters {
            p.last_ms.push(last);
            p.first_ms.push(after(0));
            p.median_waiter_ms.push(after(times.len() / 2));
        }
        eprintln!(
            "  round {}/{}: {got} answered; first {:.1} ms, median {:.1} ms, last {last:.1} ms; \
             upsert acked {:.1} ms",
            round + 1,
            plan.rounds,
            after(0),
            after(times.len() / 2),
            ms(acked - sent)
        );
        // Every waiter re-armed as soon as it had its answer; let those
        // polls reach the server and park before the next write.
        tokio::time::sleep(plan.round_settle).await;
    }
    let secs = wall.elapsed().as_secs_f64();
    let server = cpu_seconds(Some(pid))? - server_before;
    let client = cpu_seconds(None)? - client_before;
    let machine = machine_busy_seconds()? - machine_before;
    p.server_cores = server / secs;
    p.client_cores = client / secs;
    p.other_cores = (machine - server - client).max(0.0) / secs;
    absorb(p, waiters.pending(), "after the last round");
    Ok(())
}

/// Reports that arrived outside a round: any 200 or failure there is wrong.
fn absorb(p: &mut Propagation, events: Vec<Event>, when: &str) {
    for e in events {
        match e {
            Event::NotModified => p.not_modified += 1,
            Event::Answered { waiter, etag, .. } => p.record_error("unexpected", || {
                format!("{when}: waiter {waiter} answered 200 (ETag {etag}) with no write")
            }),
            Event::Failed {
                waiter,
                kind,
                detail,
            } => p.record_error(&kind, || format!("{when}: waiter {waiter}: {detail}")),
        }
    }
}

/// A different value each round and each run of the benchmark.
fn seed(round: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos.wrapping_add(round as u64)
}
