//! The propagation machinery against a tiny long-poll server: waiters
//! answer once per change with the new ETag and re-arm; 304s are not
//! answers; the agent's file reader; ETag parsing; the round statistics.

use super::agent::wait_for_bytes;
use super::waiters::{parse_etag, Event, Waiters};
use super::Propagation;
use crate::config::Plan;
use axum::extract::State;
use axum::http::header::{ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// `GET /runtime/v1/secrets?wait=N`: 200 with the revision as ETag when it
/// differs from If-None-Match, else waits for a change (200) or 304 after
/// 300 ms (the test's stand-in for the wait).
async fn long_poll(State(rev): State<watch::Sender<i64>>, headers: HeaderMap) -> impl IntoResponse {
    let held: Option<i64> = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_etag);
    let mut rx = rev.subscribe();
    let answer = |r: i64| {
        (
            StatusCode::OK,
            [(ETAG, format!("\"{r}\""))],
            format!("{{\"revision\":{r},\"secrets\":[]}}"),
        )
            .into_response()
    };
    let current = *rx.borrow_and_update();
    if held != Some(current) {
        return answer(current);
    }
    match tokio::time::timeout(Duration::from_millis(300), rx.changed()).await {
        Ok(Ok(())) => answer(*rx.borrow()),
        _ => (StatusCode::NOT_MODIFIED, [(ETAG, format!("\"{current}\""))]).into_response(),
    }
}

async fn server() -> (SocketAddr, watch::Sender<i64>) {
    let (tx, _) = watch::channel(5_i64);
    let app = Router::new()
        .route("/runtime/v1/secrets", get(long_poll))
        .with_state(tx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, tx)
}

#[tokio::test]
async fn every_waiter_answers_each_change_once_with_the_new_etag() {
    let (addr, rev) = server().await;
    let mut waiters = Waiters::start(addr, "k", 20, 2, 5, 60).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(waiters.pending().is_empty());
    for new in [6, 7] {
        rev.send_replace(new);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = [false; 20];
        while seen.iter().any(|s| !s) {
            match waiters.next(deadline).await.expect("every waiter answers") {
                Event::Answered { waiter, etag, .. } => {
                    assert_eq!(etag, new);
                    assert!(!seen[waiter], "waiter {waiter} answered twice");
                    seen[waiter] = true;
                }
                Event::NotModified => {}
                Event::Failed { detail, .. } => panic!("{detail}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the test server's 300 ms wait, the re-armed waiters get 304s,
    // which are not answers.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let events = waiters.pending();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| matches!(e, Event::NotModified)));
    waiters.stop().await;
}

#[tokio::test]
async fn a_refused_poll_is_a_failure() {
    let app = Router::new().route(
        "/runtime/v1/secrets",
        get(|| async { (StatusCode::UNAUTHORIZED, "{\"code\":\"UNAUTHORIZED\"}") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut waiters = Waiters::start(addr, "k", 1, 1, 1, 60).unwrap();
    let event = waiters
        .next(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    match event {
        Event::Failed { kind, detail, .. } => {
            assert_eq!(kind, "HTTP 401");
            assert!(detail.contains("UNAUTHORIZED"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    waiters.stop().await;
}

#[test]
fn etags() {
    assert_eq!(parse_etag("\"17\""), Some(17));
    assert_eq!(parse_etag("W/\"3\""), Some(3));
    assert_eq!(parse_etag(" \"0\" "), Some(0));
    for bad in ["17", "\"\"", "\"-1\"", "*", "\"1\", \"2\"", "\"x\""] {
        assert_eq!(parse_etag(bad), None, "{bad}");
    }
}

#[test]
fn the_reader_sees_a_renamed_file_and_gives_up_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    std::fs::write(&path, b"old").unwrap();
    let gone = std::time::Instant::now() + Duration::from_millis(20);
    assert!(wait_for_bytes(&path, b"new", gone).is_none());
    let writer = {
        let (dir, path) = (dir.path().to_path_buf(), path.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let tmp = dir.join(".s.tmp");
            std::fs::write(&tmp, b"new").unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            std::time::Instant::now()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let seen = wait_for_bytes(&path, b"new", deadline).expect("the new bytes");
    let written = writer.join().unwrap();
    assert!(seen >= written);
    assert!(seen - written < Duration::from_millis(50));
}

fn plan(rounds: usize) -> Plan {
    let d = Duration::from_millis(1);
    Plan {
        quick: true,
        runs: 1,
        warmup: d,
        upsert_64: d,
        upsert_1: d,
        list_100: d,
        list_10k: d,
        fetch_100: d,
        rounds,
        round_settle: d,
        idle_probe: d,
        settle: d,
        load_100k: false,
        client_threads: 1,
        only: Vec::new(),
    }
}

#[test]
fn rounds_give_a_median_and_a_nearest_rank_p99() {
    let mut p = Propagation::new("propagate-1k", "tessera-sqlite", 10, &plan(20));
    p.last_ms = (1..=20).map(f64::from).collect();
    p.finish();
    assert_eq!(p.median_ms, Some(10.5));
    assert_eq!(p.p99_ms, Some(20.0));
    assert_eq!(p.errors, 0);
}

#[test]
fn missing_rounds_are_an_error() {
    let mut p = Propagation::new("propagate-1k", "tessera-sqlite", 10, &plan(5));
    p.last_ms = vec![1.0, 2.0];
    p.finish();
    assert_eq!(p.errors, 1);
    assert!(p.first_error.unwrap().contains("only 2 of 5 rounds"));
}
