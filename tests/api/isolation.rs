//! Organizations never see each other's data.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::json;
use tessera::wire::management::SecretList;

async fn organizations_are_isolated(app: TestApp) {
    let other = app.new_org("globex").await;
    app.post("/v1/secrets", json!({"name": "acme_only", "value": "a"}))
        .await
        .ok();
    let theirs = app
        .as_key(
            &other,
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": "acme_only", "value": "g"})),
        )
        .await
        .ok();
    assert_eq!(theirs["team_name"], "default");
    let acme_team = app.default_team_id().await;
    // Same canonical name in two organizations: two secrets, two values.
    let mine = app.get("/v1/secrets").await.ok();
    assert_eq!(mine["secrets"].as_array().unwrap().len(), 1);
    assert_ne!(mine["secrets"][0]["id"], theirs["id"]);
    assert_eq!(
        app.reveal(&app.admin_key, &acme_team, "acme_only").await,
        "a"
    );
    // Every route on the other organization's team id is a 404 for them.
    let teams = app
        .as_key(&other, Method::GET, "/v1/teams", None)
        .await
        .ok();
    assert_eq!(teams["teams"].as_array().unwrap().len(), 1);
    assert_ne!(teams["teams"][0]["id"], acme_team.as_str());
    for (m, path, body) in [
        (Method::GET, format!("/v1/teams/{acme_team}"), None),
        (Method::GET, format!("/v1/teams/{acme_team}/secrets"), None),
        (
            Method::POST,
            format!("/v1/teams/{acme_team}/secrets"),
            Some(json!({"name": "x", "value": "y"})),
        ),
        (
            Method::DELETE,
            format!("/v1/teams/{acme_team}/secrets/acme_only"),
            None,
        ),
    ] {
        app.as_key(&other, m, &path, body)
            .await
            .err(404, "NOT_FOUND");
    }
    assert_eq!(
        app.get("/v1/secrets")
            .await
            .json::<SecretList>()
            .secrets
            .len(),
        1
    );
    let their_list = app
        .as_key(&other, Method::GET, "/v1/secrets", None)
        .await
        .ok();
    assert_eq!(their_list["secrets"].as_array().unwrap().len(), 1);
    let their_org = app
        .as_key(&other, Method::GET, "/v1/organizations/me", None)
        .await
        .ok();
    assert_eq!(their_org["name"], "globex");
}

crate::on_both_engines!(crate::common::TestApp::start => organizations_are_isolated);
