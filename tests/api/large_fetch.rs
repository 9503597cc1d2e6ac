//! Finding 3 of issue 24: a fetch of a large scope no longer holds the
//! scope in memory. A quota bounds the bytes of a team's current values;
//! an answer that does not fit in one page is streamed page by page, every
//! page checked against the answer's revision (an answer the team changed
//! under is cut short, never completed with values of two revisions); small
//! requests are answered while large answers are in flight.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tessera::service::{Limits, Quotas};
use tessera::wire::management::{NewApiKeyView, TeamView};

/// A quota of 1,000 bytes of values per team.
const QUOTA: i64 = 1000;

fn limits(value_bytes: i64, page: usize) -> Limits {
    Limits {
        quotas: Quotas {
            value_bytes_per_team: value_bytes,
            ..Quotas::default()
        },
        delivery_page_bytes: page,
        ..Limits::default()
    }
}

fn value(n: usize) -> String {
    "v".repeat(n)
}

async fn put(app: &TestApp, name: &str, bytes: usize) -> crate::common::Resp {
    app.post("/v1/secrets", json!({"name": name, "value": value(bytes)}))
        .await
}

/// Asserts the team has exactly `room` bytes left under the quota: a new
/// value of `room + 1` bytes is refused (with the quota's error), one of
/// `room` is taken; the probe is then deleted again.
async fn assert_room(app: &TestApp, room: i64) {
    let msg = put(app, "probe", room as usize + 1)
        .await
        .err(409, "QUOTA_EXCEEDED");
    assert!(
        msg.contains("bytes of current values per team") && msg.contains("limit 1000"),
        "{msg}"
    );
    put(app, "probe", room as usize).await.ok();
    app.delete("/v1/secrets/probe").await.ok();
}

/// The quota counts the plaintext bytes of current values: creations and
/// updates add, deletions free, an undelete and a restored version count
/// again, destroying an old version changes nothing; a write that keeps or
/// shrinks the total passes even at the quota; reads are always served.
async fn value_bytes_quota_counts_current_values(app: TestApp) {
    let team = app.default_team_id().await;
    put(&app, "a", 400).await.ok();
    put(&app, "b", 300).await.ok();
    assert_room(&app, 300).await;

    // An update counts its new length instead of the old one.
    put(&app, "a", 100).await.ok();
    assert_room(&app, 600).await;
    put(&app, "a", 700).await.ok();
    assert_room(&app, 0).await;
    // At the quota: growing is refused, the same length and shrinking pass.
    put(&app, "b", 301).await.err(409, "QUOTA_EXCEEDED");
    put(&app, "b", 300).await.ok();
    put(&app, "b", 200).await.ok();
    assert_room(&app, 100).await;

    // A deletion frees its bytes; an undelete takes them again.
    app.delete("/v1/secrets/b").await.ok();
    assert_room(&app, 300).await;
    app.post(
        &format!("/v1/teams/{team}/deleted_secrets/b/restore"),
        json!({}),
    )
    .await
    .ok();
    assert_room(&app, 100).await;

    // Restoring an earlier version writes it again: a is 700 bytes
    // (version 3) after 400 (1) and 100 (2).
    let restore = |v: i64| format!("/v1/teams/{team}/secrets/a/versions/{v}/restore");
    app.post(&restore(1), json!({})).await.ok();
    assert_room(&app, 400).await;
    put(&app, "a", 50).await.ok();
    put(&app, "b", 900).await.ok();
    assert_room(&app, 50).await;
    // 950 - 50 + 700 = 1,600 bytes: refused, and nothing changes.
    app.post(&restore(3), json!({}))
        .await
        .err(409, "QUOTA_EXCEEDED");
    assert_room(&app, 50).await;
    put(&app, "b", 200).await.ok();
    app.post(&restore(3), json!({})).await.ok();
    assert_room(&app, 100).await;
    // Destroying an earlier version changes no current value.
    app.delete(&format!("/v1/teams/{team}/secrets/a/versions/2"))
        .await
        .ok();
    assert_room(&app, 100).await;

    // Another team counts its own.
    let other = app
        .post("/v1/teams", json!({"name": "other"}))
        .await
        .json::<TeamView>()
        .id;
    app.post(
        &format!("/v1/teams/{other}/secrets"),
        json!({"name": "x", "value": value(1000)}),
    )
    .await
    .ok();

    // Reads are served whatever the total.
    let key = app.reader_key(&team).await;
    let got = app
        .as_key(&key, Method::GET, "/runtime/v1/secrets", None)
        .await
        .ok();
    assert_eq!(got["secrets"].as_array().unwrap().len(), 2);
}

