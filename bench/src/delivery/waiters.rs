//! Long-poll waiters: N keep-alive connections, each holding the ETag of
//! the last answer it received and asking `GET /runtime/v1/secrets?wait=60`
//! with `If-None-Match` again as soon as it has an answer, the way a workload
//! (or `tessera agent`) follows a team. Each answer is reported, with the
//! instant its body was completely read, to the round driver.
//!
//! Like the load client, the waiters run on their own threads, each a
//! single-threaded event loop over its share of the connections.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, ETAG, HOST, IF_NONE_MATCH};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a waiter reports.
#[derive(Debug)]
pub enum Event {
    /// A 200 whose body was read completely at `at`, carrying this ETag.
    Answered {
        waiter: usize,
        etag: i64,
        at: Instant,
    },
    /// A 304: the wait ended without a change (expected only when a round
    /// outlasts the wait).
    NotModified,
    /// Anything else: a status other than 200 or 304, or a transport error.
    /// The waiter then re-polls (after a pause).
    Failed {
        waiter: usize,
        kind: String,
        detail: String,
    },
}

/// The revision in an `ETag` header: `"17"` or weak `W/"17"`.
pub fn parse_etag(v: &str) -> Option<i64> {
    let v = v.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok()
}

/// What every waiter's request carries.
#[derive(Clone)]
struct Poll {
    addr: SocketAddr,
    host: HeaderValue,
    auth: HeaderValue,
    path: String,
    events: mpsc::UnboundedSender<Event>,
}

pub struct Waiters {
    events: mpsc::UnboundedReceiver<Event>,
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// After a failure, a waiter waits this long before polling again, so a
/// server refusing every poll does not turn into a busy loop.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

impl Waiters {
    /// Starts `count` waiters on `threads` client threads, all holding
    /// `etag` at first.
    pub fn start(
        addr: SocketAddr,
        key: &str,
        count: usize,
        threads: usize,
        etag: i64,
        wait_seconds: u64,
    ) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let poll = Poll {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            auth: HeaderValue::from_str(&format!("Bearer {key}"))?,
            path: format!("/runtime/v1/secrets?wait={wait_seconds}"),
            events: tx,
        };
        let threads = threads.clamp(1, count.max(1));
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let ids: Vec<usize> = (t..count).step_by(threads).collect();
            let (poll, mut stopped) = (poll.clone(), stopped.clone());
            handles.push(std::thread::spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        for waiter in ids {
                            let _ = poll.events.send(Event::Failed {
                                waiter,
                                kind: "client".into(),
                                detail: format!("client runtime: {e}"),
                            });
                        }
                        return;
                    }
                };
                runtime.block_on(async move {
                    for waiter in ids {
                        tokio::spawn(follow(waiter, poll.clone(), etag));
                    }
                    let _ = stopped.wait_for(|stop| *stop).await;
                });
                // Dropping the runtime drops every waiter and its connection.
            }));
        }
        Ok(Waiters {
            events,
            stop,
            threads: handles,
        })
    }

    /// The next report, or None at `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Option<Event> {
        tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Reports already received, without waiting.
    pub fn pending(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Closes every connection and joins the client threads.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// One waiter: connect, then long-poll over and over, reconnecting when the
/// connection is lost. Runs until its runtime is dropped.
async fn follow(waiter: usize, poll: Poll, mut etag: i64) {
    let fail = |kind: &str, detail: String| {
        let _ = poll.events.send(Event::Failed {
            waiter,
            kind: kind.into(),
            detail,
        });
    };
    loop {
        let stream = match TcpStream::connect(poll.addr).await {
            Ok(s) => s,
            Err(e) => {
                fail("connect", format!("connect to {}: {e}", poll.addr));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = match http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                fail("transport", format!("handshake: {e}"));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        // As in the load client: the connection and its request loop are
        // polled by this one task; the loop drops the sender when it ends.
        let (_, lost) = tokio::join!(conn, polls(waiter, &poll, sender, &mut etag));
        fail("transport", lost);
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Long polls on one connection until it fails; returns why.
async fn polls(
    waiter: usize,
    poll: &Poll,
    mut sender: SendRequest<Empty<Bytes>>,
    etag: &mut i64,
) -> String {
    loop {
        if let Err(e) = sender.ready().await {
            return format!("connection lost: {e}");
        }
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = match poll.path.parse() {
            Ok(uri) => uri,
            Err(e) => return format!("bad path: {e}"),
        };
        let h = req.headers_mut();
        h.insert(HOST, poll.host.clone());
        h.insert(AUTHORIZATION, poll.auth.clone());
        let held =
            HeaderValue::from_str(&format!("\"{etag}\"")).expect("digits are a valid header");
        h.insert(IF_NONE_MATCH, held);
        let res = match sender.send_request(req).await {
            Ok(res) => res,
            Err(e) => return format!("request failed: {e}"),
        };
        let status = res.status();
        let new_etag = res
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_etag);
        // The answer counts once its whole body is here. The bytes are
        // counted, not kept (but the start of an error's body).
        let mut body = res.into_body();
        let (mut len, mut head) = (0, Vec::new());
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return format!("reading the body: {e}"),
            };
            if let Some(data) = frame.data_ref() {
                len += data.len();
                if status != StatusCode::OK && head.len() < 300 {
                    head.extend_from_slice(&data[..data.len().min(300 - head.len())]);
                }
            }
        }
        let at = Instant::now();
        let event = match (status, new_etag) {
            (StatusCode::OK, Some(new)) if len > 0 => {
                *etag = new;
                Event::Answered {
                    waiter,
                    etag: new,
                    at,
                }
            }
            (StatusCode::NOT_MODIFIED, _) => Event::NotModified,
            _ => Event::Failed {
                waiter,
                kind: format!("HTTP {}", status.as_u16()),
                detail: format!(
                    "HTTP {status} (ETag {new_etag:?}, {len} body bytes): {}",
                    String::from_utf8_lossy(&head)
                ),
            },
        };
        let failed = matches!(event, Event::Failed { .. });
        let _ = poll.events.send(event);
        if failed {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
