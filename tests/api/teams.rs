//! Teams, users/me and organizations/me.

use crate::common::{assert_utc_z, TestApp};
use serde_json::json;
use tessera::wire::management::TeamsView;

async fn teams_list_filter_and_get(app: TestApp) {
    let list = app.get("/v1/teams").await.ok();
    let teams = list["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 1);
    let t = &teams[0];
    assert_eq!(t["name"], "default");
    assert_eq!(t["default"], true);
    assert_utc_z(&t["created_at"]);
    let id = t["id"].as_str().unwrap();
    assert_eq!(
        app.get("/v1/teams?name=default").await.ok()["teams"],
        json!([t])
    );
    assert_eq!(
        app.get("/v1/teams?name=Default")
            .await
            .json::<TeamsView>()
            .teams
            .len(),
        0
    );
    assert_eq!(app.get(&format!("/v1/teams/{id}")).await.ok(), *t);
    app.get("/v1/teams/doesnotexist")
        .await
        .err(404, "NOT_FOUND");
    app.get("/v1/teams/doesnotexist/secrets")
        .await
        .err(404, "NOT_FOUND");
    app.post(
        "/v1/teams/doesnotexist/secrets",
        json!({"name": "a", "value": "b"}),
    )
    .await
    .err(404, "NOT_FOUND");
    app.delete("/v1/teams/doesnotexist/secrets/a")
        .await
        .err(404, "NOT_FOUND");
}

async fn me_routes(app: TestApp) {
    let me = app.get("/v1/users/me").await.ok();
    assert!(me["user_id"].as_str().unwrap().len() >= 8);
    assert_eq!(me["workspace_name"], "acme");
    let org = app.get("/v1/organizations/me").await.ok();
    assert_eq!(org["name"], "acme");
    assert_utc_z(&org["created_at"]);
    assert!(org["org_id"].is_string());
}

crate::on_both_engines!(crate::common::TestApp::start => teams_list_filter_and_get, me_routes);
