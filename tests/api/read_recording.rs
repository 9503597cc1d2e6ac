//! Issue 24, findings 4, 8 and 14: reads are recorded without growing with
//! the request rate (folded on what the server knows), a client's instance
//! ids cannot grow the consumers, read keys are rate limited by default
//! (waiting long polls spend nothing), the data disk is watched, a narrowed
//! key's revision moves only with its scope, and one key's long polls
//! cannot take every connection of an address.

use crate::audit::all_events;
use crate::common::{canary, Backend, Deadline, ServerProcess, Storage, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tessera::wire::management::NewApiKeyView;

async fn put(app_url: &str, http: &reqwest::Client, admin: &str, team: &str, name: &str) {
    let r = http
        .post(format!("{app_url}/v1/teams/{team}/secrets"))
        .bearer_auth(admin)
        .json(&json!({"name": name, "value": canary(name)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn reader(app: &TestApp, team: &str, names: Option<&[&str]>) -> String {
    let mut body = json!({"type": "WORKSPACE_READ_SECRETS", "name": canary("reader")});
    if let Some(n) = names {
        body["secret_names"] = json!(n);
    }
    app.post(&format!("/v1/teams/{team}/api_keys"), body)
        .await
        .json::<NewApiKeyView>()
        .api_key
}

/// A runtime answer: (status, ETag, body).
type Answer = (StatusCode, Option<String>, Value);

/// A long poll of `scope` holding `etag`, waiting up to `wait` seconds, in
/// its own task: (status, ETag, body) and how long it took.
fn spawn_poll(
    app: &TestApp,
    scope: &str,
    key: &str,
    etag: &str,
    wait: u64,
) -> tokio::task::JoinHandle<(Answer, Duration)> {
    let (http, url, key, etag) = (
        app.http.clone(),
        format!("{scope}?wait={wait}"),
        key.to_owned(),
        etag.to_owned(),
    );
    tokio::spawn(async move {
        let t = Instant::now();
        let r = get(&http, &url, &key, &[("If-None-Match", &etag)]).await;
        (r, t.elapsed())
    })
}

/// A runtime GET: (status, ETag, body).
async fn get(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, Value) {
    let mut req = http
        .get(url)
        .bearer_auth(key)
        .timeout(Duration::from_secs(90));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = r.json().await.unwrap_or(Value::Null);
    (status, etag, body)
}

async fn reads_of(app: &TestApp, key: &str) -> Vec<Value> {
    let prefix = key.split('.').next().unwrap();
    all_events(app)
        .await
        .into_iter()
        .filter(|e| {
            e.event.action == "secrets.read" && e.event.actor_key.as_deref() == Some(prefix)
        })
        .map(|e| serde_json::from_str(e.event.detail.as_deref().unwrap_or("{}")).unwrap())
        .collect()
}

/// Finding 4: a key reading the same scope revision (or the same version
/// of one secret) again and again, under a new instance id each time, adds
/// one audit event, not one per read; the repeats are one summary with
/// their count; a read of a new revision is an event of its own.
async fn repeated_reads_fold_and_a_new_revision_is_recorded(app: TestApp) {
    let team = app.default_team_id().await;
    put(&app.url, &app.http, &app.admin_key, &team, "a").await;
    let key = reader(&app, &team, None).await;
    let scope = format!("{}/runtime/v1/secrets", app.url);
    let one = format!("{}/runtime/v1/secrets/a", app.url);
    for i in 0..40 {
        let instance = format!("i-{i}");
        let (status, ..) = get(&app.http, &scope, &key, &[("X-Tessera-Agent", &instance)]).await;
        assert_eq!(status, StatusCode::OK);
        let (status, ..) = get(&app.http, &one, &key, &[("X-Tessera-Agent", &instance)]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let reads = reads_of(&app, &key).await;
    assert_eq!(reads.len(), 2, "one event per content: {reads:?}");
    put(&app.url, &app.http, &app.admin_key, &team, "a").await;
    get(&app.http, &scope, &key, &[]).await;
    assert_eq!(
        reads_of(&app, &key).await.len(),
        3,
        "a new revision is recorded"
    );
    app.service().flush_read_summaries(true).await.unwrap();
    let reads = reads_of(&app, &key).await;
    let mut repeated: Vec<u64> = reads
        .iter()
        .filter_map(|d| d["repeated"].as_u64())
        .collect();
    repeated.sort();
    assert_eq!(repeated, vec![39, 39], "{reads:?}");
    // The log still verifies with the summaries in it.
    assert!(matches!(
        crate::audit::verify(&app, &[]).await,
        tessera::service::audit_log::Verified::Intact { .. }
    ));
}

/// Finding 4: changing `X-Tessera-Agent` on every request keeps the
/// consumers remembered for one key bounded.
async fn changing_instance_ids_keep_one_keys_consumers_bounded(app: TestApp) {
    let team = app.default_team_id().await;
    put(&app.url, &app.http, &app.admin_key, &team, "tok").await;
    let key = reader(&app, &team, None).await;
    let scope = format!("{}/runtime/v1/secrets", app.url);
    let cap = tessera::service::consumers::MAX_CONSUMERS_PER_KEY;
    for round in 0..2 {
        let requests: Vec<_> = (0..cap / 2 + 100)
            .map(|i| {
                let http = app.http.clone();
                let (scope, key) = (scope.clone(), key.clone());
                async move {
                    let instance = format!("r{round}-{i}");
                    get(&http, &scope, &key, &[("X-Tessera-Agent", &instance)])
                        .await
                        .0
                }
            })
            .collect();
        let mut requests = requests.into_iter();
        loop {
            let batch: Vec<_> = requests.by_ref().take(16).collect();
            if batch.is_empty() {
                break;
            }
            for status in futures_util::future::join_all(batch).await {
                assert_eq!(status, StatusCode::OK);
            }
        }
        // Each round's sightings are written apart, as the flusher would.
        app.service().flush_consumers().await.unwrap();
    }
    app.service().flush_consumers().await.unwrap();
    let consumers = app
        .get(&format!("/v1/teams/{team}/secrets/tok/consumers"))
        .await
        .ok();
    let total: u64 = consumers["by_version"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["consumers"].as_u64().unwrap())
        .sum();
    assert!(
        total as usize <= cap,
        "{total} consumers remembered for one key"
    );
    assert!(
        total as usize >= cap / 2,
        "{total}: the recent ones are kept"
    );
}

/// Finding 8: a narrowed key's ETag does not move on a write outside its
/// scope, its long poll is not woken (nor a read recorded) by one, and is
/// woken by a write inside it.
async fn a_narrowed_keys_revision_moves_only_with_its_scope(app: TestApp) {
    let team = app.default_team_id().await;
    put(&app.url, &app.http, &app.admin_key, &team, "inside").await;
    put(&app.url, &app.http, &app.admin_key, &team, "outside").await;
    let key = reader(&app, &team, Some(&["inside"])).await;
    let scope = format!("{}/runtime/v1/secrets", app.url);
    let (_, etag, body) = get(&app.http, &scope, &key, &[]).await;
    let etag = etag.unwrap();
    assert_eq!(etag, format!("\"{}\"", body["revision"]));
    put(&app.url, &app.http, &app.admin_key, &team, "outside").await;
    let (status, again, _) = get(&app.http, &scope, &key, &[("If-None-Match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.as_deref(), Some(etag.as_str()));
    let reads = reads_of(&app, &key).await.len();
    // An out-of-scope write while it waits: it waits on to the end.
    let waiter = spawn_poll(&app, &scope, &key, &etag, 3);
    app.wait_for_waiters(&team, 1).await;
    put(&app.url, &app.http, &app.admin_key, &team, "outside").await;
    let ((status, same, _), took) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(same.as_deref(), Some(etag.as_str()));
    assert!(took >= Duration::from_millis(2900), "woken after {took:?}");
    assert_eq!(reads_of(&app, &key).await.len(), reads, "no read recorded");
    // An in-scope write wakes it at once, with a new ETag.
    let waiter = spawn_poll(&app, &scope, &key, &etag, 30);
    app.wait_for_waiters(&team, 1).await;
    put(&app.url, &app.http, &app.admin_key, &team, "inside").await;
    let ((status, moved, body), took) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_ne!(moved.as_deref(), Some(etag.as_str()));
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(body["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(reads_of(&app, &key).await.len(), reads + 1);
    // A whole-team key still has the team's revision: one per write.
    let whole = reader(&app, &team, None).await;
    let (_, _, body) = get(&app.http, &scope, &whole, &[]).await;
    assert_eq!(body["revision"].as_i64(), Some(5), "{body}");
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    repeated_reads_fold_and_a_new_revision_is_recorded,
    changing_instance_ids_keep_one_keys_consumers_bounded,
    a_narrowed_keys_revision_moves_only_with_its_scope,
);

/// A server on SQLite with `extra` flags; (storage, server, admin key).
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

async fn default_team(http: &reqwest::Client, url: &str, admin: &str) -> String {
    let teams: Value = http
        .get(format!("{url}/v1/teams"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    teams["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["default"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn server_reader(http: &reqwest::Client, url: &str, admin: &str, team: &str) -> String {
    let r: Value = http
        .post(format!("{url}/v1/teams/{team}/api_keys"))
        .bearer_auth(admin)
        .json(&json!({"type": "WORKSPACE_READ_SECRETS", "name": canary("reader")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["api_key"].as_str().unwrap().to_owned()
}

/// Finding 4: read keys are rate limited (here at 3 a minute); over it, a
/// 429 that says why; a long poll that waits spends nothing, one that
/// answers at once spends like a fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_keys_are_rate_limited_and_waiting_long_polls_spend_nothing() {
    let (_s, server, admin) = serve(&["--rate-limit", "WORKSPACE_READ_SECRETS=3/min"]).await;
    let (url, http) = (server.url.clone(), reqwest::Client::new());
    let team = default_team(&http, &url, &admin).await;
    put(&url, &http, &admin, &team, "a").await;
    let key = server_reader(&http, &url, &admin, &team).await;
    let scope = format!("{url}/runtime/v1/secrets");
    let (status, etag, _) = get(&http, &scope, &key, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let etag = etag.unwrap();
    // Five long polls that wait: none spends.
    for _ in 0..5 {
        let (status, ..) = get(
            &http,
            &format!("{scope}?wait=1"),
            &key,
            &[("If-None-Match", &etag)],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
    }
    // A stale ETag answers at once: it spends.
    let (status, ..) = get(
        &http,
        &format!("{scope}?wait=5"),
        &key,
        &[("If-None-Match", "\"999999\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, ..) = get(&http, &scope, &key, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = get(&http, &scope, &key, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "RATE_LIMITED");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("3/min for WORKSPACE_READ_SECRETS keys")
            && message.contains("long polls that wait do not count"),
        "{message}"
    );
    let (status, ..) = get(
        &http,
        &format!("{scope}?wait=5"),
        &key,
        &[("If-None-Match", "\"999999\"")],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Still, a long poll that waits goes through.
    let (status, ..) = get(
        &http,
        &format!("{scope}?wait=1"),
        &key,
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // Management keys are not limited by default.
    for _ in 0..10 {
        let r = http
            .get(format!("{url}/v1/teams"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// Finding 4: below the free-space threshold the server warns in its log
/// and the metrics say how much is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_data_disk_is_warned_of() {
    let (_s, server, _admin) = serve(&["--disk-free-warning", "100%"]).await;
    let http = reqwest::Client::new();
    let deadline = Deadline::new("the disk warning");
    loop {
        let metrics = http
            .get(format!("{}/metrics", server.metrics_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let log = server.log_text();
        if metrics.contains("tessera_data_disk_free_bytes ")
            && metrics.contains("tessera_data_disk_free_ratio ")
            && log.contains("DATA DISK NEARLY FULL")
        {
            break;
        }
        deadline.tick_showing(format!("{log}\n{metrics}")).await;
    }
    // The default (10%) does not warn on a disk with room.
    let (_s, quiet, _admin) = serve(&[]).await;
    // Once the check has run (its gauge is out), it would have warned.
    let deadline = Deadline::new("the disk check");
    while !quiet
        .metrics_text()
        .await
        .contains("tessera_data_disk_free_ratio ")
    {
        deadline.tick().await;
    }
    let (free, total) = tessera::disk_space::free_space(std::path::Path::new("/tmp")).unwrap();
    if free * 10 > total {
        assert!(!quiet.log_text().contains("DATA DISK NEARLY FULL"));
    }
}

/// Finding 14: one key's long polls from one address stop at half the
/// address's connection cap (here 8, so 4); the next is a 429 that says
/// why, while the address's other requests still get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_per_key_and_address_stay_below_the_address_cap() {
    let (_s, server, admin) = serve(&["--max-connections-per-address", "8"]).await;
    let (url, http) = (server.url.clone(), reqwest::Client::new());
    let team = default_team(&http, &url, &admin).await;
    put(&url, &http, &admin, &team, "a").await;
    let key = server_reader(&http, &url, &admin, &team).await;
    let scope = format!("{url}/runtime/v1/secrets");
    let (_, etag, _) = get(&http, &scope, &key, &[]).await;
    let etag = etag.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..4 {
        // A client of its own: a connection of its own.
        let (scope, key, etag) = (scope.clone(), key.clone(), etag.clone());
        waiters.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            get(
                &c,
                &format!("{scope}?wait=20"),
                &key,
                &[("If-None-Match", &etag)],
            )
            .await
            .0
        }));
    }
    server.wait_for_long_polls(4).await;
    let fifth = reqwest::Client::new();
    let (status, _, body) = get(
        &fifth,
        &format!("{scope}?wait=20"),
        &key,
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("long polls from this address"),
        "{body}"
    );
    drop(fifth);
    // The address's other requests still get through.
    for _ in 0..3 {
        let r = reqwest::Client::new()
            .get(format!("{url}/v1/teams"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // A write answers the waiters.
    put(&url, &http, &admin, &team, "a").await;
    for w in waiters {
        assert_eq!(w.await.unwrap(), StatusCode::OK);
    }
}
