//! The metrics a real server exposes, after traffic that makes each one
//! appear (the exporter lists a metric once it has been recorded).

use crate::common::ServerProcess;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Flags the server under test needs for its metrics to be scraped, and
/// the URL to scrape. The one place to change when `/metrics` moves to a
/// listener of its own.
pub fn metrics_serve_args() -> Vec<String> {
    Vec::new()
}

pub fn metrics_url(server: &ServerProcess) -> String {
    format!("{}/metrics", server.metrics_url())
}

/// Flags that make the rarer metrics easy to provoke.
fn provoking_args() -> Vec<String> {
    [
        "--auth-failure-limit",
        "2/min",
        "--max-connections-per-address",
        "2",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Metric names in Prometheus text (`# TYPE` lines, and sample names with
/// a histogram's suffixes taken off).
pub fn names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(n) = rest.split_whitespace().next() {
                names.insert(n.to_owned());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let n: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(&n);
            names.insert(base.to_owned());
        }
    }
    names
}

fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts a server on `db_args`' store in `data`, drives traffic through
/// it, and returns the metric names it then exposes.
pub async fn scrape_after_traffic(data: &Path, db_args: &[String]) -> BTreeSet<String> {
    let mut args = db_args.to_vec();
    args.extend(provoking_args());
    args.extend(metrics_serve_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(data, &args, &[]).expect("server starts");
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    // One keep-alive connection for the requests (the per-address cap is
    // 2). The pool may open a second while the first is on its way back to
    // it; it keeps only one of them.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", server.url);

    // A new secret and an update of it (PostgreSQL batches updates), a
    // team key for workloads, a runtime read.
    for value in ["v1", "v2"] {
        let r = http
            .post(url("/v1/secrets"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"name": "metrics_probe", "value": value}))
            .send()
            .await
            .unwrap();
        // Every body is read, so the connection goes back to the pool.
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let teams: serde_json::Value = http
        .get(url("/v1/teams"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let team = teams["teams"][0]["id"].as_str().unwrap().to_owned();
    let created: serde_json::Value = http
        .post(url(&format!("/v1/teams/{team}/api_keys")))
        .bearer_auth(&key)
        .body(r#"{"type": "WORKSPACE_READ_SECRETS", "name": "metrics"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader = created["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key created: {created}"))
        .to_owned();
    let r = http
        .get(url("/runtime/v1/secrets"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].clone();
    r.bytes().await.unwrap();
    // A long poll that waits out its second: nothing changes.
    let r = http
        .get(url("/runtime/v1/secrets?wait=1"))
        .bearer_auth(&reader)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    r.bytes().await.unwrap();

    // Failed authentications until the per-address budget answers 429.
    let mut limited = false;
    for _ in 0..5 {
        let r = http
            .get(url("/v1/teams"))
            .bearer_auth("AAAAAAAA.wrong")
            .send()
            .await
            .unwrap();
        limited |= r.status() == 429;
        r.bytes().await.unwrap();
    }
    assert!(limited, "the auth-failure budget never answered 429");

    // A request hyper cannot parse.
    let addr = server.addr();
    let answer = tokio::task::spawn_blocking(move || {
        raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // Connections beyond the per-address cap (2): with the client's own
    // and two more held open, a fourth is refused, however many of the
    // client's earlier connections the server still counts (waiting for an
    // exact count made this flaky under load).
    let refused = tokio::task::spawn_blocking(move || {
        let _a = TcpStream::connect(addr).unwrap();
        let _b = TcpStream::connect(addr).unwrap();
        raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    })
    .await
    .unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");

    // The two held connections are gone once the server has seen them
    // close; until then a scrape may be refused too.
    let deadline = crate::common::Deadline::new("/metrics answering 200");
    loop {
        let r = http.get(metrics_url(&server)).send().await.unwrap();
        if r.status() == 200 {
            return names(&r.text().await.unwrap());
        }
        deadline.tick_showing(r.status()).await;
    }
}
