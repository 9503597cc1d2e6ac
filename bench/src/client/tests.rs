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

#[tokio::test]
async fn a_unit_of_requests_counts_once_and_only_when_all_succeed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let addr = flaky_server(hits.clone()).await;
    // Units of two: every unit gets one 503 and one 200, so none succeeds.
    let mut set = RequestSet::new(addr, Method::POST, (AUTHORIZATION, "Bearer t"))
        .unwrap()
        .with_unit(2);
    for i in 0..4 {
        set.push("/x", format!("{{\"n\":{i}}}")).unwrap();
    }
    // One connection, so the server's alternation lines up with the units.
    let spec = Spec {
        connections: 1,
        warmup: Duration::ZERO,
        duration: None,
        limit: Some(10),
        threads: 1,
    };
    let result = run(addr, Arc::new(set), spec).await;
    assert_eq!(hits.load(Ordering::SeqCst), 20);
    assert_eq!(result.completed, 10);
    assert_eq!(result.ok, 0);
    assert_eq!(result.errors.get("HTTP 503"), Some(&10));
    assert_eq!(result.latency_us.len(), 0);
}

#[tokio::test]
async fn a_unit_of_successes_is_one_success() {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/ok",
        axum::routing::get({
            let hits = hits.clone();
            move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { "{}" }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut set = RequestSet::new(addr, Method::GET, (AUTHORIZATION, "Bearer t")).unwrap();
    for _ in 0..100 {
        set.push("/ok", Vec::new()).unwrap();
    }
    let spec = Spec {
        connections: 3,
        warmup: Duration::ZERO,
        duration: None,
        limit: Some(6),
        threads: 2,
    };
    let result = run(addr, Arc::new(set.with_unit(100)), spec).await;
    assert_eq!(hits.load(Ordering::SeqCst), 600);
    assert_eq!(
        (result.ok, result.completed, result.error_count()),
        (6, 6, 0)
    );
}
