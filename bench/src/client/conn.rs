//! One keep-alive connection driven by one task: take a turn from the shared
//! counter, send, drain the response, record the outcome, repeat.

use super::request::RequestSet;
use super::result::LoadResult;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::CONNECTION;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// When a load phase records and when it stops.
pub struct Schedule {
    /// Responses that complete before this are warm-up and not counted.
    pub record_from: Instant,
    /// No request is started at or after this instant (if set).
    pub end: Option<Instant>,
    /// No more than this many turns in total across connections (if set).
    pub limit: Option<usize>,
    /// Requests still in flight here are abandoned and counted as timeouts,
    /// so a stuck server cannot stall the benchmark.
    pub hard_stop: Instant,
}

impl Schedule {
    fn in_window(&self, t: Instant) -> bool {
        t >= self.record_from && self.end.is_none_or(|end| t <= end)
    }
}

enum Next {
    Finished,
    Reconnect,
}

/// The outcome of one request whose response arrived.
struct Reply {
    status: StatusCode,
    /// The server asked to close the connection after this response.
    close: bool,
    /// The start of the body of a non-200 response, for the report.
    head: Option<String>,
}

/// Runs one connection (reconnecting if the server drops it) until the
/// schedule ends, and returns what it measured.
pub async fn drive(
    addr: SocketAddr,
    set: &RequestSet,
    counter: &AtomicUsize,
    schedule: &Schedule,
) -> LoadResult {
    let mut result = LoadResult::empty();
    result.unit = set.unit();
    let run = connections(addr, set, counter, schedule, &mut result);
    if tokio::time::timeout_at(schedule.hard_stop, run)
        .await
        .is_err()
    {
        result.record_error("timeout".into(), || {
            "a request was still in flight at the hard stop".into()
        });
    }
    result
}

async fn connections(
    addr: SocketAddr,
    set: &RequestSet,
    counter: &AtomicUsize,
    schedule: &Schedule,
    result: &mut LoadResult,
) {
    loop {
        if schedule.end.is_some_and(|end| Instant::now() >= end) {
            return;
        }
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                result.record_error("connect".into(), || format!("connect to {addr}: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small requests and responses: do not let Nagle delay them.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = match http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                result.record_error("transport".into(), || format!("handshake: {e}"));
                continue;
            }
        };
        // The connection and its request loop are polled by this same task
        // (no hand-off between tasks per request). The loop owns the sender
        // and drops it when done, which lets the connection finish too.
        let (_, next) = tokio::join!(conn, requests(sender, set, counter, schedule, result));
        if let Next::Finished = next {
            return;
        }
    }
}

async fn requests(
    mut sender: SendRequest<Full<Bytes>>,
    set: &RequestSet,
    counter: &AtomicUsize,
    schedule: &Schedule,
    result: &mut LoadResult,
) -> Next {
    loop {
        if schedule.end.is_some_and(|end| Instant::now() >= end) {
            return Next::Finished;
        }
        let turn = counter.fetch_add(1, Ordering::Relaxed);
        if schedule.limit.is_some_and(|limit| turn >= limit) {
            return Next::Finished;
        }
        if let Err(e) = sender.ready().await {
            result.record_error("transport".into(), || format!("connection lost: {e}"));
            return Next::Reconnect;
        }
        let started = Instant::now();
        // One request, or a unit of several sent in sequence (see
        // RequestSet::with_unit): counted once, a success if all were 200.
        let unit = set.unit();
        let mut all_ok = true;
        let mut close = false;
        for k in 0..unit {
            if k > 0 {
                if let Err(e) = sender.ready().await {
                    result.record_error("transport".into(), || format!("connection lost: {e}"));
                    return Next::Reconnect;
                }
            }
            match exchange(&mut sender, set.build(turn * unit + k)).await {
                Ok(reply) => {
                    if unit > 1
                        && reply.status == StatusCode::OK
                        && schedule.in_window(Instant::now())
                    {
                        result.ok_requests += 1;
                    }
                    if reply.status != StatusCode::OK {
                        // Failures count wherever they happen, warm-up
                        // included: a run with any failure must be visible
                        // in the report.
                        all_ok = false;
                        let status = reply.status;
                        let head = reply.head.unwrap_or_default();
                        result.record_error(format!("HTTP {}", status.as_u16()), || {
                            format!("HTTP {status}: {head}")
                        });
                    }
                    if reply.close {
                        // A unit cut short is not a success.
                        all_ok &= k + 1 == unit;
                        close = true;
                        break;
                    }
                }
                Err(e) => {
                    result.record_error("transport".into(), || format!("request failed: {e}"));
                    return Next::Reconnect;
                }
            }
        }
        let finished = Instant::now();
        result.completed += 1;
        if all_ok && schedule.in_window(finished) {
            result.ok += 1;
            let us = (finished - started).as_micros() as u64;
            let _ = result.latency_us.record(us.max(1));
        }
        if close {
            return Next::Reconnect;
        }
    }
}

/// Sends one request and reads its whole response, discarding the body (a
/// keep-alive connection can only be reused once the body is consumed).
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Reply, hyper::Error> {
    let res = sender.send_request(req).await?;
    let status = res.status();
    let close = res
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let mut body = res.into_body();
    let mut head = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if status != StatusCode::OK && head.is_none() {
            if let Some(data) = frame.data_ref() {
                let n = data.len().min(300);
                head = Some(String::from_utf8_lossy(&data[..n]).into_owned());
            }
        }
    }
    Ok(Reply {
        status,
        close,
        head,
    })
}
