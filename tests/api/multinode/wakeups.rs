//! Delivery across nodes: LISTEN/NOTIFY wakes other nodes' long polls.

use super::cluster::*;
use crate::common::{canary, to_resp, Deadline, Resp, ServerProcess, PG_ENV};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// A WORKSPACE_READ_SECRETS key for the default team, made on node 0.
async fn reader_key(c: &Cluster) -> String {
    let team = c.get(0, "/v1/teams").await.ok()["teams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.post(
        0,
        &format!("/v1/teams/{team}/api_keys"),
        json!({"type": "WORKSPACE_READ_SECRETS", "name": canary("reader")}),
    )
    .await
    .json::<tessera::wire::management::NewApiKeyView>()
    .api_key
}

/// Starts a long poll on `node` holding `etag`; resolves to the answer and
/// when it came.
fn long_poll(
    c: &Cluster,
    node: usize,
    key: &str,
    etag: &str,
    wait: u64,
) -> JoinHandle<(Resp, Instant)> {
    let (http, url, key, etag) = (
        c.http.clone(),
        c.url(node, &format!("/runtime/v1/secrets?wait={wait}")),
        key.to_owned(),
        etag.to_owned(),
    );
    tokio::spawn(async move {
        let r = http
            .get(url)
            .header("Authorization", format!("Bearer {key}"))
            .header("If-None-Match", etag)
            .send()
            .await
            .expect("long poll");
        let at = Instant::now();
        (to_resp(r).await, at)
    })
}

/// The ETag a node gives the key now.
async fn current_etag(c: &Cluster, node: usize, key: &str) -> String {
    let r = c
        .http
        .get(c.url(node, "/runtime/v1/secrets"))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["etag"].to_str().unwrap().to_owned()
}

/// The backend pid of a node's listening connection, from its log (the
/// latest one when it has reconnected).
fn listener_pid(node: &ServerProcess) -> Option<i32> {
    node.log_text()
        .lines()
        .rev()
        .filter(|l| l.contains("listening for other nodes' changes"))
        .filter_map(|l| l.split("pid=").nth(1))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

async fn wait_for_listener(node: &ServerProcess, other_than: Option<i32>) -> i32 {
    let deadline = Deadline::new("the node listening");
    loop {
        if let Some(pid) = listener_pid(node).filter(|p| Some(*p) != other_than) {
            return pid;
        }
        deadline.tick_showing(node.log_text()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_wakes_waiters_on_the_other() {
    let Some(c) = two_nodes("multinode::a_write_on_one_node_wakes_waiters_on_the_other").await
    else {
        return;
    };
    let key = reader_key(&c).await;
    wait_for_listener(&c.nodes[1], None).await;
    let mut delays = Vec::new();
    for round in 0..5 {
        let etag = current_etag(&c, 1, &key).await;
        let poll = long_poll(&c, 1, &key, &etag, 30);
        c.nodes[1].wait_for_long_polls(1).await;
        assert!(!poll.is_finished(), "answered before any write");
        let value = canary("cross");
        let written = Instant::now();
        c.post(0, "/v1/secrets", json!({"name": "shared", "value": value}))
            .await
            .ok();
        let (r, at) = poll.await.unwrap();
        let body = r.ok();
        let got = body["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "shared")
            .expect("the written secret")["value"]
            .clone();
        assert_eq!(got, value.as_str(), "round {round}");
        delays.push(at - written);
        assert!(at - written < Duration::from_secs(5), "{:?}", at - written);
    }
    report(format!("write on node 0 to answer on node 1: {delays:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_does_not_lose_a_change() {
    let Some(c) = two_nodes("multinode::a_lost_listening_connection_does_not_lose_a_change").await
    else {
        return;
    };
    let key = reader_key(&c).await;
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&std::env::var(PG_ENV).unwrap())
            .await
            .unwrap();
    for round in 0..3 {
        let pid = wait_for_listener(&c.nodes[1], None).await;
        let etag = current_etag(&c, 1, &key).await;
        let poll = long_poll(&c, 1, &key, &etag, 30);
        c.nodes[1].wait_for_long_polls(1).await;
        // Cut node 1's listening connection and write on node 0 at once,
        // while node 1 is not listening.
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(killed);
        let value = canary("gap");
        c.post(0, "/v1/secrets", json!({"name": "gap", "value": value}))
            .await
            .ok();
        let (r, _) = tokio::time::timeout(Duration::from_secs(15), poll)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the change was lost: {}", c.logs()))
            .unwrap();
        let body = r.ok();
        assert!(
            body["secrets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["value"] == value.as_str()),
            "{body}"
        );
        // The node listens again, on a new connection, and caught up.
        wait_for_listener(&c.nodes[1], Some(pid)).await;
    }
    let log = c.nodes[1].log_text();
    assert_eq!(log.matches("catching up").count(), 3, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_node_ends_its_waiters_on_the_other() {
    let Some(c) =
        two_nodes("multinode::a_key_revoked_on_one_node_ends_its_waiters_on_the_other").await
    else {
        return;
    };
    wait_for_listener(&c.nodes[1], None).await;
    let key = reader_key(&c).await;
    let etag = current_etag(&c, 1, &key).await;
    let poll = long_poll(&c, 1, &key, &etag, 30);
    c.nodes[1].wait_for_long_polls(1).await;
    let prefix = key.split('.').next().unwrap();
    c.req(
        0,
        Method::DELETE,
        &format!("/v1/api_keys/{prefix}"),
        &c.admin_key,
        None,
    )
    .await
    .ok();
    let revoked = Instant::now();
    let (r, at) = poll.await.unwrap();
    r.err(401, "UNAUTHORIZED");
    let took = at - revoked;
    assert!(took < Duration::from_secs(1), "{took:?}");
    report(format!(
        "revocation on node 0 to 401 for a waiter on node 1: {took:?}"
    ));
}

/// A node answers fetches from the team's ciphertexts as last read while the
/// team's revision reads the same. A write acknowledged by the other node
/// must show in the very next fetch: 300 rounds of write on node 0, then
/// fetch on node 1 right after the 200, no pause (the first fetch of each
/// round finds a remembered snapshot of the round before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_on_one_node_is_never_staler_than_a_write_on_the_other() {
    let Some(c) =
        two_nodes("multinode::a_fetch_on_one_node_is_never_staler_than_a_write_on_the_other").await
    else {
        return;
    };
    let key = reader_key(&c).await;
    let team = c.get(0, "/v1/teams").await.ok()["teams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secrets = format!("/v1/teams/{team}/secrets");
    let fetch = || async {
        let r = c
            .http
            .get(c.url(1, "/runtime/v1/secrets"))
            .header("Authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap();
        to_resp(r).await.ok()
    };
    fetch().await;
    for round in 0..300 {
        let value = format!("value {round}");
        let name = if round % 2 == 0 { "rotated" } else { "other" };
        c.post(0, &secrets, json!({"name": name, "value": value}))
            .await
            .ok();
        let answer = fetch().await;
        let delivered = answer["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["value"].as_str().unwrap().to_owned());
        assert_eq!(
            delivered.as_deref(),
            Some(value.as_str()),
            "round {round}: node 1 delivered other than what node 0 acknowledged"
        );
    }
}