/// A read key's answer of `team`, streamed or not, as (ETag, body).
async fn fetch(app: &TestApp, key: &str) -> (i64, Value, bool) {
    let r = app
        .http
        .get(format!("{}/runtime/v1/secrets", app.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let streamed = r.headers().get("content-length").is_none();
    let etag: i64 = r.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    let body: Value = r.json().await.unwrap();
    (etag, body, streamed)
}

/// Values of `n` secrets named `s_000`.. with values that say whose they are.
async fn fill(app: &TestApp, n: usize, bytes: usize) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for i in 0..n {
        let name = format!("s_{i:03}");
        let mut v = format!("{name}:");
        v.push_str(&"x".repeat(bytes - v.len()));
        app.post("/v1/secrets", json!({"name": name, "value": v}))
            .await
            .ok();
        all.push((name, v));
    }
    all
}

/// A scope larger than a page is streamed, and arrives whole: every value
/// intact, in name order, at the revision of its ETag; a narrowed key gets
/// only its names. A scope within a page is answered whole as before.
async fn large_scope_is_streamed_intact(app: TestApp) {
    let team = app.default_team_id().await;
    let key = app.reader_key(&team).await;
    let small = fetch(&app, &key).await;
    assert!(!small.2, "an empty scope is answered whole");

    let expected = fill(&app, 40, 1000).await;
    let (etag, body, streamed) = fetch(&app, &key).await;
    assert!(streamed, "40 KB over 4 KB pages is streamed");
    assert_eq!(body["revision"], etag);
    let got: Vec<(String, String)> = body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["version"], 1);
            assert!(s["fingerprint"].as_str().unwrap().len() > 10);
            (
                s["name"].as_str().unwrap().to_owned(),
                s["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // The long poll streams too, and the read is recorded as one.
    let r = app
        .http
        .get(format!("{}/runtime/v1/secrets?wait=1", app.url))
        .bearer_auth(&key)
        .header("if-none-match", format!("\"{}\"", etag - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let polled: Value = r.json().await.unwrap();
    assert_eq!(polled, body);
    let events = app.get("/v1/audit_events?action=secrets.read").await.ok();
    let reads: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("\"secrets\":40")
        })
        .collect();
    // The same content twice: one event (repeats are folded, see
    // read_recording.rs).
    assert_eq!(reads.len(), 1, "a streamed answer is recorded: {events}");

    // A narrowed key: its names only, from the same pages.
    let narrowed = app
        .post(
            &format!("/v1/teams/{team}/api_keys"),
            json!({"type": "WORKSPACE_READ_SECRETS", "name": "narrow",
                   "secret_names": ["s_001", "s_039"]}),
        )
        .await
        .json::<NewApiKeyView>()
        .api_key;
    let (_, body, _) = fetch(&app, &narrowed).await;
    let names: Vec<&str> = body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s_001", "s_039"]);

    // Its revision is its scope's, streamed or not: a write outside the
    // scope neither moves its ETag nor wakes its long poll; one inside does.
    let (scope_etag, body, streamed) = fetch(&app, &narrowed).await;
    assert!(streamed, "the team still spans pages");
    assert_eq!(body["revision"], scope_etag);
    assert_ne!(
        scope_etag, etag,
        "a narrowed key's revision is not the team's"
    );
    put(&app, "s_002", 1000).await.ok();
    assert_eq!(fetch(&app, &narrowed).await.0, scope_etag);
    let poll = |wait: u64| {
        app.http
            .get(format!("{}/runtime/v1/secrets?wait={wait}", app.url))
            .bearer_auth(&narrowed)
            .header("if-none-match", format!("\"{scope_etag}\""))
            .send()
    };
    let waiting = poll(2);
    let outside = async {
        app.wait_for_waiters(&team, 1).await;
        put(&app, "s_003", 1000).await.ok();
    };
    let (r, ()) = tokio::join!(waiting, outside);
    assert_eq!(
        r.unwrap().status(),
        304,
        "an out-of-scope write does not wake it"
    );
    put(&app, "s_039", 1000).await.ok();
    let r = poll(0).await.unwrap();
    assert_eq!(r.status(), 200);
    let moved: Value = r.json().await.unwrap();
    assert_ne!(moved["revision"], scope_etag);
}

/// A write that lands while a large answer is being sent never yields a
/// complete answer mixing two revisions: the answer is cut short (the
/// client sees a broken body), or it completes with the values of its
/// ETag's revision only. The service's cursor refuses the page outright.
async fn interrupted_answer_is_never_complete(app: TestApp) {
    let team = app.default_team_id().await;
    let key = app.reader_key(&team).await;
    let expected = fill(&app, 40, 1000).await;
    let last = expected.last().unwrap().0.clone();

    // Deterministically, below HTTP: the cursor's next page after a write.
    let p = app
        .service()
        .identity()
        .authenticate(Some(&format!("Bearer {key}")))
        .await
        .unwrap();
    let d = app
        .service()
        .deliver(&p, &Default::default())
        .await
        .unwrap();
    let mut cursor = d.stream.as_ref().unwrap().take().unwrap();
    assert!(app
        .service()
        .next_delivery_page(&mut cursor)
        .await
        .unwrap()
        .is_some());
    app.post("/v1/secrets", json!({"name": last, "value": "moved"}))
        .await
        .ok();
    let cut = app.service().next_delivery_page(&mut cursor).await;
    assert!(cut.is_err(), "a page of another revision is refused");

    // Over HTTP: read the head, write, read the rest.
    let mut cuts = 0;
    for round in 0..5 {
        let r = app
            .http
            .get(format!("{}/runtime/v1/secrets", app.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let etag: i64 = r.headers()["etag"]
            .to_str()
            .unwrap()
            .trim_matches('"')
            .parse()
            .unwrap();
        let mut r = r;
        let mut bytes = r.chunk().await.unwrap().unwrap().to_vec();
        let before = format!("before-{round}");
        app.post("/v1/secrets", json!({"name": last, "value": before}))
            .await
            .ok();
        let mut failed = false;
        loop {
            match r.chunk().await {
                Ok(Some(c)) => bytes.extend_from_slice(&c),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            cuts += 1;
            assert!(
                serde_json::from_slice::<Value>(&bytes).is_err(),
                "a cut answer is not valid JSON"
            );
            continue;
        }
        // Complete: then it was all read before the write, at its ETag.
        let whole: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(whole["revision"], etag);
        let last_value = whole["secrets"].as_array().unwrap().last().unwrap()["value"].clone();
        assert_ne!(
            last_value,
            json!(before),
            "a complete answer of revision {etag} holds a later value"
        );
    }
    eprintln!("{cuts} of 5 answers cut short by a concurrent write");
}

/// While large answers are streamed to clients that read slowly (or not
/// at all), small fetches and listings of another team are answered at
/// once: the large ones' pages take one lane, released after rendering.
async fn small_fetches_answered_beside_large_ones(app: TestApp) {
    let team = app.default_team_id().await;
    let big_key = app.reader_key(&team).await;
    fill(&app, 40, 1000).await;
    let other = app
        .post("/v1/teams", json!({"name": "small"}))
        .await
        .json::<TeamView>()
        .id;
    app.post(
        &format!("/v1/teams/{other}/secrets"),
        json!({"name": "tiny", "value": "t"}),
    )
    .await
    .ok();
    let small_key = app.reader_key(&other).await;

    // Eight large answers, read one chunk each and then left unread.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let r = app
            .http
            .get(format!("{}/runtime/v1/secrets", app.url))
            .bearer_auth(&big_key)
            .send()
            .await
            .unwrap();
        let mut r = r;
        r.chunk().await.unwrap().unwrap();
        stalled.push(r);
    }
    // And eight read in full meanwhile.
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, key) = (app.http.clone(), app.url.clone(), big_key.clone());
            tokio::spawn(async move {
                let r = http
                    .get(format!("{url}/runtime/v1/secrets"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                let v: Value = r.json().await.unwrap();
                v["secrets"].as_array().unwrap().len()
            })
        })
        .collect();
    for _ in 0..20 {
        let t = Instant::now();
        let got = app
            .as_key(&small_key, Method::GET, "/runtime/v1/secrets", None)
            .await
            .ok();
        assert_eq!(got["secrets"][0]["value"], "t");
        app.get(&format!("/v1/teams/{other}/secrets")).await.ok();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a small fetch waited {:?}",
            t.elapsed()
        );
    }
    for r in readers {
        assert_eq!(r.await.unwrap(), 40);
    }
    drop(stalled);
}

/// The team's value bytes as the store counts them (SQL, below the store).
async fn counted(app: &TestApp, team: &str) -> i64 {
    match &app.storage.pg {
        Some(pg) => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url())
                .await
                .unwrap();
            sqlx::query_scalar("SELECT value_bytes FROM team_counters WHERE team_id = $1")
                .bind(team)
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
        None => sqlite(app)
            .query_row("SELECT value_bytes FROM teams WHERE id = ?1", [team], |r| {
                r.get(0)
            })
            .unwrap(),
    }
}

fn sqlite(app: &TestApp) -> rusqlite::Connection {
    rusqlite::Connection::open(app.storage.dir.path().join("tessera.db")).unwrap()
}

/// Migration 0010 counts the values of a store that existed before it:
/// undone here (column, triggers, its record), then run again on open.
async fn migration_counts_existing_values(app: TestApp) {
    let team = app.default_team_id().await;
    put(&app, "a", 400).await.ok();
    put(&app, "b", 300).await.ok();
    put(&app, "c", 5).await.ok();
    app.delete("/v1/secrets/c").await.ok();
    put(&app, "a", 450).await.ok();
    assert_eq!(counted(&app, &team).await, 750);
    let undo = match &app.storage.pg {
        Some(_) => {
            "DROP FUNCTION tessera_value_bytes() CASCADE;
                    ALTER TABLE team_counters DROP COLUMN value_bytes;
                    DELETE FROM schema_migrations WHERE version = 10;"
        }
        None => {
            "DROP TRIGGER secrets_value_bytes_insert;
                 DROP TRIGGER secrets_value_bytes_delete;
                 DROP TRIGGER secrets_value_bytes_update;
                 ALTER TABLE teams DROP COLUMN value_bytes;
                 DELETE FROM schema_migrations WHERE version = 10;"
        }
    };
    match &app.storage.pg {
        Some(pg) => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url())
                .await
                .unwrap();
            sqlx::raw_sql(undo).execute(&mut c).await.unwrap();
        }
        None => sqlite(&app).execute_batch(undo).unwrap(),
    }
    let reopened = tessera::store::open(&app.storage.database_url())
        .await
        .unwrap();
    assert_eq!(counted(&app, &team).await, 750);
    drop(reopened);
    // And the triggers are back.
    put(&app, "b", 100).await.ok();
    assert_eq!(counted(&app, &team).await, 550);
}

