//! The audit log on both engines: each change to a secret and each runtime
//! read is one chained event, written with the change (a failing audit
//! write refuses the change, leaving nothing half-written); an untouched
//! log verifies, and an edited, deleted, swapped or forged event is found
//! and named, through the service and through `tessera audit verify`.

use crate::common::{canary, run_cli, Backend, TestApp};
use reqwest::Method;
use serde_json::json;
use tessera::audit::chain::StoredEvent;
use tessera::service::audit_log::Verified;
use tessera::wire::history::AuditEvents;
use tessera::wire::management::TeamView;

pub(crate) async fn all_events(app: &TestApp) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    for chain in app.store.audit_chains().await.unwrap() {
        out.extend(app.store.audit_events(&chain, 0, 100_000).await.unwrap());
    }
    out.sort_by_key(|e| e.event.time);
    out
}

/// Verifies the log with the store's own public key, against
/// `checkpoints` as the shipped lines (none: the log alone).
pub(crate) async fn verify(
    app: &TestApp,
    checkpoints: &[tessera::audit::checkpoint::Checkpoint],
) -> Verified {
    let service = app.service();
    let shipped = (!checkpoints.is_empty()).then_some(checkpoints);
    service
        .audit_log()
        .verify_audit(service.audit_log().audit_public_key(), shipped)
        .await
        .unwrap()
}

/// Runs SQL on the test's database (to tamper with it, or to make audit
/// writes fail).
pub(crate) async fn sql(app: &TestApp, statement: &str) {
    let url = app.storage.database_url();
    match tessera::store::sqlite_path(&url) {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute_batch(statement).unwrap();
        }
        None => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::raw_sql(statement).execute(&pool).await.unwrap();
        }
    }
}

