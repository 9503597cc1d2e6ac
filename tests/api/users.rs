//! Users: the directory (pagination, email filter) and management.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::json;
use tessera::wire::management::{UserView, UsersView};

async fn user_directory_pages(app: TestApp) {
    for i in 0..7 {
        app.post(
            "/v1/users",
            json!({"email": format!("user{i}@example.com"), "name": format!("User {i}")}),
        )
        .await
        .ok();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/users?limit=3&cursor={c}"),
            None => "/v1/users?limit=3".to_owned(),
        };
        let page = app.get(&path).await.ok();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|u| u["user_id"].as_str().unwrap().to_owned()),
        );
        if page["pagination"]["has_more"] == true {
            cursor = Some(page["pagination"]["cursor"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(page["pagination"]["cursor"], json!(null));
            break;
        }
    }
    assert_eq!(seen.len(), 8, "7 users + the admin");
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 8);
    let one = app.get("/v1/users?email=user3%40example.com").await.ok();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert_eq!(one["items"][0]["name"], "User 3");
    assert_eq!(one["items"][0]["workspace_name"], "acme");
    let id = one["items"][0]["user_id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/users/{id}"))
            .await
            .json::<UserView>()
            .email
            .as_deref(),
        Some("user3@example.com")
    );
    for bad in ["limit=0", "limit=1001", "limit=x", "cursor=%2F%2F"] {
        app.get(&format!("/v1/users?{bad}"))
            .await
            .err(400, "INVALID_REQUEST");
    }
    assert_eq!(
        app.get("/v1/users?limit=1000")
            .await
            .json::<UsersView>()
            .items
            .len(),
        8
    );
    app.get("/v1/users/nosuchuser").await.err(404, "NOT_FOUND");
}

async fn user_management(app: TestApp) {
    let u = app
        .post(
            "/v1/users",
            json!({"email": "ops@example.com", "role": "ADMIN"}),
        )
        .await
        .ok();
    assert_eq!(u["role"], "ADMIN");
    let id = u["user_id"].as_str().unwrap().to_owned();
    app.post("/v1/users", json!({"email": "ops@example.com"}))
        .await
        .err(409, "CONFLICT");
    app.post("/v1/users", json!({"email": "not-an-email"}))
        .await
        .err(400, "INVALID_REQUEST");
    app.post(
        "/v1/users",
        json!({"email": "x@example.com", "role": "OWNER"}),
    )
    .await
    .err(400, "INVALID_REQUEST");
    app.post("/v1/users", json!({"name": "no email"}))
        .await
        .err(400, "INVALID_REQUEST");
    // The minted key works and acts as that user; the new user is in the default team.
    let key = app
        .post(
            &format!("/v1/users/{id}/api_keys"),
            json!({"name": "first"}),
        )
        .await
        .json::<tessera::wire::management::NewApiKeyView>()
        .api_key;
    let me = app
        .as_key(&key, Method::GET, "/v1/users/me", None)
        .await
        .ok();
    assert_eq!(me["user_id"], id.as_str());
    app.as_key(
        &key,
        Method::POST,
        "/v1/secrets",
        Some(json!({"name": "from_ops", "value": "v"})),
    )
    .await
    .ok();
    // Deleting the user revokes its personal keys at once.
    let me_admin = app.get("/v1/users/me").await.ok();
    let admin_id = me_admin["user_id"].as_str().unwrap();
    app.delete(&format!("/v1/users/{admin_id}"))
        .await
        .err(400, "INVALID_REQUEST");
    assert_eq!(
        app.delete(&format!("/v1/users/{id}")).await.ok(),
        json!({"user_id": id})
    );
    app.as_key(&key, Method::GET, "/v1/users/me", None)
        .await
        .err(401, "UNAUTHORIZED");
    app.delete(&format!("/v1/users/{id}"))
        .await
        .err(404, "NOT_FOUND");
}

crate::on_both_engines!(crate::common::TestApp::start => user_directory_pages, user_management);
