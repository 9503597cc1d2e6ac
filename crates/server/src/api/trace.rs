//! One span per request, so that whatever is logged while serving it (a 500's
//! detail, a store warning) carries its context: the route template (never
//! the concrete path, which holds secret names), the method, a request id,
//! and the caller's key prefix once it is known. The same layer records the
//! request's metrics (one layer instead of two: each costs a boxed future
//! per request), and sets the request's context for the audit log.

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The header that carries the request id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// The id a client sent, when it is a plausible one (so it cannot inject
/// text into the log); otherwise a new random one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| crate::domain::ids::random_base62(16))
}

pub async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // Large listings give way to requests being handled; a long-poll
    // waiter, idle until something changes, does not count.
    let _in_flight =
        (!crate::net::timeout::is_long_poll(&req)).then(|| state.service.request_in_flight());
    let id = request_id(&req);
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    let span = tracing::info_span!(
        "request",
        %method,
        route = %route,
        request_id = %id,
        key_prefix = tracing::field::Empty,
    );
    // The audit log records the request's id and client with each event.
    let context = crate::service::audit::RequestContext {
        request_id: Some(id.clone()),
        client: req
            .extensions()
            .get::<crate::net::ClientAddr>()
            .map(|c| c.0.to_string()),
    };
    let serve = crate::service::audit::within(context, next.run(req));
    let mut resp = serve.instrument(span.clone()).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let elapsed = start.elapsed();
    super::metrics::record(&method, route, resp.status(), elapsed);
    span.in_scope(|| {
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        tracing::debug!(status = resp.status().as_u16(), elapsed_ms, "request");
    });
    resp
}

/// Records the caller's key prefix on the current request's span.
pub fn record_caller(key_prefix: &str) {
    tracing::Span::current().record("key_prefix", tracing::field::display(key_prefix));
}
