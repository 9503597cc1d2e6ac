//! Every way a secret stops being recoverable is an audit event: one
//! `secret.purge` per secret, naming it, its team and organization, with the
//! reason. Before, a secret pushed out of a full list of deleted secrets
//! left no event at all, and the purge job wrote one count without names.

use crate::audit::all_events;
use crate::common::{Backend, TestApp};
use serde_json::{json, Value};
use tessera::audit::chain::StoredEvent;
use tessera::service::Limits;
use tessera::wire::management::{SecretInfo, TeamView};

/// The `secret.purge` events after the first `from`, as (target name,
/// reason, actor type).
fn purges(events: &[StoredEvent], from: usize) -> Vec<(String, String, String)> {
    events[from..]
        .iter()
        .filter(|e| e.event.action == "secret.purge")
        .map(|e| {
            let detail: Value = serde_json::from_str(e.event.detail.as_deref().unwrap()).unwrap();
            (
                e.event.target_name.clone().unwrap_or_default(),
                detail["reason"].as_str().unwrap_or_default().to_owned(),
                e.event.actor_type.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn purge(name: &str, reason: &str, actor: &str) -> (String, String, String) {
    (name.to_owned(), reason.to_owned(), actor.to_owned())
}

async fn put_and_delete(app: &TestApp, team: &str, name: &str) -> String {
    let id = app
        .post(
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": name, "value": "v"}),
        )
        .await
        .json::<SecretInfo>()
        .id;
    app.delete(&format!("/v1/teams/{team}/secrets/{name}"))
        .await
        .ok();
    id
}

/// With room for two deleted secrets per team (the secrets quota), a
/// third deletion pushes the oldest out; a person purges one; the job
/// purges what outlived the window; deleting a team purges what it kept.
async fn every_purge_is_an_event(app: TestApp) {
    let team = app.default_team_id().await;
    let org = all_events(&app).await[0].event.org_id.clone();
    let start = all_events(&app).await.len();
    let first = put_and_delete(&app, &team, "first").await;
    put_and_delete(&app, &team, "second").await;
    put_and_delete(&app, &team, "third").await;
    let events = all_events(&app).await;
    assert_eq!(
        purges(&events, start),
        [purge("first", "deleted_list_full", "PERSONAL")],
        "pushed out of the full list of deleted secrets"
    );
    let pushed = events[start..]
        .iter()
        .find(|e| e.event.action == "secret.purge")
        .unwrap();
    assert_eq!(pushed.event.target_id.as_deref(), Some(first.as_str()));
    assert_eq!(pushed.event.team_id.as_deref(), Some(team.as_str()));
    assert_eq!(pushed.event.org_id, org);
    // In the same transaction as the deletion that pushed it out, after it.
    let i = events.iter().position(|e| std::ptr::eq(e, pushed)).unwrap();
    assert_eq!(events[i - 1].event.action, "secret.delete");
    assert_eq!(events[i - 1].event.target_name.as_deref(), Some("third"));

    let mark = events.len();
    app.delete(&format!("/v1/teams/{team}/deleted_secrets/second"))
        .await
        .ok();
    let day = 24 * 3600 * 1_000_000i64;
    let later = tessera::domain::time::now_micros() + 8 * day;
    assert_eq!(app.service().purge_expired(later).await.unwrap(), 1);
    let other = app
        .post("/v1/teams", json!({"name": "doomed"}))
        .await
        .json::<TeamView>()
        .id;
    put_and_delete(&app, &other, "kept-by-doomed").await;
    app.delete(&format!("/v1/teams/{other}?cascade=true"))
        .await
        .ok();
    let events = all_events(&app).await;
    assert_eq!(
        purges(&events, mark),
        [
            purge("second", "requested", "PERSONAL"),
            purge("third", "expired", "SYSTEM"),
            purge("kept-by-doomed", "team_deleted", "PERSONAL"),
        ]
    );
    // The job's purges name the organization, so its admins see them.
    let listed = app.get("/v1/audit_events?action=secret.purge").await.ok();
    let names: Vec<&str> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kept-by-doomed", "third", "second", "first"]);
}

/// With a window of 0, a deletion purges at once: recorded as such.
async fn a_deletion_that_keeps_nothing_is_a_purge(app: TestApp) {
    let team = app.default_team_id().await;
    let start = all_events(&app).await.len();
    put_and_delete(&app, &team, "gone").await;
    let events = all_events(&app).await;
    assert_eq!(
        purges(&events, start),
        [purge("gone", "not_kept", "PERSONAL")]
    );
}

fn small_deleted_list() -> Limits {
    let mut limits = Limits::default();
    limits.quotas.secrets_per_team = 2;
    limits
}

fn nothing_kept() -> Limits {
    let mut limits = Limits::default();
    limits.history.keep_deleted = std::time::Duration::ZERO;
    limits
}

async fn on(backend: Backend, limits: Limits, test: &str) -> Option<TestApp> {
    let app = TestApp::start_with(backend, limits).await;
    if app.is_none() {
        crate::common::announce_skip(test, "TESSERA_TEST_DATABASE_URL is not set");
    }
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_purge_is_an_event_sqlite() {
    let app = on(Backend::Sqlite, small_deleted_list(), "sqlite").await;
    every_purge_is_an_event(app.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_purge_is_an_event_postgres() {
    let test = "audit_purges::every_purge_is_an_event_postgres";
    if let Some(app) = on(Backend::Postgres, small_deleted_list(), test).await {
        every_purge_is_an_event(app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_that_keeps_nothing_is_a_purge_sqlite() {
    let app = on(Backend::Sqlite, nothing_kept(), "sqlite").await;
    a_deletion_that_keeps_nothing_is_a_purge(app.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_that_keeps_nothing_is_a_purge_postgres() {
    let test = "audit_purges::a_deletion_that_keeps_nothing_is_a_purge_postgres";
    if let Some(app) = on(Backend::Postgres, nothing_kept(), test).await {
        a_deletion_that_keeps_nothing_is_a_purge(app).await;
    }
}
