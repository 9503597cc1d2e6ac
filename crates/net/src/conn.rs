//! One connection: the TLS handshake (bounded by the header-read timeout),
//! then HTTP/1.1 through hyper until the client leaves, a timeout closes it,
//! or shutdown ends it.

use super::error_head::JsonErrorHeads;
use super::limiter::{Refusal, Slot};
use super::{request, Shared};
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Largest request line plus headers hyper buffers; beyond it: 431. (Above
/// hyper's URI limit of 65,534 bytes, so an over-long URI gets its 414.)
pub const MAX_HEAD_BYTES: usize = 80 * 1024;

/// How long a refused client has to send its request head before the
/// refusal is dropped without an answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one accepted connection holding `slot`.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slot: Slot,
    graceful: CancellationToken,
    hard: CancellationToken,
) {
    let _slot = slot;
    let _ = stream.set_nodelay(true);
    let timeout = shared.header_read_timeout;
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req| request::handle(req, peer, svc_shared.clone()));
    match shared.tls.clone() {
        None => run_http(stream, svc, timeout, graceful, hard).await,
        // Boxed: a TLS connection's state is several times a plain one's,
        // and an inline branch would make every connection's task that big
        // (10,000 idle long polls are meant to fit on one node).
        Some(tls) => {
            Box::pin(async move {
                if let Some(stream) = handshake(&tls, stream, timeout, &graceful, &hard).await {
                    run_http(stream, svc, timeout, graceful, hard).await
                }
            })
            .await
        }
    }
}

/// Answers a connection beyond a cap with a 503 and closes it. hyper reads
/// the request head first (a client that never sends one is dropped after a
/// short wait), so the client reads the answer instead of a reset.
pub async fn refuse(
    stream: TcpStream,
    shared: Arc<Shared>,
    refusal: Refusal,
    _permit: OwnedSemaphorePermit,
    hard: CancellationToken,
) {
    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
        let mut resp = super::unavailable::unavailable(refusal.message());
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, Infallible>(resp)
    });
    // Refusals never wait for a graceful shutdown.
    let graceful = CancellationToken::new();
    let work = async {
        match shared.tls.clone() {
            None => run_http(stream, svc, REFUSAL_TIMEOUT, graceful, hard).await,
            Some(tls) => {
                let never = CancellationToken::new();
                if let Some(stream) = handshake(&tls, stream, REFUSAL_TIMEOUT, &never, &hard).await
                {
                    run_http(stream, svc, REFUSAL_TIMEOUT, graceful, hard).await
                }
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT * 2, work).await;
}

async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    graceful: &CancellationToken,
    hard: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::select! {
        r = tokio::time::timeout(timeout, tls.accept(stream)) => match r {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                None
            }
        },
        _ = graceful.cancelled() => None,
        _ = hard.cancelled() => None,
    }
}

/// HTTP/1.1 on `io` until the connection ends. hyper's header-read timer
/// runs whenever the connection waits for a request head (from the start,
/// and again after every response), so it closes both slow heads and idle
/// keep-alive connections.
async fn run_http<I, S>(
    io: I,
    svc: S,
    header_read_timeout: Duration,
    graceful: CancellationToken,
    hard: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(JsonErrorHeads::new(io));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = graceful.cancelled() => {}
        _ = hard.cancelled() => return,
    }
    // Stop reading new requests; the one in progress may finish.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = hard.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_future<F, Fut>(_: F) -> usize
    where
        F: FnOnce(
            TcpStream,
            SocketAddr,
            Arc<Shared>,
            Slot,
            CancellationToken,
            CancellationToken,
        ) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every connection's task is as big as `serve`'s future; with the TLS
    /// branch inline it was 4,992 bytes, boxed it is 1,360.
    #[test]
    fn a_plain_connection_does_not_carry_tls_state() {
        let size = size_of_future(serve);
        assert!(size < 2048, "serve's future is {size} bytes");
    }
}
