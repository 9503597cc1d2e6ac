//! The load client against a tiny in-process server: only 200s count as
//! successes, failures are counted by status, and a limited phase sends
//! each request exactly once.

use super::{run, RequestSet, Spec};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use hyper::header::AUTHORIZATION;
use hyper::Method;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Answers 200 to odd-numbered requests and 503 to even ones.
async fn flaky_server(hits: Arc<AtomicUsize>) -> SocketAddr {
    let app = Router::new().route(
        "/x",
        post(move || {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            async move {
                if n % 2 == 1 {
                    (StatusCode::OK, "{}")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{\"code\":\"UNAVAILABLE\"}",
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn requests(addr: SocketAddr, n: usize) -> Arc<RequestSet> {
    let mut set = RequestSet::new(addr, Method::POST, (AUTHORIZATION, "Bearer t")).unwrap();
    for i in 0..n {
        set.push("/x", format!("{{\"n\":{i}}}")).unwrap();
    }
    Arc::new(set)
}

#[tokio::test]
async fn limited_phase_sends_each_request_once_and_counts_failures() {
    let hits = Arc::new(AtomicUsize::new(0));
    let addr = flaky_server(hits.clone()).await;
    let spec = Spec {
        connections: 4,
        warmup: Duration::ZERO,
        duration: None,
        limit: Some(100),
        threads: 2,
    };
    let result = run(addr, requests(addr, 100), spec).await;
    assert_eq!(hits.load(Ordering::SeqCst), 100);
    assert_eq!(result.ok, 50);
    assert_eq!(result.errors.get("HTTP 503"), Some(&50));
    assert_eq!(result.completed, 100);
    let first = result.first_error.unwrap();
    assert!(
        first.contains("503") && first.contains("UNAVAILABLE"),
        "{first}"
    );
    assert_eq!(result.latency_us.len(), 50);
}

#[tokio::test]
async fn timed_phase_counts_only_the_window_after_warmup() {
    let hits = Arc::new(AtomicUsize::new(0));
    let addr = flaky_server(hits.clone()).await;
    let spec = Spec {
        connections: 2,
        warmup: Duration::from_millis(100),
        duration: Some(Duration::from_millis(200)),
        limit: None,
        threads: 1,
    };
    let result = run(addr, requests(addr, 10), spec).await;
    assert_eq!(result.window, Duration::from_millis(200));
    assert!(result.ok > 0);
    // Warm-up successes are not counted; warm-up failures are.
    assert!(result.ok < result.completed);
    assert!(result.error_count() >= result.completed / 2);
}
