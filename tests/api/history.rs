//! History over HTTP, on both engines: a secret's versions (listed as
//! metadata, restored, destroyed, kept up to the retention count),
//! `destroy_previous`, soft delete with undelete and the purge job, and who
//! holds which version. Values never appear in any of these answers.

use crate::common::{canary, Backend, Resp, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tessera::service::Limits;
use tessera::wire::history::DeletedSecrets;
use tessera::wire::runtime::OneSecret;

async fn put(app: &TestApp, team: &str, name: &str, value: &str) -> Value {
    app.post(
        &format!("/v1/teams/{team}/secrets"),
        json!({"name": name, "value": value}),
    )
    .await
    .ok()
}

async fn versions(app: &TestApp, team: &str, name: &str) -> Value {
    app.get(&format!("/v1/teams/{team}/secrets/{name}/versions"))
        .await
        .ok()
}

fn numbers(v: &Value) -> Vec<i64> {
    v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect()
}

/// One runtime read of `name` as agent instance `instance`.
async fn fetch_as(app: &TestApp, key: &str, instance: &str, name: &str) -> Resp {
    fetch_kind(app, key, instance, None, name).await
}

/// One runtime read of `name` as `instance`, declaring `kind` if given.
async fn fetch_kind(
    app: &TestApp,
    key: &str,
    instance: &str,
    kind: Option<&str>,
    name: &str,
) -> Resp {
    let mut req = app
        .http
        .get(format!("{}/runtime/v1/secrets/{name}", app.url))
        .header("Authorization", format!("Bearer {key}"))
        .header("X-Tessera-Agent", instance);
    if let Some(k) = kind {
        req = req.header("X-Tessera-Consumer-Kind", k);
    }
    crate::common::to_resp(req.send().await.unwrap()).await
}

fn prefix(key: &str) -> &str {
    key.split('.').next().unwrap()
}

async fn versions_are_listed_newest_first_with_their_writers(app: TestApp) {
    let team = app.default_team_id().await;
    let values: Vec<String> = (0..3).map(|i| canary(&format!("v{i}"))).collect();
    for v in &values {
        put(&app, &team, "db-url", v).await;
    }
    let listed = versions(&app, &team, "db.url").await;
    assert_eq!(numbers(&listed), vec![3, 2, 1]);
    assert_eq!(listed["current_version"], 3);
    assert_eq!(listed["name"], "db-url");
    let first = &listed["versions"][0];
    assert_eq!(first["current"], true);
    assert_eq!(first["destroyed"], false);
    assert_eq!(first["created_by"]["key_prefix"], prefix(&app.admin_key));
    assert!(first["created_by"]["user_id"].is_string());
    assert_eq!(listed["versions"][2]["current"], false);
    crate::common::assert_utc_z(&listed["versions"][1]["created_at"]);
    let text = listed.to_string();
    for v in &values {
        assert!(
            !text.contains(v.as_str()),
            "a value leaked into the listing"
        );
    }
    assert!(!text.contains("fingerprint"));
    let missing = app
        .get(&format!("/v1/teams/{team}/secrets/nope/versions"))
        .await;
    missing.err(404, "NOT_FOUND");
}

async fn restoring_makes_an_earlier_value_current_again(app: TestApp) {
    let team = app.default_team_id().await;
    let (old, new) = (canary("old"), canary("new"));
    put(&app, &team, "token", &old).await;
    put(&app, &team, "token", &new).await;
    let key = app.reader_key(&team).await;
    assert_eq!(
        fetch_as(&app, &key, "a1", "token")
            .await
            .json::<OneSecret<String>>()
            .value,
        new
    );
    let restored = app
        .post(
            &format!("/v1/teams/{team}/secrets/token/versions/1/restore"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(restored["version"], 3);
    assert!(!restored.to_string().contains(old.as_str()));
    // Workloads receive it like any other change.
    let got = fetch_as(&app, &key, "a1", "token").await.ok();
    assert_eq!(got["value"], old.as_str());
    assert_eq!(got["version"], 3);
    assert_eq!(
        numbers(&versions(&app, &team, "token").await),
        vec![3, 2, 1]
    );
    let current = app
        .post(
            &format!("/v1/teams/{team}/secrets/token/versions/3/restore"),
            json!({}),
        )
        .await;
    current.err(409, "CONFLICT");
    let missing = app
        .post(
            &format!("/v1/teams/{team}/secrets/token/versions/9/restore"),
            json!({}),
        )
        .await;
    missing.err(404, "NOT_FOUND");
    let bad = app
        .post(
            &format!("/v1/teams/{team}/secrets/token/versions/one/restore"),
            json!({}),
        )
        .await;
    bad.err(400, "INVALID_REQUEST");
}

async fn retention_keeps_the_configured_number_of_versions(app: TestApp) {
    let team = app.default_team_id().await;
    for i in 0..6 {
        put(&app, &team, "rotating", &format!("value {i}")).await;
    }
    // The app keeps 2 previous versions (see the test's limits).
    assert_eq!(
        numbers(&versions(&app, &team, "rotating").await),
        vec![6, 5, 4]
    );
    let pruned = app
        .post(
            &format!("/v1/teams/{team}/secrets/rotating/versions/3/restore"),
            json!({}),
        )
        .await;
    pruned.err(404, "NOT_FOUND");
    app.post(
        &format!("/v1/teams/{team}/secrets/rotating/versions/4/restore"),
        json!({}),
    )
    .await
    .ok();
    assert_eq!(
        app.reveal(&app.admin_key, &team, "rotating").await,
        "value 3"
    );
}

async fn destroy_previous_destroys_every_earlier_value(app: TestApp) {
    let team = app.default_team_id().await;
    for v in ["leaked 1", "leaked 2", "leaked 3"] {
        put(&app, &team, "aws-key", v).await;
    }
    let r = app
        .post(
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": "aws-key", "value": "fresh", "destroy_previous": true}),
        )
        .await
        .ok();
    // The Baseten shape, unchanged.
    assert_eq!(r["name"], "aws-key");
    let listed = versions(&app, &team, "aws-key").await;
    assert_eq!(numbers(&listed), vec![4, 3, 2, 1]);
    let destroyed: Vec<bool> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["destroyed"].as_bool().unwrap())
        .collect();
    assert_eq!(destroyed, vec![false, true, true, true]);
    assert!(listed["versions"][1]["destroyed_at"].is_string());
    for v in 1..=3 {
        let r = app
            .post(
                &format!("/v1/teams/{team}/secrets/aws-key/versions/{v}/restore"),
                json!({}),
            )
            .await;
        assert!(r.err(409, "CONFLICT").contains("destroyed"));
    }
    // No ciphertext is left for them in the store.
    let p = app
        .service()
        .identity()
        .authenticate(Some(&format!("Bearer {}", app.admin_key)))
        .await
        .unwrap();
    let id = listed["id"].as_str().unwrap();
    let team_record = app.store.find_team(&team).await.unwrap().unwrap();
    let access = tessera::domain::access::authorize_team::<tessera::domain::access::ReadSecrets>(
        &p,
        &team_record,
    )
    .unwrap();
    for v in 1..=3 {
        assert_eq!(
            app.store.stored_version(&access, id, v).await.unwrap(),
            Some(tessera::store::StoredVersion::Destroyed)
        );
    }
    let bad = app
        .post(
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": "aws-key", "value": "x", "destroy_previous": "yes"}),
        )
        .await;
    assert!(bad.err(400, "INVALID_REQUEST").contains("destroy_previous"));
}

async fn destroying_one_version_keeps_its_metadata(app: TestApp) {
    let team = app.default_team_id().await;
    for v in ["a", "b", "c"] {
        put(&app, &team, "cert", v).await;
    }
    let path = |v: i64| format!("/v1/teams/{team}/secrets/cert/versions/{v}");
    let r = app.delete(&path(2)).await.ok();
    assert_eq!(r, json!({"name": "cert", "version": 2, "destroyed": true}));
    // Again: nothing left to destroy, same answer.
    app.delete(&path(2)).await.ok();
    app.delete(&path(3)).await.err(409, "CONFLICT");
    app.delete(&path(7)).await.err(404, "NOT_FOUND");
    let listed = versions(&app, &team, "cert").await;
    assert_eq!(numbers(&listed), vec![3, 2, 1]);
    assert_eq!(listed["versions"][1]["destroyed"], true);
    assert_eq!(listed["versions"][2]["destroyed"], false);
    app.post(&format!("{}/restore", path(1)), json!({}))
        .await
        .ok();
    assert_eq!(app.reveal(&app.admin_key, &team, "cert").await, "a");
}

async fn consumers_show_who_holds_which_version(app: TestApp) {
    let team = app.default_team_id().await;
    let key = app.reader_key(&team).await;
    put(&app, &team, "api-token", "first").await;
    assert_eq!(
        fetch_as(&app, &key, "host-a", "api-token")
            .await
            .json::<OneSecret<String>>()
            .version,
        1
    );
    put(&app, &team, "api-token", "second").await;
    fetch_as(&app, &key, "host-b", "api-token").await.ok();
    // A second read by the same instance is still one consumer.
    fetch_as(&app, &key, "host-b", "api-token").await.ok();
    let bad = fetch_as(&app, &key, "two words", "api-token").await;
    assert_eq!(bad.status, 400);
    app.service().flush_consumers().await.unwrap();

    let c = app
        .get(&format!("/v1/teams/{team}/secrets/api-token/consumers"))
        .await
        .ok();
    assert_eq!(c["current_version"], 2);
    assert_eq!(
        c["by_version"],
        json!([{"version": 2, "consumers": 1}, {"version": 1, "consumers": 1}])
    );
    let summary = c["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("2 consumers: 1 on version 2, 1 on version 1, last seen "),
        "{summary}"
    );
    let instances: Vec<(&str, i64)> = c["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["instance"].as_str().unwrap(),
                c["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(instances, vec![("host-b", 2), ("host-a", 1)]);
    assert_eq!(c["consumers"][0]["key_prefix"], prefix(&key));

    let listed = versions(&app, &team, "api-token").await;
    assert_eq!(listed["versions"][1]["consumers"][0]["instance"], "host-a");

    // host-a still holds version 1, seen just now: destroying it needs force.
    let path = format!("/v1/teams/{team}/secrets/api-token/versions/1");
    let refused = app.delete(&path).await.err(409, "CONFLICT");
    assert!(refused.contains("force"), "{refused}");
    app.delete(&format!("{path}?force=true")).await.ok();
}

/// Issue 25, stumble 3: one-shot runs (a plain `tessera run`, which execs
/// and never reports again) are their own kind: listed with a warning,
/// never blocking a destroy, and gone from the view 10 minutes after they
/// were last seen. Agents and supervisors still block.
async fn one_shot_consumers_warn_expire_and_never_block(app: TestApp) {
    let team = app.default_team_id().await;
    let key = app.reader_key(&team).await;
    put(&app, &team, "hf-token", "first").await;
    for run in ["run-1", "run-2"] {
        fetch_kind(&app, &key, run, Some("one-shot"), "hf-token")
            .await
            .ok();
    }
    put(&app, &team, "hf-token", "second").await;
    fetch_kind(&app, &key, "edge", Some("supervisor"), "hf-token")
        .await
        .ok();
    let bad = fetch_kind(&app, &key, "x", Some("daemon"), "hf-token").await;
    let message = bad.err(400, "INVALID_REQUEST");
    assert!(message.contains("agent, supervisor, one-shot"), "{message}");
    app.service().flush_consumers().await.unwrap();

    let path = format!("/v1/teams/{team}/secrets/hf-token/consumers");
    let c = app.get(&path).await.ok();
    let kinds: Vec<(&str, &str)> = c["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["instance"].as_str().unwrap(), c["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds.len(), 3);
    assert!(kinds.contains(&("edge", "supervisor")) && kinds.contains(&("run-1", "one-shot")));
    let summary = c["summary"].as_str().unwrap();
    assert!(
        summary
            .starts_with("3 consumers (2 of them one-shot runs): 1 on version 2, 2 on version 1"),
        "{summary}"
    );
    assert!(
        c["warning"]
            .as_str()
            .unwrap()
            .contains("2 of these are one-shot runs"),
        "{c}"
    );

    // The one-shot runs hold version 1: destroying it goes ahead, with a
    // warning.
    let destroyed = app
        .delete(&format!("/v1/teams/{team}/secrets/hf-token/versions/1"))
        .await
        .ok();
    assert_eq!(destroyed["destroyed"], true);
    assert!(
        destroyed["warning"]
            .as_str()
            .unwrap()
            .starts_with("2 one-shot runs received version 1"),
        "{destroyed}"
    );
    // The supervisor holds version 2: it still blocks.
    put(&app, &team, "hf-token", "third").await;
    let refused = app
        .delete(&format!("/v1/teams/{team}/secrets/hf-token/versions/2"))
        .await
        .err(409, "CONFLICT");
    assert!(refused.contains("held by 1 consumer"), "{refused}");

    // Eleven minutes on, the one-shot runs are no longer listed; the
    // supervisor is (it reports while it lives: not hearing from it is
    // news).
    let p = app
        .service()
        .identity()
        .authenticate(Some(&format!("Bearer {}", app.admin_key)))
        .await
        .unwrap();
    let later = tessera::domain::time::now_micros() + 11 * 60 * 1_000_000;
    let at = |now| {
        let p = p.clone();
        let team = team.clone();
        let service = app.service();
        async move {
            let (_, listed) = service
                .secret_consumers(&p, tessera::service::TeamRef::Id(&team), "hf-token", now)
                .await
                .unwrap();
            listed
                .iter()
                .map(|c| c.instance.clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(at(later - 2 * 60 * 1_000_000).await.len(), 3);
    assert_eq!(at(later).await, vec!["edge".to_owned()]);
    let versions = app
        .service()
        .secret_versions(&p, tessera::service::TeamRef::Id(&team), "hf-token", later)
        .await
        .unwrap();
    assert_eq!(versions.consumers.len(), 1);
}

async fn deleted_secrets_can_be_undeleted(app: TestApp) {
    let team = app.default_team_id().await;
    let first = put(&app, &team, "webhook", "original").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    put(&app, &team, "webhook", "original 2").await;
    app.delete(&format!("/v1/teams/{team}/secrets/webhook"))
        .await
        .ok();
    // Gone for the Baseten routes.
    app.delete(&format!("/v1/teams/{team}/secrets/webhook"))
        .await
        .err(404, "NOT_FOUND");
    let listed = app.get(&format!("/v1/teams/{team}/secrets")).await.ok();
    assert!(!listed.to_string().contains("webhook"));
    let deleted = app
        .get(&format!("/v1/teams/{team}/deleted_secrets"))
        .await
        .ok();
    assert_eq!(deleted["deleted_secrets"][0]["id"], first.as_str());
    assert_eq!(deleted["deleted_secrets"][0]["version"], 2);
    assert_eq!(
        deleted["deleted_secrets"][0]["deleted_by"],
        prefix(&app.admin_key)
    );
    crate::common::assert_utc_z(&deleted["deleted_secrets"][0]["purge_after"]);

    // A new secret of the same name is a new secret.
    let second = put(&app, &team, "webhook", "replacement").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    let undelete = format!("/v1/teams/{team}/deleted_secrets/webhook/restore");
    app.post(&undelete, json!({})).await.err(409, "CONFLICT");
    app.delete(&format!("/v1/teams/{team}/secrets/webhook"))
        .await
        .ok();
    let back = app
        .post(&format!("{undelete}?id={first}"), json!({}))
        .await
        .ok();
    assert_eq!(back["id"], first.as_str());
    assert_eq!(back["version"], 2);
    assert_eq!(
        app.reveal(&app.admin_key, &team, "webhook").await,
        "original 2"
    );
    // Its versions came back with it.
    assert_eq!(numbers(&versions(&app, &team, "webhook").await), vec![2, 1]);
    // The replacement is still among the deleted; purge it now.
    let purged = app
        .delete(&format!("/v1/teams/{team}/deleted_secrets/webhook"))
        .await
        .ok();
    assert_eq!(purged["id"], second.as_str());
    let left = app
        .get(&format!("/v1/teams/{team}/deleted_secrets"))
        .await
        .ok();
    assert_eq!(left["deleted_secrets"], json!([]));
    app.post(&undelete, json!({})).await.err(404, "NOT_FOUND");
}

async fn the_purge_job_removes_what_outlived_the_window(app: TestApp) {
    let team = app.default_team_id().await;
    put(&app, &team, "temp", "t1").await;
    put(&app, &team, "temp", "t2").await;
    app.delete(&format!("/v1/teams/{team}/secrets/temp"))
        .await
        .ok();
    let now = tessera::domain::time::now_micros();
    let day = 24 * 3600 * 1_000_000i64;
    // The clock is the job's argument: within the window, nothing goes.
    assert_eq!(app.service().purge_expired(now + 6 * day).await.unwrap(), 0);
    let deleted = format!("/v1/teams/{team}/deleted_secrets");
    assert_eq!(
        app.get(&deleted)
            .await
            .json::<DeletedSecrets>()
            .deleted_secrets
            .len(),
        1
    );
    assert_eq!(app.service().purge_expired(now + 8 * day).await.unwrap(), 1);
    assert_eq!(
        app.get(&deleted)
            .await
            .json::<DeletedSecrets>()
            .deleted_secrets,
        vec![]
    );
    app.post(&format!("{deleted}/temp/restore"), json!({}))
        .await
        .err(404, "NOT_FOUND");
}

async fn workload_keys_and_members_cannot_rewrite_history(app: TestApp) {
    let team = app.default_team_id().await;
    put(&app, &team, "s", "1").await;
    put(&app, &team, "s", "2").await;
    let key = app.reader_key(&team).await;
    for (method, path) in [
        (Method::GET, format!("/v1/teams/{team}/secrets/s/versions")),
        (
            Method::POST,
            format!("/v1/teams/{team}/secrets/s/versions/1/restore"),
        ),
        (
            Method::DELETE,
            format!("/v1/teams/{team}/secrets/s/versions/1"),
        ),
        (Method::GET, format!("/v1/teams/{team}/deleted_secrets")),
    ] {
        app.as_key(&key, method, &path, None)
            .await
            .err(403, "FORBIDDEN");
    }
}

/// Retention 0 keeps only the current version and purges deletions at once.
async fn zero_retention_keeps_nothing(app: TestApp) {
    let team = app.default_team_id().await;
    put(&app, &team, "once", "a").await;
    put(&app, &team, "once", "b").await;
    assert_eq!(numbers(&versions(&app, &team, "once").await), vec![2]);
    app.delete(&format!("/v1/teams/{team}/secrets/once"))
        .await
        .ok();
    let deleted = app
        .get(&format!("/v1/teams/{team}/deleted_secrets"))
        .await
        .ok();
    assert_eq!(deleted["deleted_secrets"], json!([]));
}

fn limits(keep_versions: i64, keep_deleted: Duration) -> Limits {
    Limits {
        history: tessera::service::history::Retention {
            keep_versions,
            keep_deleted,
        },
        ..Limits::default()
    }
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    versions_are_listed_newest_first_with_their_writers,
    restoring_makes_an_earlier_value_current_again,
    destroy_previous_destroys_every_earlier_value,
    destroying_one_version_keeps_its_metadata,
    consumers_show_who_holds_which_version,
    one_shot_consumers_warn_expire_and_never_block,
    deleted_secrets_can_be_undeleted,
    the_purge_job_removes_what_outlived_the_window,
    workload_keys_and_members_cannot_rewrite_history,
);

/// The tests that need other retention settings than the defaults, on
/// both engines.
mod limited {
    use super::*;

    async fn start(backend: Backend, keep: i64, deleted: Duration, test: &str) -> Option<TestApp> {
        let app = TestApp::start_with(backend, limits(keep, deleted)).await;
        if app.is_none() {
            crate::common::announce_skip(test, "TESSERA_TEST_DATABASE_URL is not set");
        }
        app
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_sqlite() {
        let app = start(
            Backend::Sqlite,
            2,
            Duration::from_secs(60),
            "retention_sqlite",
        )
        .await;
        retention_keeps_the_configured_number_of_versions(app.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_postgres() {
        let app = start(
            Backend::Postgres,
            2,
            Duration::from_secs(60),
            "retention_postgres",
        );
        if let Some(app) = app.await {
            retention_keeps_the_configured_number_of_versions(app).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zero_retention_sqlite() {
        let app = start(Backend::Sqlite, 0, Duration::ZERO, "zero_retention_sqlite").await;
        zero_retention_keeps_nothing(app.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zero_retention_postgres() {
        let app = start(
            Backend::Postgres,
            0,
            Duration::ZERO,
            "zero_retention_postgres",
        );
        if let Some(app) = app.await {
            zero_retention_keeps_nothing(app).await;
        }
    }
}
