//! One span per request, so that whatever is logged while serving it (a 500's
//! detail, a store warning) carries its context: the route template (never
//! the concrete path, which holds secret names), the method, a request id,
//! and the caller's key prefix once it is known.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
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

pub async fn span(req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %id,
        key_prefix = tracing::field::Empty,
    );
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// Records the caller's key prefix on the current request's span.
pub fn record_caller(key_prefix: &str) {
    tracing::Span::current().record("key_prefix", tracing::field::display(key_prefix));
}