crate::on_both_engines!(
    migration_counts_existing_values: |b| TestApp::start_with(b, Limits::default()),
    value_bytes_quota_counts_current_values: |b| TestApp::start_with(b, limits(QUOTA, 4096)),
    large_scope_is_streamed_intact: |b| TestApp::start_with(b, limits(64 << 20, 4096)),
    interrupted_answer_is_never_complete: |b| TestApp::start_with(b, limits(64 << 20, 4096)),
    small_fetches_answered_beside_large_ones: |b| TestApp::start_with(b, limits(64 << 20, 4096)),
);

/// The client side: an answer whose body ends early (as a streamed answer
/// cut by a concurrent write does) is a failed round, never applied:
/// `tessera agent --once` fails and writes no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_once_fails_on_a_cut_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let part = r#"{"revision":5,"secrets":[{"name":"a","canonical_name":"a","value":"one","version":1,"updated_at":"2026-01-01T00:00:00Z","fingerprint":"f"}"#;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\netag: \"5\"\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            let chunk = format!("{head}{:x}\r\n{part}\r\n", part.len());
            let _ = conn.write_all(chunk.as_bytes()).await;
            // Cut: no further chunk, no terminating one.
            drop(conn);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let d = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        crate::workload::run_with_stdin(
            &["agent", "--once", "--dir", d.to_str().unwrap()],
            &[
                ("TESSERA_URL", &url),
                (
                    "TESSERA_API_KEY",
                    "abcdefgh.0123456789abcdefghijklmnopqrstuv",
                ),
            ],
            b"",
        )
    })
    .await
    .unwrap();
    server.abort();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a cut answer must fail --once: {stderr}"
    );
    assert!(stderr.contains("cannot fetch the secrets"), "{stderr}");
    assert!(
        !dir.join("a").exists(),
        "nothing of a cut answer is written"
    );
}
