//! Issue 9: hostile clients at the connection level. Each test here failed
//! against `axum::serve` (no header timeout, no caps, unbounded shutdown,
//! connections dropped after an early 401, empty bodies on hyper's errors).

use crate::common::{metric_value, Backend, Deadline, ServerProcess, Storage, TestApp};
use crate::rawhttp::{closed_within, exchange, get, read_response};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// The real binary on a fresh SQLite store with extra flags.
async fn serve(extra: &[&str]) -> (Storage, ServerProcess, String) {
    let storage = Storage::new(Backend::Sqlite).await.unwrap();
    let data = storage.dir.path().join("data");
    let server = ServerProcess::start(&data, extra, &[]).expect("server starts");
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    (storage, server, key)
}

/// A connection from a chosen loopback source address (127.0.0.0/8 is all
/// local, so tests can play several clients).
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

fn app_addr(app: &TestApp) -> SocketAddr {
    app.url.trim_start_matches("http://").parse().unwrap()
}

// ---------------------------------------------------------------------------
// Finding 1: timeouts, caps, accept errors, shutdown
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_head_is_closed_after_the_default_header_timeout() {
    let (_s, server, _) = serve(&[]).await;
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: tessera\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(20)).await,
        "a half-sent request head is still open after 20 s"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited <= Duration::from_secs(15),
        "closed after {waited:?}, expected about 10 s"
    );
    // Others were served meanwhile and still are.
    let mut ok = TcpStream::connect(server.addr()).await.unwrap();
    assert_eq!(
        exchange(&mut ok, &get("/healthz")).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_s, server, _) = serve(&["--header-read-timeout", "1s"]).await;
    let mut conn = TcpStream::connect(server.addr()).await.unwrap();
    // Kept alive across requests...
    for _ in 0..3 {
        let r = exchange(&mut conn, &get("/healthz")).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(!r.closes());
    }
    // ...and closed once idle for the timeout (hyper's header timer runs
    // while the connection waits for the next request head).
    let start = Instant::now();
    assert!(closed_within(&mut conn, Duration::from_secs(6)).await);
    assert!(start.elapsed() >= Duration::from_millis(900));
    // A head that trickles in is cut at the same timeout.
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    let trickle = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: tessera\r\nX-Slow: " {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            // sleep: a head trickling in is the case under test.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    trickle.await;
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_a_json_503() {
    let (_s, server, _) = serve(&["--max-connections", "3", "--header-read-timeout", "30s"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(server.addr()).await.unwrap();
        // Served (and so counted) before the next one connects.
        assert_eq!(
            exchange(&mut c, &get("/healthz")).await.unwrap().status,
            200
        );
        held.push(c);
    }
    let mut extra = TcpStream::connect(server.addr()).await.unwrap();
    let r = exchange(&mut extra, &get("/healthz")).await.unwrap();
    assert_eq!(r.json_error(503), "UNAVAILABLE");
    assert!(r.closes(), "{r:?}");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("connection limit"));
    assert!(closed_within(&mut extra, Duration::from_secs(5)).await);
    // A slot comes back when a connection closes.
    drop(held.pop());
    let deadline = Deadline::new("a slot back");
    loop {
        let mut c = TcpStream::connect(server.addr()).await.unwrap();
        let r = exchange(&mut c, &get("/healthz")).await.unwrap();
        if r.status == 200 {
            break;
        }
        deadline.tick().await;
    }
    drop(held);
    // The server notices the closes asynchronously: retry until a slot is free.
    let deadline = Deadline::new("a slot back for /metrics");
    let text = loop {
        let r = reqwest::get(format!("{}/metrics", server.metrics_url()))
            .await
            .unwrap();
        if r.status() == 200 {
            break r.text().await.unwrap();
        }
        deadline.tick().await;
    };
    assert!(
        text.contains("tessera_connections_refused_total{limit=\"max_connections\"}"),
        "{text}"
    );
    assert!(server
        .log_text()
        .contains("refusing connections beyond a limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_cap_refuses_only_that_address() {
    let (_s, server, _) = serve(&["--max-connections-per-address", "2"]).await;
    let addr = server.addr();
    let mut held = Vec::new();
    // The start-up readiness checks came from this address too; the server
    // notices their closes asynchronously (seen once in CI: the second
    // connection refused). Retry until both slots are ours.
    let deadline = Deadline::new("the two slots free");
    while held.len() < 2 {
        let mut c = connect_from("127.0.0.1", addr).await;
        if exchange(&mut c, &get("/healthz")).await.unwrap().status == 200 {
            held.push(c);
        } else {
            deadline.tick().await;
        }
    }
    let mut third = connect_from("127.0.0.1", addr).await;
    let r = exchange(&mut third, &get("/healthz")).await.unwrap();
    assert_eq!(r.json_error(503), "UNAVAILABLE");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("from this address"));
    // Another client address is not affected.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(
        exchange(&mut other, &get("/healthz")).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_connections_are_not_capped_per_address() {
    let (_s, server, _) = serve(&[
        "--max-connections-per-address",
        "1",
        "--trusted-proxies",
        "127.0.0.1/32",
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from("127.0.0.1", server.addr()).await;
        assert_eq!(
            exchange(&mut c, &get("/healthz")).await.unwrap().status,
            200
        );
        held.push(c);
    }
    // An untrusted address still is.
    let mut a = connect_from("127.0.0.3", server.addr()).await;
    assert_eq!(
        exchange(&mut a, &get("/healthz")).await.unwrap().status,
        200
    );
    let mut b = connect_from("127.0.0.3", server.addr()).await;
    assert_eq!(
        exchange(&mut b, &get("/healthz")).await.unwrap().status,
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_half_sent_request_exits_within_the_shutdown_timeout() {
    let (_s, server, key) = serve(&[
        "--shutdown-timeout",
        "2s",
        "--header-read-timeout",
        "60s",
        "--request-timeout",
        "60s",
    ])
    .await;
    let addr = server.addr();
    // Counted from here: only the scrapes' own connection is open (the
    // readiness checks' are closed).
    let open = || server.metric("tessera_open_connections");
    let deadline = Deadline::new("the readiness checks' connections closed");
    while open().await > 1.0 {
        deadline.tick().await;
    }
    // A half-sent head, an idle keep-alive connection, and a request whose
    // handler waits for a body that never comes.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        exchange(&mut idle, &get("/healthz")).await.unwrap().status,
        200
    );
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(
            format!(
                "POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\nAuthorization: Bearer {key}\r\n\
                 Content-Length: 100\r\n\r\n{{\"name\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // The server holds all three (and the scrape's).
    let deadline = Deadline::new("the three connections accepted");
    while open().await < 4.0 {
        deadline.tick().await;
    }
    let start = Instant::now();
    let code = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(code, Some(0), "did not exit cleanly within 15 s");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    drop((half, idle, stuck));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_back_off_and_are_logged_once() {
    let storage = Storage::new(Backend::Sqlite).await.unwrap();
    let data = storage.dir.path().join("data");
    let (serve_cmd, log) = ServerProcess::command(
        &data,
        &["--max-connections", "10000", "--header-read-timeout", "60s"],
        &[],
    );
    // The same command under a tiny open-file limit.
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nofile=96:96")
        .arg("--")
        .arg(serve_cmd.get_program());
    cmd.args(serve_cmd.get_args());
    for (k, v) in serve_cmd.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdout(std::process::Stdio::null());
    let server = ServerProcess::launch(cmd, log).expect("starts under prlimit");
    let addr = server.addr();
    // A scrape connection opened now keeps answering once descriptors run out.
    let scraper = reqwest::Client::new();
    let accept_errors = || async {
        let r = scraper
            .get(format!("{}/metrics", server.metrics_url()))
            .send()
            .await
            .unwrap();
        metric_value(&r.text().await.unwrap(), "tessera_accept_errors_total")
    };
    assert_eq!(accept_errors().await, 0.0);
    // Far more connections than descriptors: accept fails with EMFILE.
    let mut conns = Vec::new();
    for _ in 0..150 {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            conns.push(c);
        }
    }
    // Several failed accepts (each backed off), one line.
    let deadline = Deadline::new("several failed accepts");
    while accept_errors().await < 3.0 {
        deadline.tick().await;
    }
    let log = server.log_text();
    let failing = log.matches("accepting connections fails").count();
    assert_eq!(failing, 1, "{log}");
    assert!(log.contains("Too many open files"), "{log}");
    // Once clients leave, it accepts again and says so.
    drop(conns);
    let deadline = Deadline::new("accepting again");
    loop {
        if let Ok(mut c) = TcpStream::connect(addr).await {
            if let Ok(r) = exchange(&mut c, &get("/healthz")).await {
                if r.status == 200 {
                    break;
                }
            }
        }
        deadline.tick().await;
    }
    // Several failed accepts, but one line per change of state (closing the
    // backlog can make accepting fail once more before it settles).
    let metrics = reqwest::get(format!("{}/metrics", server.metrics_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tessera_accept_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let log = server.log_text();
    let fails = log.matches("accepting connections fails").count();
    let again = log.matches("accepting connections again").count();
    assert!(again >= 1 && fails == again && fails <= 3, "{log}");
    assert!(errors > fails as u64, "{errors} errors, {fails} lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_timeout_answers_json_503() {
    let (_s, server, key) = serve(&["--request-timeout", "1s"]).await;
    let mut c = TcpStream::connect(server.addr()).await.unwrap();
    // The handler waits for a body that never completes.
    c.write_all(
        format!(
            "POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: 100\r\n\r\n{{\"name\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut c).await.unwrap();
    assert_eq!(r.json_error(503), "UNAVAILABLE");
    assert!(r.json()["message"].as_str().unwrap().contains("within 1 s"));
    // The rest of that body is not coming: the answer says the connection ends.
    assert!(r.closes(), "{r:?}");
    let metrics = reqwest::get(format!("{}/metrics", server.metrics_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_request_timeouts_total 1"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------
// Finding 3: the connection stays usable after an early answer
// ---------------------------------------------------------------------------

async fn early_401_keeps_the_connection_usable(app: TestApp) {
    let mut c = TcpStream::connect(app_addr(&app)).await.unwrap();
    for size in [100_000usize, 300_000, 10] {
        let value = "v".repeat(size);
        let body = format!("{{\"name\":\"big\",\"value\":\"{value}\"}}");
        let req = format!(
            "POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = exchange(&mut c, req.as_bytes()).await.unwrap();
        assert_eq!(r.json_error(401), "UNAUTHORIZED");
        assert!(!r.closes(), "{size}: {r:?}");
        // The next request on the same connection works.
        let r = exchange(&mut c, &get("/healthz")).await.unwrap();
        assert_eq!(r.status, 200, "{size}");
    }
    // A body arriving in pieces after the head, to an unknown route.
    let body = vec![b'x'; 200_000];
    c.write_all(
        format!(
            "POST /v1/nowhere HTTP/1.1\r\nHost: tessera\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for part in body.chunks(50_000) {
        c.write_all(part).await.unwrap();
        // sleep: a body arriving in pieces is the case under test.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = read_response(&mut c).await.unwrap();
    assert_eq!(r.json_error(404), "NOT_FOUND");
    assert!(!r.closes());
    let r = exchange(
        &mut c,
        format!(
            "GET /v1/secrets HTTP/1.1\r\nHost: tessera\r\nAuthorization: Bearer {}\r\n\r\n",
            app.admin_key
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

async fn a_body_too_large_to_drain_announces_the_close(app: TestApp) {
    let mut c = TcpStream::connect(app_addr(&app)).await.unwrap();
    let size = 3 * 1024 * 1024;
    c.write_all(
        format!("POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\nContent-Length: {size}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(size / chunk.len()) {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let r = read_response(&mut rd).await.unwrap();
    assert_eq!(r.json_error(401), "UNAUTHORIZED");
    assert!(r.closes(), "the close must be announced: {r:?}");
    writer.abort();
}

// ---------------------------------------------------------------------------
// Finding 4: hyper's own errors carry our JSON body
// ---------------------------------------------------------------------------

async fn http_level_errors_have_json_bodies(app: TestApp) {
    let addr = app_addr(&app);
    let long_uri = format!("/v1/{}", "a".repeat(70_000));
    let big_header = "x".repeat(90_000);
    let many_headers: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "NUL byte in a header",
            b"GET /healthz HTTP/1.1\r\nHost: tessera\r\nX-A: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "folded header",
            b"GET /healthz HTTP/1.1\r\nHost: tessera\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two different Content-Lengths",
            b"POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
                .to_vec(),
            400,
        ),
        (
            "Content-Length not a number",
            b"POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Transfer-Encoding not ending in chunked",
            b"POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad method token",
            b"G(T /healthz HTTP/1.1\r\nHost: tessera\r\n\r\n".to_vec(),
            400,
        ),
        (
            "garbage request line",
            b"hello there\r\n\r\n".to_vec(),
            400,
        ),
        (
            "URI too long",
            format!("GET {long_uri} HTTP/1.1\r\nHost: tessera\r\n\r\n").into_bytes(),
            414,
        ),
        (
            "header too large",
            format!("GET /healthz HTTP/1.1\r\nHost: tessera\r\nX-Big: {big_header}\r\n\r\n")
                .into_bytes(),
            431,
        ),
        (
            "too many headers",
            format!("GET /healthz HTTP/1.1\r\nHost: tessera\r\n{many_headers}\r\n").into_bytes(),
            431,
        ),
    ];
    for (what, req, status) in cases {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let r = exchange(&mut c, &req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert_eq!(r.json_error(status), "INVALID_REQUEST", "{what}");
        assert!(r.closes(), "{what}: {r:?}");
    }
    // Bad chunked framing inside the body reaches the handler as a body
    // error: a JSON 400 as well.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let r = exchange(
        &mut c,
        format!(
            "POST /v1/secrets HTTP/1.1\r\nHost: tessera\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
            app.admin_key
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.json_error(400), "INVALID_REQUEST");
}

mod in_process {
    crate::on_both_engines!(
        crate::common::TestApp::start =>
        early_401_keeps_the_connection_usable,
        a_body_too_large_to_drain_announces_the_close,
        http_level_errors_have_json_bodies
    );
    use super::*;
}
