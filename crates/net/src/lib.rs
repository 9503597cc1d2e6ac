//! The network layer: our own accept loop on hyper (HTTP/1.1), in place of
//! `axum::serve`, so that a hostile client cannot exhaust the server.
//!
//! - `accept`: accepting with back-off on errors (EMFILE and the like).
//! - `limiter`: caps on open connections, overall and per client address.
//! - `fdlimit`: the open-file limit, raised at start; default caps from it.
//! - `client_addr`: the client address behind `--trusted-proxies`
//!   ([`ClientAddr`], a request extension).
//! - `conn`: one connection (TLS handshake, hyper, shutdown).
//! - `request`: per request: client address, handler timeout, body drain.
//! - `timeout`: the handler timeout and its long-poll exemption.
//! - `drain`: reading what a handler left unread (keep-alive after a 401).
//! - `error_head`: JSON bodies for hyper's own 400/414/431 answers.
//! - `tls`: rustls with a certificate reloaded on SIGHUP.
//! - `shutdown`: SIGTERM/SIGINT cancel the shutdown token.
//! - `unavailable`: the 503 this layer answers with (the body every route
//!   answers with, from `tessera_wire::error`).
//! - `args`: the `serve` flags of all the above.
//!
//! This crate does not know the router: the error body comes from
//! `tessera_wire`, and the API (`tessera-server`) uses [`ClientAddr`],
//! [`timeout::is_long_poll`] and [`client_addr::limit_key`] from here, never
//! the other way round.
//!
//! Shutdown: [`serve`] watches a `CancellationToken`; `tessera_server::app::build`
//! creates it as `AppState::shutdown`, so handlers (long-poll waiters) can
//! watch the same token and answer at once when it fires.

pub mod accept;
pub mod args;
pub mod client_addr;
pub mod conn;
pub mod drain;
pub mod error_head;
pub mod fdlimit;
pub mod limiter;
pub mod request;
pub mod shutdown;
pub mod timeout;
pub mod tls;
pub mod unavailable;

pub use client_addr::{limit_key, ClientAddr, TrustedProxies};
pub use limiter::LongPollCap;

use axum::Router;
use limiter::ConnLimiter;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the listener behaves; [`args::NetArgs`] fills it from the flags.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// A request head must arrive within this; it is also how long a
    /// keep-alive connection may sit idle.
    pub header_read_timeout: Duration,
    /// A handler must answer within this (long-poll waiters excepted).
    pub request_timeout: Duration,
    /// After SIGTERM, connections still open this long are closed.
    pub shutdown_timeout: Duration,
    /// `None`: derived from the open-file limit.
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    pub trusted_proxies: TrustedProxies,
    pub tls: Option<tls::TlsFiles>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            max_connections: None,
            max_connections_per_address: None,
            trusted_proxies: TrustedProxies::default(),
            tls: None,
        }
    }
}

/// What every connection task shares.
pub struct Shared {
    router: Router,
    proxies: TrustedProxies,
    limiter: Arc<ConnLimiter>,
    request_timeout: Duration,
    header_read_timeout: Duration,
    tls: Option<TlsAcceptor>,
}

/// At most this many refused connections are being answered at once;
/// beyond it a refused connection is closed without an answer.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets open requests finish and returns within
/// `config.shutdown_timeout` whatever the clients do.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: NetConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = match &config.tls {
        Some(files) => {
            let cert = tls::ReloadingCert::new(files.clone())?;
            tls::reload_on_sighup(cert.clone())?;
            Some(tls::acceptor(cert)?)
        }
        None => None,
    };
    let local = listener.local_addr()?;
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            addr = %local,
            "PLAIN HTTP ON A NON-LOOPBACK ADDRESS: API keys and secret values cross the network \
             unencrypted. Serve TLS (--tls-cert/--tls-key) or listen on loopback behind a TLS proxy."
        );
    }
    let nofile = fdlimit::raise_nofile();
    let limits = fdlimit::default_limits(
        nofile,
        config.max_connections,
        config.max_connections_per_address,
    );
    tracing::info!(
        open_file_limit = nofile,
        max_connections = limits.max_connections,
        max_connections_per_address = limits.max_per_address,
        header_read_timeout_s = config.header_read_timeout.as_secs_f64(),
        request_timeout_s = config.request_timeout.as_secs_f64(),
        shutdown_timeout_s = config.shutdown_timeout.as_secs_f64(),
        tls = tls.is_some(),
        trusted_proxies = !config.trusted_proxies.is_empty(),
        "connection limits"
    );
    if limits.max_connections < 10_000 {
        tracing::warn!(
            max_connections = limits.max_connections,
            "fewer than 10,000 connections allowed; raise the open-file limit (hard RLIMIT_NOFILE) \
             for a node serving many long-poll clients"
        );
    }
    let shared = Arc::new(Shared {
        router,
        proxies: config.trusted_proxies.clone(),
        limiter: ConnLimiter::new(limits),
        request_timeout: config.request_timeout,
        header_read_timeout: config.header_read_timeout,
        tls,
    });
    let tracker = TaskTracker::new();
    let hard = CancellationToken::new();
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut acceptor = accept::Acceptor::default();
    let mut refusal_log = RefusalLog::default();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = acceptor.accept(&listener) => accepted,
        };
        let per_address = !shared.proxies.contains(peer.ip());
        match shared.limiter.connection(peer.ip(), per_address) {
            Ok(slot) => {
                tracker.spawn(conn::serve(
                    stream,
                    peer,
                    shared.clone(),
                    slot,
                    shutdown.clone(),
                    hard.clone(),
                ));
            }
            Err(refusal) => {
                metrics::counter!("tessera_connections_refused_total", "limit" => refusal.as_str())
                    .increment(1);
                refusal_log.refused(refusal, &shared.limiter);
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tracker.spawn(conn::refuse(
                        stream,
                        shared.clone(),
                        refusal,
                        permit,
                        hard.clone(),
                    ));
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracing::info!(
        open_connections = shared.limiter.open(),
        "stopped accepting; waiting for open requests to finish"
    );
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = shared.limiter.open(),
            "shutdown timeout reached; closing the connections still open"
        );
        hard.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    }
    Ok(())
}

/// Logs refusals at most once per 10 s, with the count since the last line.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since: u64,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn refused(&mut self, refusal: limiter::Refusal, limiter: &ConnLimiter) {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        let limits = limiter.limits();
        tracing::warn!(
            limit = refusal.as_str(),
            refused = self.since,
            open_connections = limiter.open(),
            max_connections = limits.max_connections,
            max_connections_per_address = limits.max_per_address,
            "refusing connections beyond a limit (logged at most every 10 s)"
        );
        self.last = Some(Instant::now());
        self.since = 0;
    }
}
