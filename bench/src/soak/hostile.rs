//! Hostile clients. Bad ones (from 127.0.0.2) send wrong keys, malformed
//! requests and large unauthenticated bodies; slow ones (from 127.0.0.3)
//! trickle request heads a byte at a time or sit idle on keep-alive
//! connections. Their answers must be the documented 4xx JSON errors, and
//! the server must close their sockets by its timeouts.

use super::stats::Stats;
use super::{connect_from, Plan};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Reads one response head and its Content-Length body; returns the status
/// and whether the body is a JSON error object.
async fn read_answer(s: &mut TcpStream) -> Result<(u16, bool, bool), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed without an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let closes = head.lines().any(|l| l.trim() == "connection: close");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("closed mid-body".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let json = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .is_some_and(|v| v["code"].is_string() && v["message"].is_string());
    Ok((status, json, closes))
}

async fn exchange(s: &mut TcpStream, req: &[u8]) -> Result<(u16, bool, bool), String> {
    s.write_all(req).await.map_err(|e| format!("write: {e}"))?;
    tokio::time::timeout(Duration::from_secs(30), read_answer(s))
        .await
        .map_err(|_| "no answer in 30 s".to_string())?
}

fn record(stats: &Stats, kind: &'static str, r: Result<(u16, bool, bool), String>, ok: &[u16]) {
    match r {
        Ok((status, json, _)) => {
            let expected = json && ok.contains(&status);
            stats.hostile(kind, format!("HTTP {status}"), expected);
        }
        Err(e) => stats.hostile(kind, e, false),
    }
}

/// One bad client: a mix of wrong keys, malformed heads and large
/// unauthenticated bodies on a keep-alive connection, paced.
pub async fn bad(plan: Arc<Plan>, stats: Arc<Stats>, id: usize) {
    let period = Duration::from_secs_f64(plan.bad_clients as f64 / plan.bad_rate as f64);
    let mut tick = tokio::time::interval(period);
    let big = format!("{{\"name\":\"x\",\"value\":\"{}\"}}", "b".repeat(100_000));
    let host = plan.addr;
    let mut turn = id;
    while Instant::now() < plan.end {
        tick.tick().await;
        turn += plan.bad_clients;
        let Ok(mut s) = connect_from("127.0.0.2", plan.addr).await else {
            stats.hostile("bad", "connect failed".into(), false);
            continue;
        };
        match turn % 4 {
            0 => {
                let key = format!("Zz{:06}.{}", turn % 1_000_000, "k".repeat(43));
                let req = format!(
                    "GET /v1/secrets HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n"
                );
                let r = exchange(&mut s, req.as_bytes()).await;
                record(&stats, "bad key", r, &[401, 429]);
            }
            1 => {
                let req = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-A: a\0b\r\n\r\n");
                let r = exchange(&mut s, req.as_bytes()).await;
                record(&stats, "malformed head", r, &[400]);
            }
            2 => {
                let req = format!(
                    "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                    "u".repeat(70_000)
                );
                let r = exchange(&mut s, req.as_bytes()).await;
                record(&stats, "URI too long", r, &[414]);
            }
            _ => {
                // 100 KB without a key, then a request on the same connection.
                let req = format!(
                    "POST /v1/secrets HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{big}",
                    big.len()
                );
                let r = exchange(&mut s, req.as_bytes()).await;
                let closes = matches!(r, Ok((_, _, true)));
                record(&stats, "100 KB body, no key", r, &[401, 429]);
                if !closes {
                    let again = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
                    match exchange(&mut s, again.as_bytes()).await {
                        Ok((200, _, _)) => {
                            stats.hostile("reuse after 401", "HTTP 200".into(), true)
                        }
                        Ok((status, _, _)) => {
                            stats.hostile("reuse after 401", format!("HTTP {status}"), false)
                        }
                        Err(e) => stats.hostile("reuse after 401", e, false),
                    }
                }
            }
        }
    }
}

/// One slow client: trickles a request head (slowloris) or, when `idle`,
/// sends one request and then sits on the keep-alive connection. Records
/// how long the server let it hold the socket.
pub async fn slow(plan: Arc<Plan>, stats: Arc<Stats>, idle: bool) {
    let kind = if idle { "idle keep-alive" } else { "slowloris" };
    while Instant::now() < plan.end {
        let Ok(mut s) = connect_from("127.0.0.3", plan.addr).await else {
            stats.hostile(kind, "connect failed".into(), false);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let opened = Instant::now();
        let held = async {
            if idle {
                let req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", plan.addr);
                match exchange(&mut s, req.as_bytes()).await {
                    Ok((200, _, _)) => {}
                    Ok((status, json, _)) => {
                        // Refused by a cap: only the documented answer will do.
                        stats.hostile(kind, format!("HTTP {status}"), json && status == 503);
                        return;
                    }
                    Err(e) => {
                        stats.hostile(kind, e, false);
                        return;
                    }
                }
                let mut byte = [0u8; 1];
                let _ = s.read(&mut byte).await;
            } else {
                if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if s.write_all(b"a").await.is_err() {
                        return;
                    }
                    // Closed by the server? A read would see EOF.
                    let mut byte = [0u8; 1];
                    if let Ok(Ok(0)) =
                        tokio::time::timeout(Duration::from_millis(1), s.read(&mut byte)).await
                    {
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = held => {
                let held = opened.elapsed();
                stats.held(kind, held);
                // Closed within twice the header timeout: as expected.
                let expected = held < plan.header_timeout * 2 + Duration::from_secs(3);
                stats.hostile(kind, "closed by the server".into(), expected);
            }
            _ = tokio::time::sleep_until(plan.end) => return,
        }
    }
}
