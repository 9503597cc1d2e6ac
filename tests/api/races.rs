//! Writes racing the deletion of what they refer to answer 404 with our own
//! message, never a database's (finding 5), and a deleted user's keys, with
//! the keys it created, stop working at once (finding 8).
//!
//! In process, `TestApp::service` is a second service over the same store,
//! with its own caches: a second node that still holds a deleted team for up
//! to 500 ms. Grants taken before a deletion and used after it reach the
//! store's foreign keys deterministically. Across two real PostgreSQL nodes
//! the same races run over HTTP.

use crate::common::{Deadline, Resp, TestApp};
use crate::multinode::two_nodes;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use tessera::domain::access::{
    authorize_new_key, authorize_team, AdministerTeam, KeyHandover, KeyTarget,
};
use tessera::domain::key_token::NewKeyToken;
use tessera::domain::secret_name::SecretName;
use tessera::domain::secret_value::SecretValue;
use tessera::domain::types::{KeyType, TeamRole};
use tessera::service::keys::NewKey;
use tessera::service::{ServiceError, TeamRef};
use tessera::store::StoreError;
use tessera::wire::management::{TeamView, UserAdminInfo};

/// Database wording that must never reach a client.
const DATABASE_WORDS: &[&str] = &["constraint", "FOREIGN", "foreign key", "violates", "UNIQUE"];

#[track_caller]
fn assert_ours(message: &str) {
    for w in DATABASE_WORDS {
        assert!(
            !message.contains(w),
            "database text reached a client: {message}"
        );
    }
}

#[track_caller]
fn assert_not_found(e: ServiceError, want: &str) {
    match e {
        ServiceError::NotFound(m) => {
            assert_eq!(m, want);
            assert_ours(&m);
        }
        other => panic!("expected 404 {want:?}, got {other:?}"),
    }
}

/// A 200, or a 404 with our message.
#[track_caller]
fn ok_or_gone(r: &Resp) {
    match r.status.as_u16() {
        200 => {}
        404 => {
            assert_eq!(r.body["code"], "NOT_FOUND", "{}", r.text);
            assert_ours(r.body["message"].as_str().unwrap());
        }
        _ => panic!("expected 200 or 404, got {}: {}", r.status, r.text),
    }
}

fn key_record(created_by: &str) -> tessera::store::NewApiKey {
    let token = NewKeyToken::generate();
    tessera::store::NewApiKey {
        prefix: token.prefix.clone(),
        key_type: KeyType::Personal,
        name: Some("late".into()),
        secret_hash: token.secret_hash.clone(),
        model_ids: None,
        secret_names: None,
        created_by: Some(created_by.to_owned()),
        created_at: 0,
    }
}

