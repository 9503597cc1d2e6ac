//! The handler timeout and the long-poll exemption.

use axum::http::Request;
use axum::response::Response;
use std::time::Duration;

/// Whether a request is a long-poll waiter of the delivery API: a route
/// under `/runtime/` with a `wait` query parameter. Such a request is held
/// open until something changes (up to a minute), so the handler timeout
/// does not apply to it; it still holds its connection slot.
pub fn is_long_poll<B>(req: &Request<B>) -> bool {
    req.uri().path().starts_with("/runtime/")
        && req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.split('=').next() == Some("wait"))
        })
}

/// The answer to a request whose handler ran out of time: 503, because the
/// server (not the client) was too slow. The request's effect is unknown to
/// the client: a write may still commit after this answer.
pub fn timed_out(limit: Duration) -> Response {
    metrics::counter!("tessera_request_timeouts_total").increment(1);
    super::unavailable::unavailable(format!(
        "the request did not complete within {} s; retry shortly",
        limit.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::is_long_poll;
    use axum::http::Request;

    fn req(uri: &str) -> Request<()> {
        Request::builder().uri(uri).body(()).unwrap()
    }

    #[test]
    fn only_runtime_routes_with_wait_are_long_polls() {
        assert!(is_long_poll(&req("/runtime/v1/secrets?wait=60")));
        assert!(is_long_poll(&req("/runtime/v1/secrets?since=3&wait")));
        assert!(!is_long_poll(&req("/runtime/v1/secrets")));
        assert!(!is_long_poll(&req("/runtime/v1/secrets?waiting=1")));
        assert!(!is_long_poll(&req("/v1/secrets?wait=60")));
        assert!(!is_long_poll(&req("/runtimes/x?wait=1")));
    }
}