async fn changes_and_reads_are_chained_events(app: TestApp) {
    let team = app.default_team_id().await;
    let (v1, v2) = (canary("v1"), canary("v2"));
    let secrets = format!("/v1/teams/{team}/secrets");
    app.post(&secrets, json!({"name": "db-url", "value": v1}))
        .await
        .ok();
    app.post(&secrets, json!({"name": "db-url", "value": v2}))
        .await
        .ok();
    app.post(&format!("{secrets}/db-url/versions/1/restore"), json!({}))
        .await
        .ok();
    app.delete(&format!("{secrets}/db-url/versions/2"))
        .await
        .ok();
    let key = app.reader_key(&team).await;
    let r = app
        .as_key(&key, Method::GET, "/runtime/v1/secrets/db-url", None)
        .await
        .ok();
    assert_eq!(r["value"], v1.as_str());
    app.delete(&format!("{secrets}/db-url")).await.ok();
    app.post(
        &format!("/v1/teams/{team}/deleted_secrets/db-url/restore"),
        json!({}),
    )
    .await
    .ok();

    let all = all_events(&app).await;
    let events: Vec<&StoredEvent> = all
        .iter()
        .filter(|e| e.event.action.starts_with("secret"))
        .collect();
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "secret.write",
            "secret.write",
            "secret.version.restore",
            "secret.version.destroy",
            "secrets.read",
            "secret.delete",
            "secret.undelete",
        ]
    );
    let admin_prefix = app.admin_key.split('.').next().unwrap();
    let first = &events[0].event;
    assert_eq!(first.actor_key.as_deref(), Some(admin_prefix));
    assert_eq!(first.actor_type.as_deref(), Some("PERSONAL"));
    assert!(first.actor_user.is_some());
    assert_eq!(first.team_id.as_deref(), Some(team.as_str()));
    assert_eq!(first.target_name.as_deref(), Some("db-url"));
    assert!(first.target_id.is_some());
    assert_eq!(first.result, "ok");
    assert!(first.request_id.as_deref().is_some_and(|id| !id.is_empty()));
    assert!(first
        .client
        .as_deref()
        .is_some_and(|c| c.starts_with("127.0.0.1")));
    let read = &events[4].event;
    assert_eq!(
        read.actor_key.as_deref(),
        Some(key.split('.').next().unwrap())
    );
    assert_eq!(read.actor_type.as_deref(), Some("WORKSPACE_READ_SECRETS"));
    assert_eq!(read.detail.as_deref(), Some(r#"{"version":3}"#));
    // The delete names the secret's id, learnt by the store.
    assert_eq!(events[5].event.target_id, first.target_id);
    // Never a value, never a key secret.
    let text = format!("{events:?}");
    for never in [
        v1.as_str(),
        v2.as_str(),
        key.as_str(),
        app.admin_key.as_str(),
    ] {
        assert!(
            !text.contains(never),
            "a value or key leaked into the audit log"
        );
    }
    match verify(&app, &[]).await {
        Verified::Intact { events, .. } => assert_eq!(events as usize, all.len()),
        Verified::Broken(b) => panic!("an untouched log is broken: {b}"),
    }
}

/// Teams, users, memberships and API keys: one event per change, with who
/// did it and to what.
async fn identity_and_key_changes_are_events(app: TestApp) {
    let before = all_events(&app).await.len();
    let team = app
        .post("/v1/teams", json!({"name": "ml"}))
        .await
        .json::<TeamView>()
        .id;
    app.request(
        Method::PATCH,
        &format!("/v1/teams/{team}"),
        Some(&app.admin_key),
        Some(json!({"name": "ml-prod"})),
    )
    .await
    .ok();
    let user = app.new_user(json!({"email": "ana@example.com"})).await;
    app.request(
        Method::PUT,
        &format!("/v1/teams/{team}/members/{user}"),
        Some(&app.admin_key),
        Some(json!({"role": "ADMIN"})),
    )
    .await
    .ok();
    app.delete(&format!("/v1/teams/{team}/members/{user}"))
        .await
        .ok();
    let key = app
        .post(
            &format!("/v1/teams/{team}/api_keys"),
            json!({"type": "WORKSPACE_INVOKE", "name": "ci"}),
        )
        .await
        .json::<tessera::wire::management::NewApiKeyView>()
        .api_key;
    let prefix = key.split('.').next().unwrap().to_owned();
    app.delete(&format!("/v1/api_keys/{prefix}")).await.ok();
    app.delete(&format!("/v1/users/{user}")).await.ok();
    app.delete(&format!("/v1/teams/{team}")).await.ok();

    let events = all_events(&app).await;
    let mine: Vec<(&str, Option<&str>)> = events[before..]
        .iter()
        .map(|e| (e.event.action.as_str(), e.event.target_id.as_deref()))
        .collect();
    assert_eq!(
        mine,
        vec![
            ("team.create", Some(team.as_str())),
            ("team.rename", Some(team.as_str())),
            ("user.create", Some(user.as_str())),
            ("member.set", Some(user.as_str())),
            ("member.remove", Some(user.as_str())),
            ("api_key.create", Some(prefix.as_str())),
            ("api_key.revoke", Some(prefix.as_str())),
            ("user.delete", Some(user.as_str())),
            ("team.delete", Some(team.as_str())),
        ]
    );
    assert_eq!(
        events[before + 1].event.target_name.as_deref(),
        Some("ml-prod")
    );
    assert!(!format!("{events:?}").contains(&key), "a key secret leaked");
    // The organization itself, created by the operator's bootstrap.
    assert_eq!(events[0].event.action, "organization.create");
    assert_eq!(events[0].event.actor_type.as_deref(), Some("SYSTEM"));
    assert!(matches!(verify(&app, &[]).await, Verified::Intact { .. }));
}

/// 100,000 requests with bad keys leave a bounded number of events
/// (one per address and minute, as the log lines), and a good key still
/// works.
async fn bad_keys_leave_a_bounded_number_of_events(app: TestApp) {
    const REQUESTS: usize = 100_000;
    let started = std::time::Instant::now();
    let url = format!("{}/v1/secrets", app.url);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let (http, url) = (app.http.clone(), url.clone());
        tasks.spawn(async move {
            for i in (t..REQUESTS).step_by(16) {
                let bad = format!("Bearer nokey{i:05}.{}", "x".repeat(43));
                let r = http
                    .get(&url)
                    .header("Authorization", bad)
                    .send()
                    .await
                    .unwrap();
                assert!(matches!(r.status().as_u16(), 401 | 429), "{}", r.status());
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    tessera::app::record_auth_failures(&app.state)
        .await
        .unwrap();
    let failed: Vec<StoredEvent> = all_events(&app)
        .await
        .into_iter()
        .filter(|e| e.event.action == "auth.failed")
        .collect();
    // One per address and minute: as many minutes as the run touched
    // (a slow machine spans more of them), never one per failure.
    let minutes = started.elapsed().as_secs() as usize / 60 + 2;
    assert!(
        (1..=minutes).contains(&failed.len()),
        "{REQUESTS} failures in {:?} left {} events",
        started.elapsed(),
        failed.len()
    );
    let e = &failed[0].event;
    assert_eq!(e.result, "denied");
    assert_eq!(e.client.as_deref(), Some("127.0.0.1"));
    assert!(e.detail.as_deref().is_some_and(|d| d.contains("failures")));
    assert!(!format!("{failed:?}").contains("nokey"), "a key leaked");
    app.get("/v1/secrets").await.ok();
}

/// When the audit log cannot be written, the change is refused and nothing
/// of it is written.
async fn a_change_that_cannot_be_recorded_is_refused(app: TestApp) {
    let team = app.default_team_id().await;
    let secrets = format!("/v1/teams/{team}/secrets");
    app.post(&secrets, json!({"name": "kept", "value": "before"}))
        .await
        .ok();
    let block = if app.storage.pg.is_some() {
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'audit blocked'; END $$;
         CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events
             FOR EACH ROW EXECUTE FUNCTION refuse_audit();"
    } else {
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events
         BEGIN SELECT RAISE(ABORT, 'audit blocked'); END;"
    };
    let key = app.reader_key(&team).await;
    sql(&app, block).await;
    let before = all_events(&app).await.len();
    let update = app
        .post(&secrets, json!({"name": "kept", "value": "after"}))
        .await;
    update.err(503, "UNAVAILABLE");
    let create = app
        .post(&secrets, json!({"name": "new-one", "value": "x"}))
        .await;
    create.err(503, "UNAVAILABLE");
    let delete = app.delete(&format!("{secrets}/kept")).await;
    delete.err(503, "UNAVAILABLE");
    let read = app
        .as_key(&key, Method::GET, "/runtime/v1/secrets/kept", None)
        .await;
    assert_eq!(read.status, 503, "a value left unrecorded: {}", read.text);
    assert!(!read.text.contains("before"));
    let unblock = if app.storage.pg.is_some() {
        "DROP TRIGGER refuse_audit ON audit_events"
    } else {
        "DROP TRIGGER refuse_audit"
    };
    sql(&app, unblock).await;
    // Nothing of the refused changes was written.
    assert_eq!(app.reveal(&app.admin_key, &team, "kept").await, "before");
    let listed = app.get(&secrets).await.ok();
    assert!(!listed.to_string().contains("new-one"));
    assert_eq!(all_events(&app).await.len(), before);
    // And writes resume, on a chain that still verifies.
    app.post(&secrets, json!({"name": "kept", "value": "after"}))
        .await
        .ok();
    assert!(matches!(verify(&app, &[]).await, Verified::Intact { .. }));
}

/// Where verification finds the log broken (seq 0: intact), and why.
async fn broken_at(app: &TestApp) -> (u64, String) {
    match verify(app, &[]).await {
        Verified::Broken(b) => (b.seq, b.to_string()),
        Verified::Intact { .. } => (0, "intact".to_owned()),
    }
}

/// Editing, deleting, swapping or forging an event is found, and the
/// first broken link is named.
async fn tampering_is_found_and_named(app: TestApp) {
    let team = app.default_team_id().await;
    for i in 0..6 {
        app.post(
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": format!("s{i}"), "value": "v"}),
        )
        .await
        .ok();
    }
    let events = all_events(&app).await;
    // The organization's creation, then the six writes.
    assert_eq!(events.len(), 7);
    let chain = events[0].event.chain.clone();
    assert!(events.iter().all(|e| e.event.chain == chain));
    let copy = "CREATE TABLE audit_backup AS SELECT * FROM audit_events";
    let restore = "DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM audit_backup";
    sql(&app, copy).await;
    let cases = [
        // One byte of one field.
        (
            format!(
                "UPDATE audit_events SET target_name = 's9' WHERE chain = '{chain}' AND seq = 3"
            ),
            3,
        ),
        // A deleted event.
        (
            format!("DELETE FROM audit_events WHERE chain = '{chain}' AND seq = 2"),
            2,
        ),
        // Two events swapped (each one's content and MAC under the other's seq).
        (
            format!(
                "UPDATE audit_events SET (time, actor_key, actor_type, actor_user, org_id, team_id,
                     action, target_id, target_name, result, request_id, client, detail, mac) =
                     (SELECT time, actor_key, actor_type, actor_user, org_id, team_id, action,
                             target_id, target_name, result, request_id, client, detail, mac
                      FROM audit_backup b
                      WHERE b.chain = audit_events.chain AND b.seq = 9 - audit_events.seq)
                 WHERE chain = '{chain}' AND seq IN (4, 5)"
            ),
            4,
        ),
        // A forged event appended with a made-up MAC.
        (
            format!(
                "INSERT INTO audit_events (chain, seq, time, action, result, mac)
                 SELECT chain, 8, time, 'secret.delete', 'ok', mac FROM audit_events
                 WHERE chain = '{chain}' AND seq = 7"
            ),
            8,
        ),
    ];
    for (tamper, seq) in cases {
        sql(&app, &tamper).await;
        let (at, message) = broken_at(&app).await;
        assert_eq!(at, seq, "{tamper}: {message}");
        assert!(message.contains(&chain), "{message}");
        sql(&app, restore).await;
        assert_eq!(broken_at(&app).await.1, "intact");
    }
}

/// Org admins page through their organization's events, newest first,
/// with filters; another organization's events never show; bad parameters
/// are 400s that say what was wrong.
async fn org_admins_page_through_their_events(app: TestApp) {
    let team = app.default_team_id().await;
    let value = canary("paged");
    for i in 0..5 {
        app.post(
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": format!("s{i}"), "value": value}),
        )
        .await
        .ok();
    }
    let other = app.new_org("globex").await;
    app.as_key(
        &other,
        Method::POST,
        "/v1/secrets",
        Some(json!({"name": "theirs", "value": "x"})),
    )
    .await
    .ok();
    let prefix = app.admin_key.split('.').next().unwrap();
    let all = all_events(&app).await;
    let org = all
        .iter()
        .find(|e| e.event.actor_key.as_deref() == Some(prefix))
        .and_then(|e| e.event.org_id.clone());
    let ours: Vec<&StoredEvent> = all.iter().filter(|e| e.event.org_id == org).collect();

    // Every page of two, following the cursors.
    let mut seen = Vec::new();
    let mut path = "/v1/audit_events?limit=2".to_owned();
    loop {
        let page = app.get(&path).await.ok();
        let events = page["events"].as_array().unwrap().clone();
        assert!(events.len() <= 2);
        seen.extend(events);
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/audit_events?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), ours.len(), "{seen:?}");
    let times: Vec<&str> = seen.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {times:?}"
    );
    let text = serde_json::to_string(&seen).unwrap();
    assert!(
        !text.contains("theirs"),
        "another organization's event showed"
    );
    assert!(!text.contains(&value), "a value leaked");
    assert_eq!(seen.last().unwrap()["action"], "organization.create");

    // Filters.
    let app = &app;
    let listed = |q: &str| {
        let path = format!("/v1/audit_events?{q}");
        async move { app.get(&path).await.json::<AuditEvents>().events }
    };
    assert_eq!(listed("action=secret.write").await.len(), 5);
    let one = listed("target=s3").await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].target_name.as_deref(), Some("s3"));
    let by_admin = listed(&format!("actor={prefix}")).await;
    assert_eq!(by_admin.len(), 5);
    assert!(by_admin
        .iter()
        .all(|e| e.actor_key_prefix.as_deref() == Some(prefix)));
    assert!(listed("since=2999-01-01T00:00:00Z").await.is_empty());
    assert!(listed("until=2000-01-01T00:00:00Z").await.is_empty());
    assert_eq!(
        listed("since=2000-01-01T00:00:00Z&action=secret.write&limit=1")
            .await
            .len(),
        1
    );

    for (q, says) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("cursor=%21%21", "cursor"),
        ("cursor=OTk6OTk5OTk5OTk5OTk5OTk5OTk5OTk6Yw", "cursor"),
    ] {
        let message = app
            .get(&format!("/v1/audit_events?{q}"))
            .await
            .err(400, "INVALID_REQUEST");
        assert!(message.contains(says), "{q}: {message}");
    }
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    org_admins_page_through_their_events,
    changes_and_reads_are_chained_events,
    identity_and_key_changes_are_events,
    bad_keys_leave_a_bounded_number_of_events,
    a_change_that_cannot_be_recorded_is_refused,
    tampering_is_found_and_named,
);

