//! Bounds on what one caller can make the server hold: quotas on creation,
//! listings read and sent page by page at a bounded number of queries.

use crate::common::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tessera::service::{Limits, Quotas};
use tessera::wire::management::TeamView;

fn small_quotas() -> Limits {
    Limits {
        quotas: Quotas {
            secrets_per_team: 3,
            teams_per_org: 3,
            users_per_org: 2,
            keys_per_user: 2,
            keys_per_team: 2,
            ..Quotas::default()
        },
        ..Limits::default()
    }
}

#[track_caller]
fn quota(r: crate::common::Resp, what: &str, limit: i64) {
    let msg = r.err(409, "QUOTA_EXCEEDED");
    assert!(
        msg.contains(what) && msg.contains(&format!("limit {limit}")),
        "{msg}"
    );
}

async fn quotas_are_enforced(app: TestApp) {
    // Secrets per team: new names are refused at the limit; updates of
    // existing ones are not; a delete frees a slot.
    for i in 0..3 {
        app.post(
            "/v1/secrets",
            json!({"name": format!("s_{i}"), "value": "v"}),
        )
        .await
        .ok();
    }
    quota(
        app.post("/v1/secrets", json!({"name": "s3", "value": "v"}))
            .await,
        "secrets per team",
        3,
    );
    app.post("/v1/secrets", json!({"name": "s-0", "value": "again"}))
        .await
        .ok();
    app.delete("/v1/secrets/s.2").await.ok();
    app.post("/v1/secrets", json!({"name": "s3", "value": "v"}))
        .await
        .ok();
    let listed = app.get("/v1/secrets").await.ok();
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 3);

    // Teams per organization, the default team included.
    for name in ["t1", "t2"] {
        app.post("/v1/teams", json!({"name": name})).await.ok();
    }
    quota(
        app.post("/v1/teams", json!({"name": "t3"})).await,
        "teams per organization",
        3,
    );

    // Users per organization (the admin counts).
    let user = app.new_user(json!({"email": "one@example.com"})).await;
    quota(
        app.post("/v1/users", json!({"email": "two@example.com"}))
            .await,
        "users per organization",
        2,
    );

    // Live personal keys per user; a revoked key frees its slot.
    let path = format!("/v1/users/{user}/api_keys");
    let first = app.post(&path, json!({"name": "k1"})).await.ok();
    app.post(&path, json!({"name": "k2"})).await.ok();
    quota(
        app.post(&path, json!({"name": "k3"})).await,
        "live API keys per user",
        2,
    );
    let prefix = first["api_key"]
        .as_str()
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    app.delete(&format!("/v1/api_keys/{prefix}")).await.ok();
    app.post(&path, json!({"name": "k3"})).await.ok();

    // Live keys per team.
    let team = app.default_team_id().await;
    let path = format!("/v1/teams/{team}/api_keys");
    for n in ["w1", "w2"] {
        app.post(&path, json!({"type": "WORKSPACE_INVOKE", "name": n}))
            .await
            .ok();
    }
    quota(
        app.post(&path, json!({"type": "WORKSPACE_INVOKE", "name": "w3"}))
            .await,
        "live API keys per team",
        2,
    );
}

async fn put_many(app: &TestApp, team: &str, names: impl Iterator<Item = String>) {
    use futures_util::StreamExt;
    futures_util::stream::iter(names)
        .for_each_concurrent(8, |name| async move {
            app.post(
                &format!("/v1/teams/{team}/secrets"),
                json!({"name": name, "value": "v"}),
            )
            .await
            .ok();
        })
        .await;
}

fn names(listing: &Value) -> Vec<(String, String)> {
    listing["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["team_name"].as_str().unwrap().to_owned(),
                s["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A listing larger than one page arrives complete, each secret once, in
/// canonical order within its team, streamed rather than buffered.
async fn large_listings_are_complete_and_streamed(app: TestApp) {
    let big = app
        .post("/v1/teams", json!({"name": "big"}))
        .await
        .json::<TeamView>()
        .id;
    let small = app
        .post("/v1/teams", json!({"name": "small"}))
        .await
        .json::<TeamView>()
        .id;
    let n = 2_600; // three pages: 256 + 2048 + the rest
    put_many(&app, &big, (0..n).map(|i| format!("k{i:05}"))).await;
    put_many(&app, &small, (0..5).map(|i| format!("small-{i}"))).await;

    let r = app
        .http
        .get(format!("{}/v1/teams/{big}/secrets", app.url))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-length").is_none(),
        "a large listing is streamed"
    );
    let body: Value = r.json().await.unwrap();
    let got = names(&body);
    let want: Vec<(String, String)> = (0..n)
        .map(|i| ("big".to_owned(), format!("k{i:05}")))
        .collect();
    assert_eq!(got, want);

    // Across teams: everything once, each team's secrets together.
    let all = names(&app.get("/v1/secrets").await.ok());
    assert_eq!(all.len(), n + 5);
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len());
    let small_positions: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| t == "small")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(small_positions.len(), 5);
    assert_eq!(
        small_positions[4] - small_positions[0],
        4,
        "a team's secrets come together"
    );

    // A member sees the teams it belongs to, through the same paging.
    let user = app.new_user(json!({"email": "member@example.com"})).await;
    app.as_key(
        &app.admin_key,
        Method::PUT,
        &format!("/v1/teams/{big}/members/{user}"),
        Some(json!({"role": "MEMBER"})),
    )
    .await
    .ok();
    let key = app.personal_key(&user).await;
    let mine = app
        .as_key(&key, Method::GET, "/v1/secrets", None)
        .await
        .ok();
    let mine = names(&mine);
    assert_eq!(mine.len(), n);
    assert!(mine.iter().all(|(t, _)| t == "big"));

    // A small listing is answered in one piece.
    let r = app
        .http
        .get(format!("{}/v1/teams/{small}/secrets", app.url))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-length").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_sqlite() {
    let app = TestApp::start_with(Backend::Sqlite, small_quotas())
        .await
        .unwrap();
    quotas_are_enforced(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_postgres() {
    match TestApp::start_with(Backend::Postgres, small_quotas()).await {
        Some(app) => quotas_are_enforced(app).await,
        None => crate::common::announce_skip(
            "bounds::quotas_postgres",
            "TESSERA_TEST_DATABASE_URL is not set",
        ),
    }
}

crate::on_both_engines!(crate::common::TestApp::start => large_listings_are_complete_and_streamed);