async fn writes_racing_a_team_delete_answer_404(app: TestApp) {
    let team = app
        .post("/v1/teams", json!({"name": "doomed"}))
        .await
        .json::<TeamView>()
        .id;
    let user = app.new_user(json!({"email": "late@example.com"})).await;
    let other = &app.independent_service().await;
    let p = other
        .identity()
        .authenticate(Some(&format!("Bearer {}", app.admin_key)))
        .await
        .unwrap();
    // Authorized while the team exists (and cached by the other service).
    let record = app.store.find_team(&team).await.unwrap().unwrap();
    let access = authorize_team::<AdministerTeam>(&p, &record).unwrap();
    other
        .upsert_secret(
            &p,
            TeamRef::Id(&team),
            "warm",
            SecretValue::new("v".into()),
            false,
        )
        .await
        .unwrap();

    app.request(
        Method::DELETE,
        &format!("/v1/teams/{team}?cascade=true"),
        Some(&app.admin_key),
        None,
    )
    .await
    .ok();

    // The store: the team's foreign key fails; the answer is "team not found".
    let name = SecretName::parse("late").unwrap();
    let write = tessera::store::SealedWrite {
        canonical_name: name.canonical().to_owned(),
        name: name.as_str().to_owned(),
        secret_id: "x".repeat(16),
        exists: false,
        version_id: "v".repeat(16),
        kek_id: "k".repeat(16),
        ciphertext: vec![0u8; 64],
        now: 0,
        max_team_bytes: i64::MAX,
        history: Default::default(),
        audit: crate::conformance::event("secret.write"),
    };
    match app.store.upsert_secret(&access, write, 1_000).await {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "team not found"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let grant =
        authorize_new_key(&p, KeyType::WorkspaceManageAll, KeyTarget::Team(&record)).unwrap();
    let mut key = key_record(p.user_id().unwrap());
    key.key_type = KeyType::WorkspaceManageAll;
    match app
        .store
        .insert_api_key(&grant, key, 1_000, crate::conformance::event("x"))
        .await
    {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "team not found"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match app
        .store
        .set_member(
            &access,
            &user,
            TeamRole::Member,
            KeyHandover::Refuse,
            crate::conformance::event("x"),
        )
        .await
    {
        Err(StoreError::NotFound(m)) => assert_ours(&m),
        other => panic!("expected NotFound, got {other:?}"),
    }

    // The same through the other service (its team cache may still hold the
    // team, or not: either way a 404).
    let e = other
        .upsert_secret(
            &p,
            TeamRef::Id(&team),
            "late",
            SecretValue::new("v".into()),
            false,
        )
        .await
        .unwrap_err();
    assert_not_found(e, "team not found");
    let e = other
        .keys()
        .create_api_key(
            &p,
            Some(&team),
            NewKey {
                name: None,
                key_type: KeyType::WorkspaceManageAll,
                model_ids: None,
                team_id: None,
                secret_names: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::NotFound(_)), "{e:?}");
    let api: tessera::api::error::ApiError = e.into();
    assert_eq!(api.code.status(), 404);

    // Over HTTP, many writes in flight while the team is deleted.
    let team = app
        .post("/v1/teams", json!({"name": "busy"}))
        .await
        .json::<TeamView>()
        .id;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..48 {
        let (http, url, key, t) = (
            app.http.clone(),
            app.url.clone(),
            app.admin_key.clone(),
            team.clone(),
        );
        set.spawn(async move {
            let (path, body) = if i % 4 == 3 {
                (
                    format!("/v1/teams/{t}/api_keys"),
                    json!({"type": "WORKSPACE_INVOKE", "name": format!("k{i}")}),
                )
            } else {
                (
                    format!("/v1/teams/{t}/secrets"),
                    json!({"name": format!("s{i}"), "value": "v"}),
                )
            };
            crate::common::to_resp(
                http.post(format!("{url}{path}"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        });
        if i == 24 {
            app.request(
                Method::DELETE,
                &format!("/v1/teams/{team}?cascade=true"),
                Some(&app.admin_key),
                None,
            )
            .await
            .ok();
        }
    }
    while let Some(r) = set.join_next().await {
        ok_or_gone(&r.unwrap());
    }
}

/// Minting a personal key for a user deleted meanwhile: 404 "user not
/// found", not "a live API key with this name already exists".
async fn minting_a_key_for_a_user_being_deleted_answers_404(app: TestApp) {
    let user_id = app.new_user(json!({"email": "going@example.com"})).await;
    let other = &app.independent_service().await;
    let p = other
        .identity()
        .authenticate(Some(&format!("Bearer {}", app.admin_key)))
        .await
        .unwrap();
    let user = app.store.principal_user(&user_id).await.unwrap().unwrap();
    let grant =
        authorize_new_key(&p, KeyType::Personal, KeyTarget::Personal { owner: &user }).unwrap();
    app.delete(&format!("/v1/users/{user_id}")).await.ok();
    match app
        .store
        .insert_api_key(
            &grant,
            key_record(p.user_id().unwrap()),
            1_000,
            crate::conformance::event("x"),
        )
        .await
    {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "user not found"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    app.post(&format!("/v1/users/{user_id}/api_keys"), json!({}))
        .await
        .err(404, "NOT_FOUND");
}

/// Workspace keys created by a user are revoked with it, in the same
/// transaction, and refused at once on this node; keys others created stay,
/// and so does a personal key the user minted for someone else (it acts as
/// that someone).
async fn keys_created_by_a_deleted_user_are_revoked_with_it(app: TestApp) {
    let team = app
        .post("/v1/teams", json!({"name": "ml"}))
        .await
        .json::<TeamView>()
        .id;
    let uid = app.new_user(json!({"email": "ana@example.com"})).await;
    app.request(
        Method::PUT,
        &format!("/v1/teams/{team}/members/{uid}"),
        Some(&app.admin_key),
        Some(json!({"role": "ADMIN"})),
    )
    .await
    .ok();
    let personal = app.personal_key(&uid).await;
    let create = |key: String, body: serde_json::Value| {
        let path = format!("/v1/teams/{team}/api_keys");
        let app = &app;
        async move {
            app.as_key(&key, Method::POST, &path, Some(body))
                .await
                .json::<tessera::wire::management::NewApiKeyView>()
                .api_key
        }
    };
    // Ana's team key, and a key that team key created (also Ana's doing).
    let hers = create(personal.clone(), json!({"type": "WORKSPACE_MANAGE_ALL"})).await;
    let grandchild = create(hers.clone(), json!({"type": "WORKSPACE_INVOKE"})).await;
    // The admin's key for the same team.
    let admins = create(
        app.admin_key.clone(),
        json!({"type": "WORKSPACE_MANAGE_ALL"}),
    )
    .await;
    // Another org admin mints Bo a personal key, then is deleted: Bo's key
    // acts as Bo and stays.
    let bo = app.new_user(json!({"email": "bo@example.com"})).await;
    let minter = app
        .new_user(json!({"email": "cy@example.com", "role": "ADMIN"}))
        .await;
    let minter_key = app.personal_key(&minter).await;
    let bos = app
        .as_key(
            &minter_key,
            Method::POST,
            &format!("/v1/users/{bo}/api_keys"),
            Some(json!({})),
        )
        .await
        .json::<tessera::wire::management::NewApiKeyView>()
        .api_key;
    app.delete(&format!("/v1/users/{minter}")).await.ok();
    app.as_key(&bos, Method::GET, "/v1/users/me", None)
        .await
        .ok();
    app.as_key(&minter_key, Method::GET, "/v1/users/me", None)
        .await
        .err(401, "UNAUTHORIZED");
    let secret = |key: String| {
        let app = &app;
        async move {
            app.as_key(
                &key,
                Method::POST,
                "/v1/secrets",
                Some(json!({"name": "after", "value": "v"})),
            )
            .await
        }
    };
    secret(hers.clone()).await.ok();
    app.as_key(&grandchild, Method::GET, "/v1/teams", None)
        .await
        .err(403, "FORBIDDEN");

    app.delete(&format!("/v1/users/{uid}?revoke_keys=true"))
        .await
        .ok();

    // Immediately refused on this node.
    secret(hers.clone()).await.err(401, "UNAUTHORIZED");
    app.as_key(&grandchild, Method::GET, "/v1/teams", None)
        .await
        .err(401, "UNAUTHORIZED");
    app.as_key(&personal, Method::GET, "/v1/teams", None)
        .await
        .err(401, "UNAUTHORIZED");
    secret(admins.clone()).await.ok();
    let listed = app.get("/v1/api_keys").await.ok();
    let prefixes: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["prefix"].as_str().unwrap())
        .collect();
    let prefix = |k: &str| k.split('.').next().unwrap().to_owned();
    assert!(prefixes.contains(&prefix(&admins).as_str()));
    for gone in [&hers, &grandchild, &personal] {
        assert!(!prefixes.contains(&prefix(gone).as_str()), "{listed}");
    }
}

/// A user deleted while creating a key: the key is not created.
async fn a_key_created_by_a_user_being_deleted_is_refused(app: TestApp) {
    let team = app.default_team_id().await;
    let uid = app
        .new_user(json!({"email": "bo@example.com", "role": "ADMIN"}))
        .await;
    let key = app.personal_key(&uid).await;
    let other = &app.independent_service().await;
    let stale = other
        .identity()
        .authenticate(Some(&format!("Bearer {key}")))
        .await
        .unwrap();
    app.delete(&format!("/v1/users/{uid}")).await.ok();
    let e = other
        .keys()
        .create_api_key(
            &stale,
            Some(&team),
            NewKey {
                name: None,
                key_type: KeyType::WorkspaceManageAll,
                model_ids: None,
                team_id: None,
                secret_names: None,
            },
        )
        .await
        .unwrap_err();
    assert_not_found(e, "the user creating this key no longer exists");
    let listed = app.get("/v1/api_keys").await.ok();
    assert_eq!(
        listed["keys"].as_array().unwrap().len(),
        1,
        "only the admin's key: {listed}"
    );
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    writes_racing_a_team_delete_answer_404,
    minting_a_key_for_a_user_being_deleted_answers_404,
    keys_created_by_a_deleted_user_are_revoked_with_it,
    a_key_created_by_a_user_being_deleted_is_refused,
);

/// Two PostgreSQL nodes: node 1 still holds a team in its cache when node 0
/// deletes it with its secrets; node 1's writes to it answer 404 (they
/// answered 500), and writes in flight on both nodes answer 200 or 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_team_delete_on_another_node_answer_404() {
    let Some(c) = two_nodes("races::writes_racing_a_team_delete_on_another_node_answer_404").await
    else {
        return;
    };
    let team = c
        .post(0, "/v1/teams", json!({"name": "doomed"}))
        .await
        .json::<TeamView>()
        .id;
    let uid = c
        .post(0, "/v1/users", json!({"email": "late@example.com"}))
        .await
        .json::<UserAdminInfo>()
        .user_id;
    let secrets = format!("/v1/teams/{team}/secrets");
    c.post(1, &secrets, json!({"name": "warm", "value": "v"}))
        .await
        .ok();
    let deleted = Instant::now();
    c.req(
        0,
        Method::DELETE,
        &format!("/v1/teams/{team}?cascade=true"),
        &c.admin_key,
        None,
    )
    .await
    .ok();
    let r = c
        .post(1, &secrets, json!({"name": "late", "value": "v"}))
        .await;
    let within_cache = deleted.elapsed() < Duration::from_millis(500);
    let m = r.err(404, "NOT_FOUND");
    assert_ours(&m);
    let r = c
        .post(
            1,
            &format!("/v1/teams/{team}/api_keys"),
            json!({"type": "WORKSPACE_INVOKE"}),
        )
        .await;
    assert_ours(&r.err(404, "NOT_FOUND"));
    let r = c
        .req(
            1,
            Method::PUT,
            &format!("/v1/teams/{team}/members/{uid}"),
            &c.admin_key,
            Some(json!({"role": "MEMBER"})),
        )
        .await;
    assert_ours(&r.err(404, "NOT_FOUND"));
    eprintln!(
        "races: node 1 wrote {:?} after the delete (cache hit: {within_cache})",
        deleted.elapsed()
    );

    // Many writes in flight on both nodes while node 0 deletes the team.
    let team = c
        .post(0, "/v1/teams", json!({"name": "busy"}))
        .await
        .json::<TeamView>()
        .id;
    let c = std::sync::Arc::new(c);
    for node in 0..2 {
        c.post(
            node,
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": "warm", "value": "v"}),
        )
        .await
        .ok();
    }
    let mut set = tokio::task::JoinSet::new();
    for i in 0..48 {
        let (node, path) = (c.clone(), format!("/v1/teams/{team}/secrets"));
        set.spawn(async move {
            node.post(i % 2, &path, json!({"name": format!("s{i}"), "value": "v"}))
                .await
        });
        if i == 24 {
            c.req(
                0,
                Method::DELETE,
                &format!("/v1/teams/{team}?cascade=true"),
                &c.admin_key,
                None,
            )
            .await
            .ok();
        }
    }
    while let Some(r) = set.join_next().await {
        ok_or_gone(&r.unwrap());
    }
}

/// A key created by a user is refused on every node once the user is
/// deleted: at once on the node that deleted it, within a second on the
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_deleted_user_are_refused_on_every_node() {
    let Some(c) = two_nodes("races::keys_of_a_deleted_user_are_refused_on_every_node").await else {
        return;
    };
    let uid = c
        .post(
            0,
            "/v1/users",
            json!({"email": "ana@example.com", "role": "ADMIN"}),
        )
        .await
        .json::<UserAdminInfo>()
        .user_id;
    let personal = c
        .post(0, &format!("/v1/users/{uid}/api_keys"), json!({}))
        .await
        .json::<tessera::wire::management::NewApiKeyView>()
        .api_key;
    let hers = c
        .req(
            1,
            Method::POST,
            "/v1/api_keys",
            &personal,
            Some(json!({"type": "WORKSPACE_MANAGE_ALL"})),
        )
        .await
        .json::<tessera::wire::management::NewApiKeyView>()
        .api_key;
    let write = |node: usize| {
        c.req(
            node,
            Method::POST,
            "/v1/secrets",
            &hers,
            Some(json!({"name": "by_ana", "value": "v"})),
        )
    };
    write(0).await.ok();
    write(1).await.ok();
    c.req(
        0,
        Method::DELETE,
        &format!("/v1/users/{uid}?revoke_keys=true"),
        &c.admin_key,
        None,
    )
    .await
    .ok();
    write(0).await.err(401, "UNAUTHORIZED");
    // The deletion reaches every node within 1 s.
    let deadline = Deadline::within(
        "node 1 refusing the deleted user's key",
        Duration::from_secs(1),
    );
    loop {
        let r = write(1).await;
        if r.status == 401 {
            break;
        }
        r.ok();
        deadline.tick().await;
    }
}
