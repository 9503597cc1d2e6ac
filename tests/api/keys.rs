//! API key lifecycle and validation.

use crate::common::{assert_utc_z, TestApp};
use reqwest::Method;
use serde_json::json;
use tessera::wire::management::TeamView;

fn prefix_of(key: &str) -> &str {
    key.split('.').next().unwrap()
}

async fn key_lifecycle_create_use_list_revoke(app: TestApp) {
    let team = app.default_team_id().await;
    let created = app
        .post(
            &format!("/v1/teams/{team}/api_keys"),
            json!({"name": "deployer", "type": "WORKSPACE_MANAGE_ALL"}),
        )
        .await
        .ok();
    let key = created["api_key"].as_str().unwrap().to_owned();
    assert_eq!(created.as_object().unwrap().len(), 1);
    let prefix = prefix_of(&key).to_owned();
    // Not used yet.
    let listed = app.get("/v1/api_keys").await.ok();
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["last_used_at"], json!(null));
    assert_eq!(entry["type"], "WORKSPACE_MANAGE_ALL");
    assert_eq!(entry["team_name"], "default");
    assert_eq!(entry["name"], "deployer");
    assert!(
        entry.get("owner").is_none() && entry.get("model_ids").is_none(),
        "{entry}"
    );
    assert_utc_z(&entry["created_at"]);
    // Use it.
    app.as_key(
        &key,
        Method::POST,
        "/v1/secrets",
        Some(json!({"name": "k", "value": "v"})),
    )
    .await
    .ok();
    let listed = app.get("/v1/api_keys").await.ok();
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix.as_str())
        .unwrap()
        .clone();
    assert_utc_z(&entry["last_used_at"]);
    assert!(
        !listed.to_string().contains(&key[9..]),
        "the secret part is never listed"
    );
    // Revoke: the next request is refused and the key is gone from the list.
    let gone = app.delete(&format!("/v1/api_keys/{prefix}")).await.ok();
    assert_eq!(gone, json!({"prefix": prefix}));
    app.as_key(&key, Method::GET, "/v1/secrets", None)
        .await
        .err(401, "UNAUTHORIZED");
    let listed = app.get("/v1/api_keys").await.ok();
    assert!(listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["prefix"] != prefix.as_str()));
    app.delete(&format!("/v1/api_keys/{prefix}"))
        .await
        .err(404, "NOT_FOUND");
}

async fn last_used_at_is_written_in_batches(app: TestApp) {
    let (prefix, _) = app.admin_key.split_once('.').unwrap();
    app.get("/v1/teams").await.ok();
    // The batch is flushed about once a second; the stored value catches up.
    let deadline = crate::common::Deadline::new("last_used_at written");
    loop {
        let stored = app.store.find_api_key(prefix).await.unwrap().unwrap();
        if stored.last_used_at.is_some() {
            break;
        }
        deadline.tick().await;
    }
}

