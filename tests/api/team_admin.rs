//! Team management extensions: create, rename, delete (cascade), members.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::json;
use tessera::wire::management::{TeamTombstoneView, TeamView, TeamsView};

async fn team_create_rename_delete(app: TestApp) {
    let t = app.post("/v1/teams", json!({"name": "ml"})).await.ok();
    assert_eq!(t["default"], false);
    let id = t["id"].as_str().unwrap().to_owned();
    app.post("/v1/teams", json!({"name": "ml"}))
        .await
        .err(409, "CONFLICT");
    app.post("/v1/teams", json!({"name": "  "}))
        .await
        .err(400, "INVALID_REQUEST");
    let renamed = app
        .request(
            Method::PATCH,
            &format!("/v1/teams/{id}"),
            Some(&app.admin_key),
            Some(json!({"name": "ml-platform"})),
        )
        .await
        .ok();
    assert_eq!(renamed["name"], "ml-platform");
    assert_eq!(renamed["id"], id.as_str());
    assert_eq!(
        app.get("/v1/teams?name=ml-platform")
            .await
            .json::<TeamsView>()
            .teams
            .len(),
        1
    );
    // A team with secrets is kept unless asked to cascade.
    app.post(
        &format!("/v1/teams/{id}/secrets"),
        json!({"name": "s1", "value": "v"}),
    )
    .await
    .ok();
    let key = app
        .post(
            &format!("/v1/teams/{id}/api_keys"),
            json!({"type": "WORKSPACE_MANAGE_ALL"}),
        )
        .await
        .json::<tessera::wire::management::NewApiKeyView>()
        .api_key;
    let msg = app
        .delete(&format!("/v1/teams/{id}"))
        .await
        .err(409, "CONFLICT");
    assert!(msg.contains("cascade"), "{msg}");
    let gone = app
        .delete(&format!("/v1/teams/{id}?cascade=true"))
        .await
        .ok();
    assert_eq!(gone["deleted_secrets"], 1);
    app.get(&format!("/v1/teams/{id}"))
        .await
        .err(404, "NOT_FOUND");
    // Its team-bound keys went with it.
    app.as_key(&key, Method::GET, "/v1/secrets", None)
        .await
        .err(401, "UNAUTHORIZED");
    let default = app.default_team_id().await;
    let msg = app
        .delete(&format!("/v1/teams/{default}?cascade=true"))
        .await
        .err(400, "INVALID_REQUEST");
    assert!(msg.contains("default team"), "{msg}");
    let empty = app
        .post("/v1/teams", json!({"name": "empty"}))
        .await
        .json::<TeamView>()
        .id;
    assert_eq!(
        app.delete(&format!("/v1/teams/{empty}"))
            .await
            .json::<TeamTombstoneView>()
            .deleted_secrets,
        0
    );
}

async fn memberships_grant_and_withdraw_access(app: TestApp) {
    let team = app
        .post("/v1/teams", json!({"name": "data"}))
        .await
        .json::<TeamView>()
        .id;
    let uid = app.new_user(json!({"email": "ana@example.com"})).await;
    let key = app.personal_key(&uid).await;
    let secrets = format!("/v1/teams/{team}/secrets");
    app.as_key(&key, Method::GET, &secrets, None)
        .await
        .err(403, "FORBIDDEN");
    let teams = app.as_key(&key, Method::GET, "/v1/teams", None).await.ok();
    assert_eq!(
        teams["teams"].as_array().unwrap().len(),
        1,
        "only the default team"
    );
    let member_path = format!("/v1/teams/{team}/members/{uid}");
    let put = app
        .request(
            Method::PUT,
            &member_path,
            Some(&app.admin_key),
            Some(json!({"role": "MEMBER"})),
        )
        .await
        .ok();
    assert_eq!(put["user_id"], uid.as_str());
    app.as_key(&key, Method::GET, &secrets, None).await.ok();
    app.as_key(
        &key,
        Method::POST,
        &format!("/v1/teams/{team}/api_keys"),
        Some(json!({"type": "WORKSPACE_INVOKE"})),
    )
    .await
    .err(403, "FORBIDDEN");
    // Promote to team admin: may now manage the team's keys and members.
    app.request(
        Method::PUT,
        &member_path,
        Some(&app.admin_key),
        Some(json!({"role": "ADMIN"})),
    )
    .await
    .ok();
    app.as_key(
        &key,
        Method::POST,
        &format!("/v1/teams/{team}/api_keys"),
        Some(json!({"type": "WORKSPACE_INVOKE"})),
    )
    .await
    .ok();
    let members = app.get(&format!("/v1/teams/{team}/members")).await.ok();
    assert_eq!(
        members["members"],
        json!([{"user_id": uid, "email": "ana@example.com", "name": null, "role": "ADMIN"}])
    );
    app.request(
        Method::PUT,
        &member_path,
        Some(&app.admin_key),
        Some(json!({"role": "OWNER"})),
    )
    .await
    .err(400, "INVALID_REQUEST");
    app.request(
        Method::PUT,
        &format!("/v1/teams/{team}/members/nosuchuser"),
        Some(&app.admin_key),
        Some(json!({})),
    )
    .await
    .err(404, "NOT_FOUND");
    // Removal withdraws access on the next request (revoking the key the
    // user created as the team's admin).
    let revoking = format!("{member_path}?revoke_keys=true");
    app.request(Method::DELETE, &revoking, Some(&app.admin_key), None)
        .await
        .ok();
    app.as_key(&key, Method::GET, &secrets, None)
        .await
        .err(403, "FORBIDDEN");
    app.request(Method::DELETE, &member_path, Some(&app.admin_key), None)
        .await
        .err(404, "NOT_FOUND");
    let default = app.default_team_id().await;
    app.request(
        Method::DELETE,
        &format!("/v1/teams/{default}/members/{uid}"),
        Some(&app.admin_key),
        None,
    )
    .await
    .err(400, "INVALID_REQUEST");
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    team_create_rename_delete,
    memberships_grant_and_withdraw_access
);
