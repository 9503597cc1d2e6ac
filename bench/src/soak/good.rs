//! Good clients: keep-alive connections from 127.0.0.1 doing upserts and
//! listings at a steady pace with a valid key. Every answer must be 200.

use super::stats::Stats;
use super::{connect_from, Plan};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub async fn run(plan: Arc<Plan>, stats: Arc<Stats>, id: usize) {
    let auth = format!("Bearer {}", plan.key);
    // Each connection paces itself so all together make `good_rate`.
    let period = Duration::from_secs_f64(plan.good_connections as f64 / plan.good_rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = id;
    'connect: while Instant::now() < plan.end {
        let stream = match connect_from("127.0.0.1", plan.addr).await {
            Ok(s) => s,
            Err(e) => {
                stats.good(Instant::now(), Duration::ZERO, Err(format!("connect: {e}")));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok((mut sender, conn)) = http1::handshake(TokioIo::new(stream)).await else {
            continue;
        };
        tokio::spawn(conn);
        loop {
            tick.tick().await;
            if Instant::now() >= plan.end {
                break 'connect;
            }
            turn += plan.good_connections;
            let req = if turn % 5 == 4 {
                Request::builder()
                    .method(Method::GET)
                    .uri(format!("/v1/teams/{}/secrets", plan.team_id))
                    .body(Full::new(Bytes::new()))
            } else {
                let body = format!(
                    "{{\"name\":\"soak-{}\",\"value\":\"{}\"}}",
                    turn % 1000,
                    "v".repeat(100)
                );
                Request::builder()
                    .method(Method::POST)
                    .uri(format!("/v1/teams/{}/secrets", plan.team_id))
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))
            };
            let mut req = req.expect("valid request");
            req.headers_mut()
                .insert(HOST, plan.addr.to_string().parse().unwrap());
            req.headers_mut()
                .insert(AUTHORIZATION, auth.parse().unwrap());
            if sender.ready().await.is_err() {
                // The server closed the connection (idle timeout between
                // ticks cannot happen at this pace; anything else is news).
                stats.good(
                    Instant::now(),
                    Duration::ZERO,
                    Err("connection lost".into()),
                );
                continue 'connect;
            }
            let started = Instant::now();
            let outcome = async {
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| format!("transport: {e}"))?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("body: {e}"))?
                    .to_bytes();
                if status == StatusCode::OK {
                    Ok(())
                } else {
                    Err(format!(
                        "HTTP {}: {}",
                        status.as_u16(),
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ))
                }
            };
            let outcome = match tokio::time::timeout(Duration::from_secs(30), outcome).await {
                Ok(o) => o,
                Err(_) => Err("timeout (30 s)".into()),
            };
            let failed = outcome.is_err();
            stats.good(Instant::now(), started.elapsed(), outcome);
            if failed {
                continue 'connect;
            }
        }
    }
}
