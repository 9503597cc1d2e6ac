//! A PostgreSQL proxy the tests can break, and the checks of a node that
//! loses its database.

use super::cluster::*;
use crate::common::{canary, pg_schema_or_skip};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::service::TeamRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Forward,
    /// Connections stay open but nothing passes, in either direction:
    /// what a node sees when its database host vanishes from the network.
    Silent,
}

/// A TCP proxy in front of PostgreSQL that the test can break: `stop`
/// closes every connection and the port (connections are refused),
/// `start` opens the same port again; `silence` freezes every connection,
/// old and new, without closing any, and `heal` lets new connections through
/// while the frozen ones stay frozen (as after a failover).
pub(crate) struct PgProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    frozen: Arc<Mutex<Vec<TcpStream>>>,
}

impl PgProxy {
    pub(crate) async fn new(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = Self {
            addr: listener.local_addr().unwrap(),
            upstream,
            mode: watch::channel(Mode::Forward).0,
            accept: None,
            conns: Default::default(),
            frozen: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    pub(crate) fn serve(&mut self, listener: TcpListener) {
        let (upstream, mode, conns, frozen) = (
            self.upstream,
            self.mode.clone(),
            self.conns.clone(),
            self.frozen.clone(),
        );
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let task = tokio::spawn(pipe(client, upstream, mode.subscribe(), frozen.clone()));
                conns.lock().push(task);
            }
        }));
    }

    /// Closes the port and every connection through it.
    pub(crate) async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        let conns: Vec<_> = self.conns.lock().drain(..).collect();
        for c in conns {
            c.abort();
            let _ = c.await;
        }
        self.frozen.lock().clear();
    }

    /// Opens the same port again, forwarding.
    pub(crate) async fn start(&mut self) {
        self.mode.send_replace(Mode::Forward);
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub(crate) fn silence(&self) {
        self.mode.send_replace(Mode::Silent);
    }

    pub(crate) fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        if let Some(a) = &self.accept {
            a.abort();
        }
        for c in self.conns.lock().iter() {
            c.abort();
        }
    }
}

pub(crate) async fn pipe(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    frozen: Arc<Mutex<Vec<TcpStream>>>,
) {
    if *mode.borrow_and_update() == Mode::Silent {
        frozen.lock().push(client);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                if *mode.borrow_and_update() == Mode::Silent {
                    // The client's side stays open and silent; the database
                    // sees its side close (and rolls back whatever was open).
                    frozen.lock().push(client);
                    return;
                }
            }
        }
    }
}

/// `postgres://user@host:port/db?…` → (`host:port`, the URL with `replacement`
/// instead of `host:port`).
pub(crate) fn split_authority(url: &str, replacement: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    (
        hostport,
        format!("{scheme}://{userinfo}{replacement}{}", &rest[end..]),
    )
}

/// One node behind a proxy, with one secret written before the trouble.
pub(crate) struct Outage {
    pub(crate) proxy: PgProxy,
    pub(crate) cluster: Cluster,
    pub(crate) before: Value,
    pub(crate) before_value: String,
}

pub(crate) async fn node_behind_proxy(test: &str) -> Option<Outage> {
    let schema = pg_schema_or_skip(test).await?;
    let (upstream, _) = split_authority(&schema.url(), "");
    let upstream = tokio::net::lookup_host(&upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = PgProxy::new(upstream).await;
    let (_, via_proxy) = split_authority(&schema.url(), &proxy.addr.to_string());
    let cluster = Cluster::start(schema, vec![via_proxy]).await;
    let before_value = canary("before");
    let before = cluster
        .post(
            0,
            "/v1/secrets",
            json!({"name": "before_outage", "value": before_value}),
        )
        .await
        .ok();
    Some(Outage {
        proxy,
        cluster,
        before,
        before_value,
    })
}

/// The requests a node must refuse with 503 while its database is gone.
pub(crate) fn probes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/secrets", None),
        (
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": "during_outage", "value": "never stored"})),
        ),
        (Method::GET, "/v1/teams", None),
        (Method::DELETE, "/v1/secrets/before_outage", None),
    ]
}

