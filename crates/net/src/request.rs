//! What happens to every request between hyper and the router: its client
//! address, the per-address cap for requests forwarded by a trusted proxy,
//! the handler timeout, and draining what the handler left of the body.

use super::client_addr::ClientAddr;
use super::limiter::Refusal;
use super::{drain, timeout, Shared};
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

pub async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let client = shared.proxies.client_addr(peer, req.headers());
    let long_poll = timeout::is_long_poll(&req);
    let (mut req, drain) = drain::track(req);
    req.extensions_mut().insert(ClientAddr(client));
    if long_poll {
        req.extensions_mut()
            .insert(shared.limiter.limits().long_poll_cap());
    }
    // Through a trusted proxy the connection is shared by many clients;
    // each request holds a slot of its own client address instead.
    let slot = if shared.proxies.contains(peer.ip()) {
        shared.limiter.forwarded_request(client).map(Some)
    } else {
        Ok(None)
    };
    let resp = match slot {
        Err(refusal) => refused(refusal),
        Ok(_slot) => {
            let call = shared.router.clone().oneshot(req);
            let result = if long_poll {
                call.await
            } else {
                match tokio::time::timeout(shared.request_timeout, call).await {
                    Ok(r) => r,
                    Err(_) => Ok(timeout::timed_out(shared.request_timeout)),
                }
            };
            match result {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    };
    Ok(match drain {
        Some(d) => d.settle(resp).await,
        None => resp,
    })
}

fn refused(refusal: Refusal) -> Response<Body> {
    metrics::counter!("tessera_connections_refused_total", "limit" => refusal.as_str())
        .increment(1);
    super::unavailable::unavailable(refusal.message())
}
