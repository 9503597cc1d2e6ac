//! Secret routes: upsert, list, delete, canonical-name identity.

use crate::common::{assert_utc_z, canary, TestApp};
use serde_json::json;
use tessera::wire::management::{SecretList, SecretTombstoneView};

async fn upsert_creates_then_updates_keeping_id_and_created_at(app: TestApp) {
    let first = app
        .post("/v1/secrets", json!({"name": "db_password", "value": "v1"}))
        .await
        .ok();
    assert_eq!(first["name"], "db_password");
    assert_eq!(first["team_name"], "default");
    assert_utc_z(&first["created_at"]);
    assert!(first["id"].as_str().unwrap().len() >= 8);
    let second = app
        .post("/v1/secrets", json!({"name": "db_password", "value": "v2"}))
        .await
        .ok();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["created_at"], first["created_at"]);
    let team = app.default_team_id().await;
    assert_eq!(app.reveal(&app.admin_key, &team, "db_password").await, "v2");
    // Exactly the four fields of the contract: no value, no internals.
    assert_eq!(second.as_object().unwrap().len(), 4, "{second}");
}

async fn alias_spellings_are_one_secret_and_keep_the_first_spelling(app: TestApp) {
    let a = app
        .post(
            "/v1/secrets",
            json!({"name": "hf_access_token", "value": "a"}),
        )
        .await
        .ok();
    let b = app
        .post(
            "/v1/secrets",
            json!({"name": "hf-access-token", "value": "b"}),
        )
        .await
        .ok();
    let c = app
        .post(
            "/v1/secrets",
            json!({"name": "hf.access.token", "value": "c"}),
        )
        .await
        .ok();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["id"], c["id"]);
    assert_eq!(c["name"], "hf_access_token");
    let list = app.get("/v1/secrets").await.ok();
    let names: Vec<_> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("hf_access_token")]);
    let team = app.default_team_id().await;
    assert_eq!(
        app.reveal(&app.admin_key, &team, "hf-access-token").await,
        "c"
    );
    // Case is significant.
    let upper = app
        .post(
            "/v1/secrets",
            json!({"name": "HF_ACCESS_TOKEN", "value": "d"}),
        )
        .await
        .ok();
    assert_ne!(upper["id"], a["id"]);
    assert_eq!(
        app.get("/v1/secrets")
            .await
            .json::<SecretList>()
            .secrets
            .len(),
        2
    );
}

async fn delete_accepts_any_spelling_then_404s(app: TestApp) {
    app.post("/v1/secrets", json!({"name": "hf-token", "value": "x"}))
        .await
        .ok();
    let gone = app.delete("/v1/secrets/hf.token").await.ok();
    assert_eq!(gone, json!({"name": "hf-token"}));
    let msg = app
        .delete("/v1/secrets/hf.token")
        .await
        .err(404, "NOT_FOUND");
    assert!(msg.contains("hf.token"), "{msg}");
    assert_eq!(
        app.get("/v1/secrets")
            .await
            .json::<SecretList>()
            .secrets
            .len(),
        0
    );
    // Percent-encoded path segments are decoded.
    app.post("/v1/secrets", json!({"name": "enc-name", "value": "x"}))
        .await
        .ok();
    assert_eq!(
        app.delete("/v1/secrets/enc%2Dname")
            .await
            .json::<SecretTombstoneView>()
            .name,
        "enc-name"
    );
    app.delete("/v1/secrets/a%2Fb")
        .await
        .err(400, "INVALID_REQUEST");
}

async fn recreated_secret_gets_a_new_id(app: TestApp) {
    let a = app
        .post("/v1/secrets", json!({"name": "k", "value": "1"}))
        .await
        .ok();
    app.delete("/v1/secrets/k").await.ok();
    let b = app
        .post("/v1/secrets", json!({"name": "k", "value": "2"}))
        .await
        .ok();
    assert_ne!(a["id"], b["id"]);
}

async fn team_scoped_routes(app: TestApp) {
    let team = app.default_team_id().await;
    let s = app
        .post(
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": "team.secret", "value": "t"}),
        )
        .await
        .ok();
    assert_eq!(s["team_name"], "default");
    let top = app
        .post("/v1/secrets", json!({"name": "team_secret", "value": "u"}))
        .await
        .ok();
    assert_eq!(
        top["id"], s["id"],
        "the implicit team of a personal key is the default team"
    );
    let list = app.get(&format!("/v1/teams/{team}/secrets")).await.ok();
    assert_eq!(list["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(list["secrets"][0]["name"], "team.secret");
    let all = app.get("/v1/secrets").await.ok();
    assert_eq!(all["secrets"][0]["team_name"], "default");
    let gone = app
        .delete(&format!("/v1/teams/{team}/secrets/team-secret"))
        .await
        .ok();
    assert_eq!(gone["name"], "team.secret");
    app.delete(&format!("/v1/teams/{team}/secrets/team-secret"))
        .await
        .err(404, "NOT_FOUND");
}

async fn values_empty_multiline_unicode_and_the_size_limit(app: TestApp) {
    let team = app.default_team_id().await;
    for (name, value) in [
        ("empty", String::new()),
        ("multi", "line one\nline two\r\n\tindented".to_owned()),
        ("uni", "ключ 🔑 秘密".to_owned()),
        ("max", "x".repeat(64 * 1024)),
    ] {
        app.post("/v1/secrets", json!({"name": name, "value": value}))
            .await
            .ok();
        assert_eq!(
            app.reveal(&app.admin_key, &team, name).await,
            value,
            "{name}"
        );
    }
    let too_big = canary("big") + &"x".repeat(64 * 1024);
    let msg = app
        .post("/v1/secrets", json!({"name": "too_big", "value": too_big}))
        .await
        .err(400, "INVALID_REQUEST");
    assert!(msg.contains("65536"), "{msg}");
    assert!(!msg.contains("canary"), "the value must not be echoed");
    assert_eq!(
        app.get("/v1/secrets")
            .await
            .json::<SecretList>()
            .secrets
            .len(),
        4
    );
}

async fn list_orders_by_name_and_shows_only_metadata(app: TestApp) {
    let secret = canary("list");
    for n in ["b", "a", "c"] {
        app.post("/v1/secrets", json!({"name": n, "value": secret}))
            .await
            .ok();
    }
    let r = app.get("/v1/secrets").await;
    assert!(!r.text.contains(&secret));
    let list = r.ok();
    let names: Vec<_> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    for s in list["secrets"].as_array().unwrap() {
        assert_utc_z(&s["created_at"]);
        assert_eq!(s.as_object().unwrap().len(), 4);
    }
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    upsert_creates_then_updates_keeping_id_and_created_at,
    alias_spellings_are_one_secret_and_keep_the_first_spelling,
    delete_accepts_any_spelling_then_404s,
    recreated_secret_gets_a_new_id,
    team_scoped_routes,
    values_empty_multiline_unicode_and_the_size_limit,
    list_orders_by_name_and_shows_only_metadata,
);
