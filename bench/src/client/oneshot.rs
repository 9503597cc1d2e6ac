//! Single requests for setup and readiness checks (not on the measured path).

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HeaderName, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One request on a fresh connection; returns the status and whole body.
pub async fn oneshot(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(HeaderName, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string());
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    let req = req.body(Full::new(body.into()))?;
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        let call = async move {
            let res = sender.send_request(req).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (_, reply) = tokio::join!(conn, call);
        reply
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .with_context(|| format!("{path} on {addr} did not answer in 30 s"))?
}

/// Polls `GET path` until it answers 200; returns the time that took.
/// `alive` is checked between attempts so a crashed server fails fast.
pub async fn wait_ready(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if let Ok((StatusCode::OK, _)) = oneshot(addr, Method::GET, path, &[], Bytes::new()).await {
            return Ok(start.elapsed());
        }
        alive()?;
        if start.elapsed() > timeout {
            anyhow::bail!("{addr}{path} not ready after {timeout:?}");
        }
        // Short, so the measured time to ready is not inflated by polling.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
