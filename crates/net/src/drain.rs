//! Keeping a connection usable after an answer given before the body was
//! read (issue 9, finding 3).
//!
//! A handler may answer without reading the request body: a 401 from the
//! authentication extractor, a 404 or 405 from the router, a 413 after the
//! first MiB. hyper then cannot reuse the connection (the unread body is
//! still on the wire) and closes it after the response, without saying so,
//! and the client's next request on it fails. Here the rest of the body is
//! read and dropped before the answer leaves, up to [`MAX_DRAIN_BYTES`] and
//! [`MAX_DRAIN_TIME`]; a body larger than that, not arriving, or waiting for
//! `100 Continue`, makes the answer carry `Connection: close` instead, so
//! the client knows.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::Mutex;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tessera_wire::MAX_BODY_BYTES;

pub const MAX_DRAIN_BYTES: usize = MAX_BODY_BYTES;
pub const MAX_DRAIN_TIME: Duration = Duration::from_secs(2);

struct Shared {
    body: Option<Incoming>,
    polled: bool,
}

/// The request body as the handler sees it; the network layer keeps a
/// handle to whatever the handler leaves unread.
struct TrackedBody(Arc<Mutex<Shared>>);

fn lock(m: &Mutex<Shared>) -> parking_lot::MutexGuard<'_, Shared> {
    m.lock()
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut shared = lock(&self.0);
        shared.polled = true;
        match shared.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.0)
            .body
            .as_ref()
            .is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0)
            .body
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

/// What is left to do once the handler has answered.
pub struct Drain {
    shared: Arc<Mutex<Shared>>,
    expect_continue: bool,
}

/// Hands the request on with a tracked body; `None` when it has no body.
pub fn track(req: Request<Incoming>) -> (Request<Body>, Option<Drain>) {
    if req.body().is_end_stream() {
        return (req.map(Body::new), None);
    }
    let expect_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let shared = Arc::new(Mutex::new(Shared {
        body: None,
        polled: false,
    }));
    let req = req.map(|body| {
        lock(&shared).body = Some(body);
        Body::new(TrackedBody(shared.clone()))
    });
    (
        req,
        Some(Drain {
            shared,
            expect_continue,
        }),
    )
}

impl Drain {
    /// Reads what the handler left of the body, or marks the answer as the
    /// connection's last.
    pub async fn settle(self, mut resp: Response) -> Response {
        let (body, polled) = {
            let mut shared = lock(&self.shared);
            (shared.body.take(), shared.polled)
        };
        let Some(mut body) = body else {
            return resp;
        };
        if body.is_end_stream() {
            return resp;
        }
        // The client waits for 100 Continue, which only reading would send:
        // it may or may not send the body now, so the connection cannot be
        // reused reliably.
        let hopeless =
            (self.expect_continue && !polled) || body.size_hint().lower() > MAX_DRAIN_BYTES as u64;
        let clean = if hopeless {
            false
        } else {
            let drain = async {
                let mut drained = 0usize;
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { return false };
                    if let Some(data) = frame.data_ref() {
                        drained += data.len();
                        if drained > MAX_DRAIN_BYTES {
                            return false;
                        }
                    }
                }
                true
            };
            tokio::time::timeout(MAX_DRAIN_TIME, drain)
                .await
                .unwrap_or(false)
        };
        if !clean {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