/// `tessera audit verify` against a server's data directory: exit 0 on an
/// untouched log, 1 naming the first broken link after an edit; the
/// server's exported checkpoints, checked with the public key alone, prove
/// the log was not cut short since (which verifies on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_command_names_the_broken_link() {
    let storage = crate::common::Storage::new(Backend::Sqlite).await.unwrap();
    let data = storage.dir.path().join("data");
    let exported = storage.dir.path().join("checkpoints.jsonl");
    let exported = exported.to_str().unwrap();
    let (mut serve, log) = crate::common::ServerProcess::command(
        &data,
        &[
            "--audit-checkpoint-file",
            exported,
            "--audit-checkpoint-stdout",
            "--audit-checkpoint-interval",
            "1",
        ],
        &[],
    );
    let shipped = storage.dir.path().join("stdout");
    serve.stdout(std::fs::File::create(&shipped).unwrap());
    let server = crate::common::ServerProcess::launch(serve, log).unwrap();
    server.wait_ready().unwrap();
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let http = reqwest::Client::new();
    for i in 0..3 {
        let r = http
            .post(format!("{}/v1/secrets", server.url))
            .bearer_auth(&key)
            .json(&json!({"name": format!("s{i}"), "value": "v"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Stopping exports the last heads.
    assert_eq!(server.terminate(), Some(0));
    let dir = data.to_str().unwrap();
    let ok = |out: &std::process::Output| {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let failed = |out: &std::process::Output| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
    };
    let stdout = ok(&run_cli(&["audit", "verify", "--data-dir", dir], &[]));
    // The organization's creation at first start, then the three writes.
    assert!(stdout.contains("intact: 4 events in 1 chains"), "{stdout}");

    let lines = std::fs::read_to_string(exported).unwrap();
    let n = lines.lines().count();
    assert!(
        n >= 1 && lines.lines().last().unwrap().contains("\"seq\":4"),
        "{lines}"
    );
    // The same lines on standard output, for a log shipper.
    assert_eq!(std::fs::read_to_string(&shipped).unwrap(), lines);
    // And on demand, beside the store: the head now is the last one exported.
    let now = ok(&run_cli(&["audit", "checkpoint", "--data-dir", dir], &[]));
    let signed = tessera::audit::checkpoint::SignedCheckpoint::from_json_line(now.trim()).unwrap();
    let last = lines.lines().last().unwrap();
    let last_exported = tessera::audit::checkpoint::SignedCheckpoint::from_json_line(last).unwrap();
    assert_eq!(signed.checkpoint.head(), last_exported.checkpoint.head());
    let public_key = ok(&run_cli(&["audit", "public-key", "--data-dir", dir], &[]));
    let public_key = public_key.trim();
    assert!(public_key.starts_with("ed25519:"), "{public_key}");
    let with_checkpoints = [
        "audit",
        "verify",
        "--data-dir",
        dir,
        "--checkpoint",
        exported,
        "--public-key",
        public_key,
    ];
    let stdout = ok(&run_cli(&with_checkpoints, &[]));
    assert!(
        stdout.contains(&format!("extends {n} signed checkpoints")),
        "{stdout}"
    );
    // Checkpoints another key signed prove nothing.
    let stranger = tessera::audit::checkpoint::CheckpointSigner::generate();
    let stranger = stranger.public_key().to_text();
    let mut other_key = with_checkpoints;
    other_key[7] = &stranger;
    let stderr = failed(&run_cli(&other_key, &[]));
    assert!(
        stderr.contains("line 1") && stderr.contains("signer"),
        "{stderr}"
    );

    let db = || rusqlite::Connection::open(data.join("tessera.db")).unwrap();
    db().execute("UPDATE audit_events SET time = time + 1 WHERE seq = 2", [])
        .unwrap();
    let stderr = failed(&run_cli(&["audit", "verify", "--data-dir", dir], &[]));
    assert!(stderr.contains("seq 2"), "{stderr}");
    db().execute("UPDATE audit_events SET time = time - 1 WHERE seq = 2", [])
        .unwrap();

    let out = run_cli(&["audit", "export", "--data-dir", dir], &[]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["event"]["action"], "organization.create");
    assert_eq!(lines[1]["event"]["action"], "secret.write");
    assert_eq!(lines[1]["mac"].as_str().unwrap().len(), 64);

    // The last event cut off: the rest verifies, the checkpoint does not.
    db().execute("DELETE FROM audit_events WHERE seq = 4", [])
        .unwrap();
    ok(&run_cli(&["audit", "verify", "--data-dir", dir], &[]));
    let stderr = failed(&run_cli(&with_checkpoints, &[]));
    assert!(
        stderr.contains("seq 4") && stderr.contains("truncated"),
        "{stderr}"
    );
}

/// Through the binary: a restart ships no line for a chain that did not
/// move; retention without a checkpoint file is refused at start; `verify`
/// takes several `--checkpoint` files; and issue 24's attack (the signing
/// seed unwrapped with the master key, an anchor forged past the last
/// shipped checkpoint or for a prefix, the events deleted, one chained to
/// it) passes a plain `verify` but fails against the shipped file, naming
/// the chain and seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_is_proved_by_the_shipped_files_through_the_binary() {
    let storage = crate::common::Storage::new(Backend::Sqlite).await.unwrap();
    let data = storage.dir.path().join("data");
    let exported = storage.dir.path().join("checkpoints.jsonl");
    let exported = exported.to_str().unwrap();
    let args = [
        "--audit-checkpoint-file",
        exported,
        "--audit-checkpoint-interval",
        "1",
    ];
    let server = crate::common::ServerProcess::start(&data, &args, &[]).unwrap();
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let http = reqwest::Client::new();
    for i in 0..3 {
        let r = http
            .post(format!("{}/v1/secrets", server.url))
            .bearer_auth(&key)
            .json(&json!({"name": format!("s{i}"), "value": "v"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(server.terminate(), Some(0));
    let lines = || std::fs::read_to_string(exported).unwrap();
    let shipped = lines();
    assert!(
        shipped.lines().last().unwrap().contains("\"seq\":4"),
        "{shipped}"
    );
    // Started and stopped again without a change: no new line.
    let server = crate::common::ServerProcess::start(&data, &args, &[]).unwrap();
    assert_eq!(server.terminate(), Some(0));
    assert_eq!(
        lines(),
        shipped,
        "a restart shipped lines for chains that did not move"
    );

    // Pruning needs a checkpoint file (standard output alone will not do).
    for only in [&[][..], &["--audit-checkpoint-stdout"][..]] {
        let mut refused = vec!["--audit-retention-days", "1"];
        refused.extend_from_slice(only);
        let fresh = storage.dir.path().join(format!("refused{}", only.len()));
        let err = crate::common::ServerProcess::start(&fresh, &refused, &[])
            .err()
            .expect("retention without a checkpoint file must be refused");
        assert!(err.contains("--audit-checkpoint-file"), "{err}");
        assert!(!fresh.exists(), "a refused start left {}", fresh.display());
    }

    let dir = data.to_str().unwrap();
    let public_key =
        String::from_utf8(run_cli(&["audit", "public-key", "--data-dir", dir], &[]).stdout)
            .unwrap();
    let public_key = public_key.trim();
    let second = storage.dir.path().join("node-b.jsonl");
    std::fs::write(&second, shipped.lines().next().unwrap().to_owned() + "\n").unwrap();
    let second = second.to_str().unwrap();
    let verify_shipped = |files: &[&str]| {
        let mut a = vec![
            "audit",
            "verify",
            "--data-dir",
            dir,
            "--public-key",
            public_key,
        ];
        for f in files {
            a.extend(["--checkpoint", f]);
        }
        run_cli(&a, &[])
    };
    let out = verify_shipped(&[exported, second]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = shipped.lines().count() + 1;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("extends {n} signed checkpoints")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The attacker's part: the master key unwraps the signing seed and
    // the chain key.
    let master =
        tessera::crypto::master_key::load(&tessera::crypto::master_key::MasterKeySource::File {
            path: data.join("master.key"),
            create: false,
        })
        .unwrap();
    let keyring = tessera::crypto::keyring::Keyring::new(&master);
    let db_path = data.join("tessera.db");
    let store = tessera::store::open(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    let signer = tessera::service::bootstrap::load_checkpoint_signer(store.as_ref(), &keyring)
        .await
        .unwrap();
    let chain_key = tessera::service::bootstrap::load_audit_key(store.as_ref(), &keyring)
        .await
        .unwrap();
    let events = all_events_of(store.as_ref()).await;
    drop(store);
    let chain = events[0].event.chain.clone();
    let db = rusqlite::Connection::open(&db_path).unwrap();
    db.execute_batch("CREATE TABLE events_backup AS SELECT * FROM audit_events")
        .unwrap();
    let restore = "DELETE FROM audit_anchors; DELETE FROM audit_events;
                   INSERT INTO audit_events SELECT * FROM events_backup";
    let now = tessera::domain::time::now_micros();

    // Past the last shipped checkpoint (seq 4): an anchor at 9, every event
    // deleted, one forged event chained to it. Then a prefix: the anchor
    // at seq 2 with its true MAC, the events up to it deleted.
    let forged = tessera::audit::chain::ChainHead {
        chain: chain.clone(),
        seq: 9,
        mac: [9; 32],
    };
    let prefix = tessera::audit::chain::ChainHead {
        chain: chain.clone(),
        seq: 2,
        mac: events[1].mac,
    };
    for (anchor, forge_event) in [(&forged, true), (&prefix, false)] {
        let line = signer.sign(anchor, now).to_json_line().unwrap();
        db.execute(
            "INSERT INTO audit_anchors (chain, seq, checkpoint) VALUES (?1, ?2, ?3)",
            rusqlite::params![chain, anchor.seq as i64, line],
        )
        .unwrap();
        if forge_event {
            db.execute("DELETE FROM audit_events", []).unwrap();
            let mut event = events[0].event.clone();
            event.seq = 10;
            let mac = tessera::audit::chain::link(&chain_key, &anchor.mac, &event);
            db.execute(
                "INSERT INTO audit_events SELECT chain, 10, time, actor_key, actor_type,
                 actor_user, org_id, team_id, action, target_id, target_name, result,
                 request_id, client, detail, ?1 FROM events_backup WHERE seq = 1",
                [mac.to_vec()],
            )
            .unwrap();
        } else {
            db.execute("DELETE FROM audit_events WHERE seq <= 2", [])
                .unwrap();
        }
        let plain = run_cli(&["audit", "verify", "--data-dir", dir], &[]);
        assert!(
            plain.status.success(),
            "the chain alone cannot tell: {}",
            String::from_utf8_lossy(&plain.stderr)
        );
        let out = verify_shipped(&[exported, second]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "audit chain {chain} is broken at seq {}",
                anchor.seq
            )) && stderr.contains("pruned"),
            "{stderr}"
        );
        db.execute_batch(restore).unwrap();
    }
    assert!(verify_shipped(&[exported]).status.success());
}

async fn all_events_of(store: &dyn tessera::store::Store) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    for chain in store.audit_chains().await.unwrap() {
        out.extend(store.audit_events(&chain, 0, 100_000).await.unwrap());
    }
    out
}