/// Fires `probes()` (and `/readyz`) `rounds` times, `concurrency` at once,
/// asserting each fails with 503 `UNAVAILABLE` within [`FAIL_FAST`]. Returns
/// the slowest.
pub(crate) async fn assert_unavailable(c: &Cluster, rounds: usize, concurrency: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..rounds {
        let mut tasks = Vec::new();
        for i in 0..concurrency {
            let (method, path, body) = probes()[i % probes().len()].clone();
            let url = c.url(0, path);
            let (http, key) = (c.http.clone(), c.admin_key.clone());
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let r = call(&http, method.clone(), &url, Some(&key), body).await;
                (format!("{method} {path}"), r, started.elapsed())
            }));
        }
        let url = c.url(0, "/readyz");
        let http = c.http.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = call(&http, Method::GET, &url, None, None).await;
            ("GET /readyz".to_owned(), r, started.elapsed())
        }));
        for t in tasks {
            let (what, r, took) = t.await.unwrap();
            assert!(
                took < FAIL_FAST,
                "{what} took {took:?} with the database gone"
            );
            r.err(503, "UNAVAILABLE");
            slowest = slowest.max(took);
        }
    }
    // The process itself is still alive.
    call(&c.http, Method::GET, &c.url(0, "/healthz"), None, None)
        .await
        .ok();
    slowest
}

/// Polls until the node serves again; returns how long that took. Then
/// checks it stays up, that the data from before is intact and that writes
/// succeed.
pub(crate) async fn assert_recovers(o: &Outage, within: Duration) -> Duration {
    let c = &o.cluster;
    let started = Instant::now();
    loop {
        let r = c.get(0, "/v1/secrets").await;
        if r.status == 200 {
            break;
        }
        r.err(503, "UNAVAILABLE");
        assert!(
            started.elapsed() < within,
            "no recovery {within:?} after the database returned\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = started.elapsed();
    // Stays up, under concurrency larger than the pool.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (http, url, key) = (c.http.clone(), c.url(0, "/v1/secrets"), c.admin_key.clone());
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                let body = json!({"name": format!("after_{i}"), "value": "v"});
                call(&http, Method::POST, &url, Some(&key), Some(body)).await
            } else {
                call(&http, Method::GET, &url, Some(&key), None).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().ok();
    }
    let ready = call(&c.http, Method::GET, &c.url(0, "/readyz"), None, None)
        .await
        .ok();
    assert_eq!(ready["status"], "ready");

    // Earlier data intact, nothing from the outage stored.
    let list = c.get(0, "/v1/secrets").await.ok();
    let secrets = list["secrets"].as_array().unwrap();
    assert!(secrets.contains(&o.before), "{list}");
    assert!(
        !secrets.iter().any(|s| s["name"] == "during_outage"),
        "a write answered 503 was stored: {list}"
    );
    assert_eq!(secrets.len(), 1 + 10);
    let lib = c.library().await;
    let p = lib
        .identity()
        .authenticate(Some(&format!("Bearer {}", c.admin_key)))
        .await
        .unwrap();
    let v = lib
        .reveal_secret(&p, TeamRef::Implicit, "before_outage")
        .await
        .unwrap();
    assert_eq!(v.expose(), o.before_value);
    recovered
}

/// Warms the node's pool with many connections, so the outage hits
/// connections the pool believes are healthy.
pub(crate) async fn warm_pool(c: &Cluster) {
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, url, key) = (c.http.clone(), c.url(0, "/v1/secrets"), c.admin_key.clone());
        tasks.push(tokio::spawn(async move {
            call(&http, Method::GET, &url, Some(&key), None).await
        }));
    }
    for t in tasks {
        t.await.unwrap().ok();
    }
}