async fn listing_filters_and_owner(app: TestApp) {
    let personal = app
        .post(
            "/v1/api_keys",
            json!({"type": "PERSONAL", "name": "laptop"}),
        )
        .await
        .ok();
    let invoke = app
        .post(
            "/v1/api_keys",
            json!({"type": "WORKSPACE_INVOKE", "name": "model", "model_ids": ["m1", "m2"]}),
        )
        .await
        .ok();
    let list = app.get("/v1/api_keys?type=PERSONAL").await.ok();
    let keys = list["keys"].as_array().unwrap();
    assert!(keys.iter().all(|k| k["type"] == "PERSONAL"));
    let laptop = keys.iter().find(|k| k["name"] == "laptop").unwrap();
    assert_eq!(
        laptop["prefix"],
        prefix_of(personal["api_key"].as_str().unwrap())
    );
    assert!(laptop["owner"]["user_id"].is_string());
    assert_eq!(laptop["team_name"], json!(null));
    let list = app.get("/v1/api_keys?type=WORKSPACE_INVOKE").await.ok();
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list["keys"][0]["model_ids"], json!(["m1", "m2"]));
    assert_eq!(
        list["keys"][0]["prefix"],
        prefix_of(invoke["api_key"].as_str().unwrap())
    );
    let mine = app.get("/v1/api_keys?created_by_me=true").await.ok();
    assert_eq!(
        mine["keys"].as_array().unwrap().len(),
        3,
        "admin, laptop, model: {mine}"
    );
    // A member's keys are visible to the org admin, with their owner.
    let user = app
        .post(
            "/v1/users",
            json!({"email": "dev@example.com", "name": "Dev"}),
        )
        .await
        .ok();
    let uid = user["user_id"].as_str().unwrap();
    let dev_key = app.personal_key(uid).await;
    let dev_own = app
        .as_key(
            &dev_key,
            Method::POST,
            "/v1/api_keys",
            Some(json!({"type": "PERSONAL", "name": "dev2"})),
        )
        .await
        .ok();
    let all = app.get("/v1/api_keys").await.ok();
    let dev2 = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "dev2")
        .unwrap();
    assert_eq!(dev2["owner"]["email"], "dev@example.com");
    // The member sees only their own keys.
    let theirs = app
        .as_key(&dev_key, Method::GET, "/v1/api_keys", None)
        .await
        .ok();
    assert_eq!(theirs["keys"].as_array().unwrap().len(), 2);
    assert!(theirs["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["owner"]["user_id"] == uid));
    assert!(dev_own["api_key"].is_string());
    app.get("/v1/api_keys?type=NOPE")
        .await
        .err(400, "INVALID_REQUEST");
    app.get("/v1/api_keys?created_by_me=maybe")
        .await
        .err(400, "INVALID_REQUEST");
}

async fn creation_validation_rules(app: TestApp) {
    let team = app.default_team_id().await;
    let other = app
        .post("/v1/teams", json!({"name": "other"}))
        .await
        .json::<TeamView>()
        .id;
    let cases: Vec<(String, serde_json::Value, &str)> = vec![
        (
            "/v1/api_keys".into(),
            json!({"name": "x"}),
            "missing required field `type`",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": "SUPERUSER"}),
            "unknown API key type",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": 5}),
            "`type` must be a string",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": "PERSONAL", "model_ids": ["m"]}),
            "model_ids is only allowed",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": "WORKSPACE_MANAGE_ALL", "model_ids": ["m"]}),
            "model_ids is only allowed",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": "WORKSPACE_INVOKE", "model_ids": [1]}),
            "array of strings",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": "PERSONAL", "team_id": team}),
            "team_id is not allowed for PERSONAL",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": "WORKSPACE_MANAGE_API_KEYS", "team_id": team}),
            "team_id is not allowed for WORKSPACE_MANAGE_API_KEYS",
        ),
        (
            format!("/v1/teams/{team}/api_keys"),
            json!({"type": "PERSONAL"}),
            "not bound to a team",
        ),
        (
            format!("/v1/teams/{team}/api_keys"),
            json!({"type": "WORKSPACE_INVOKE", "team_id": other}),
            "must match the team in the URL",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": "WORKSPACE_INVOKE", "name": " "}),
            "must not be blank",
        ),
        (
            "/v1/api_keys".into(),
            json!({"type": "WORKSPACE_INVOKE", "team_id": ""}),
            "must not be empty",
        ),
    ];
    for (path, body, want) in cases {
        let msg = app
            .post(&path, body.clone())
            .await
            .err(400, "INVALID_REQUEST");
        assert!(msg.contains(want), "{body}: {msg}");
    }
    // Names are unique among live keys of one scope...
    let body = json!({"type": "WORKSPACE_INVOKE", "name": "ci"});
    app.post(&format!("/v1/teams/{team}/api_keys"), body.clone())
        .await
        .ok();
    let msg = app
        .post(
            &format!("/v1/teams/{team}/api_keys"),
            json!({"type": "WORKSPACE_MANAGE_ALL", "name": "ci"}),
        )
        .await
        .err(400, "INVALID_REQUEST");
    assert!(msg.contains("already exists"), "{msg}");
    // ...but not across scopes, and a revoked key frees its name.
    let in_other = app
        .post(&format!("/v1/teams/{other}/api_keys"), body.clone())
        .await
        .ok();
    app.post("/v1/api_keys", json!({"type": "PERSONAL", "name": "ci"}))
        .await
        .ok();
    app.post(
        "/v1/api_keys",
        json!({"type": "WORKSPACE_MANAGE_API_KEYS", "name": "ci"}),
    )
    .await
    .ok();
    app.post(
        "/v1/api_keys",
        json!({"type": "WORKSPACE_MANAGE_API_KEYS", "name": "ci"}),
    )
    .await
    .err(400, "INVALID_REQUEST");
    app.post("/v1/api_keys", json!({"type": "PERSONAL", "name": "ci"}))
        .await
        .err(400, "INVALID_REQUEST");
    let prefix = prefix_of(in_other["api_key"].as_str().unwrap()).to_owned();
    app.delete(&format!("/v1/api_keys/{prefix}")).await.ok();
    app.post(&format!("/v1/teams/{other}/api_keys"), body)
        .await
        .ok();
    // team_id in the body of the untargeted route picks the team; unknown: 404.
    app.post(
        "/v1/api_keys",
        json!({"type": "WORKSPACE_INVOKE", "team_id": other, "name": "by-body"}),
    )
    .await
    .ok();
    app.post(
        "/v1/api_keys",
        json!({"type": "WORKSPACE_INVOKE", "team_id": "nosuchteam"}),
    )
    .await
    .err(404, "NOT_FOUND");
    let list = app.get("/v1/api_keys?type=WORKSPACE_INVOKE").await.ok();
    let by_body = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "by-body")
        .unwrap();
    assert_eq!(by_body["team_name"], "other");
    // Null optional fields are accepted (the SDK sends them).
    app.post(
        "/v1/api_keys",
        json!({"type": "WORKSPACE_INVOKE", "name": null, "model_ids": null, "team_id": null}),
    )
    .await
    .ok();
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    key_lifecycle_create_use_list_revoke,
    last_used_at_is_written_in_batches,
    listing_filters_and_owner,
    creation_validation_rules,
);
