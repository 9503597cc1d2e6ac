//! No key outlives the authority of the person who answers for it (issue 24,
//! finding 7): a demotion, a removal from a team or the deletion of a user
//! that would leave keys behind is refused with 409 listing them, unless
//! the request revokes them or hands them over to someone who may issue
//! them; on both engines, over HTTP, with the audit events, and on a second
//! PostgreSQL node within a second.

use crate::audit::all_events;
use crate::common::{Deadline, Resp, TestApp};
use crate::multinode::two_nodes;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn id(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap().to_owned()
}

/// The prefixes of a 409's `keys`, sorted.
fn listed(r: Resp) -> Vec<String> {
    let mut keys: Vec<String> = r
        .body
        .get("keys")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no keys listed: {}", r.body))
        .iter()
        .map(|k| id(k, "prefix"))
        .collect();
    keys.sort();
    keys
}

fn prefix(key: &str) -> String {
    key.split('.').next().unwrap().to_owned()
}

async fn member(app: &TestApp, team: &str, user: &str, role: &str, query: &str) -> Resp {
    app.request(
        Method::PUT,
        &format!("/v1/teams/{team}/members/{user}{query}"),
        Some(&app.admin_key),
        Some(json!({ "role": role })),
    )
    .await
}

/// Whether `key` still works: a read key reads values, a management key
/// lists teams.
async fn works(app: &TestApp, key: &str, reader: bool) -> bool {
    let path = if reader {
        "/runtime/v1/secrets"
    } else {
        "/v1/teams"
    };
    let r = app.as_key(key, Method::GET, path, None).await;
    match r.status.as_u16() {
        200 => true,
        401 => false,
        other => panic!("{path}: {other} {}", r.body),
    }
}

async fn answered_by(app: &TestApp, key: &str) -> Option<String> {
    let keys = app.get("/v1/api_keys").await.ok();
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix(key).as_str())
        .map(|k| k["answered_by"].as_str().unwrap_or("").to_owned())
}

async fn demotion_removal_and_deletion_leave_no_key_beyond_its_authority(app: TestApp) {
    let team = id(
        &app.post("/v1/teams", json!({"name": "ml"})).await.ok(),
        "id",
    );
    let ana = app.new_user(json!({"email": "ana@example.com"})).await;
    let bob = app.new_user(json!({"email": "bob@example.com"})).await;
    member(&app, &team, &ana, "ADMIN", "").await.ok();
    member(&app, &team, &bob, "MEMBER", "").await.ok();
    let ana_key = app.personal_key(&ana).await;
    let create = |kind: &'static str| {
        let (app, key, team) = (&app, ana_key.clone(), team.clone());
        async move {
            let r = app
                .as_key(
                    &key,
                    Method::POST,
                    &format!("/v1/teams/{team}/api_keys"),
                    Some(json!({ "type": kind })),
                )
                .await;
            id(&r.ok(), "api_key")
        }
    };
    let reader = create("WORKSPACE_READ_SECRETS").await;
    let manager = create("WORKSPACE_MANAGE_ALL").await;
    let mut both = vec![prefix(&reader), prefix(&manager)];
    both.sort();
    assert_eq!(
        answered_by(&app, &reader).await.as_deref(),
        Some(ana.as_str())
    );

    // Demoted without saying what to do with her keys: refused, listing
    // both; nothing changed.
    let r = member(&app, &team, &ana, "MEMBER", "").await;
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains(&prefix(&reader)),
        "{}",
        r.body
    );
    assert_eq!(listed(r), both);
    assert!(works(&app, &reader, true).await && works(&app, &manager, false).await);
    let members = app.get(&format!("/v1/teams/{team}/members")).await.ok();
    let ana_row = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == ana.as_str())
        .cloned()
        .unwrap();
    assert_eq!(ana_row["role"], "ADMIN");
    // Removal from the team and deletion of the user: refused alike.
    let path = format!("/v1/teams/{team}/members/{ana}");
    assert_eq!(listed(app.delete(&path).await), both);
    let r = app.delete(&format!("/v1/users/{ana}")).await;
    assert_eq!(r.status.as_u16(), 409);
    assert_eq!(listed(r), both);

    // A successor who may not issue them (a plain member), one who does not
    // exist, the user herself, and both choices at once: refused.
    let r = member(
        &app,
        &team,
        &ana,
        "MEMBER",
        &format!("?transfer_keys_to={bob}"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.body);
    assert_eq!(listed(r), both);
    member(&app, &team, &ana, "MEMBER", "?transfer_keys_to=nosuchuser")
        .await
        .err(404, "NOT_FOUND");
    member(
        &app,
        &team,
        &ana,
        "MEMBER",
        &format!("?transfer_keys_to={ana}"),
    )
    .await
    .err(400, "INVALID_REQUEST");
    member(
        &app,
        &team,
        &ana,
        "MEMBER",
        &format!("?revoke_keys=true&transfer_keys_to={bob}"),
    )
    .await
    .err(400, "INVALID_REQUEST");
    assert!(works(&app, &reader, true).await);

    // Bob, made the team's admin, answers for them: she is demoted, they
    // keep working, and she can no longer issue one.
    member(&app, &team, &bob, "ADMIN", "").await.ok();
    member(
        &app,
        &team,
        &ana,
        "MEMBER",
        &format!("?transfer_keys_to={bob}"),
    )
    .await
    .ok();
    assert!(works(&app, &reader, true).await && works(&app, &manager, false).await);
    assert_eq!(
        answered_by(&app, &reader).await.as_deref(),
        Some(bob.as_str())
    );
    app.as_key(
        &ana_key,
        Method::POST,
        &format!("/v1/teams/{team}/api_keys"),
        Some(json!({"type": "WORKSPACE_READ_SECRETS"})),
    )
    .await
    .err(403, "FORBIDDEN");

    // Bob leaves the team, revoking them: refused at once.
    app.delete(&format!("/v1/teams/{team}/members/{bob}?revoke_keys=true"))
        .await
        .ok();
    assert!(!works(&app, &reader, true).await && !works(&app, &manager, false).await);
    assert_eq!(answered_by(&app, &reader).await, None);

    // A team admin who is deleted: refused until the request revokes.
    let carol = app.new_user(json!({"email": "carol@example.com"})).await;
    member(&app, &team, &carol, "ADMIN", "").await.ok();
    let carol_key = app.personal_key(&carol).await;
    let invoke = app
        .as_key(
            &carol_key,
            Method::POST,
            &format!("/v1/teams/{team}/api_keys"),
            Some(json!({"type": "WORKSPACE_MANAGE_ALL"})),
        )
        .await;
    let carols = id(&invoke.ok(), "api_key");
    assert_eq!(
        listed(app.delete(&format!("/v1/users/{carol}")).await),
        vec![prefix(&carols)]
    );
    assert!(works(&app, &carols, false).await);
    app.delete(&format!("/v1/users/{carol}?revoke_keys=true"))
        .await
        .ok();
    assert!(!works(&app, &carols, false).await && !works(&app, &carol_key, false).await);

    // The log says what happened to each key, and why.
    let events = all_events(&app).await;
    let of = |action: &str, key: &str| {
        events
            .iter()
            .filter(|e| e.event.action == action && e.event.target_id.as_deref() == Some(key))
            .map(|e| e.event.detail.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    for key in [&reader, &manager] {
        let handover = of("api_key.handover", &prefix(key));
        assert_eq!(handover.len(), 1, "{handover:?}");
        assert!(handover[0].contains(&bob) && handover[0].contains("member.set"));
        let revoked = of("api_key.revoke", &prefix(key));
        assert_eq!(revoked.len(), 1, "{revoked:?}");
        assert!(revoked[0].contains("member.remove"), "{revoked:?}");
    }
    let revoked = of("api_key.revoke", &prefix(&carols));
    assert!(revoked.len() == 1 && revoked[0].contains("user.delete"));
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    demotion_removal_and_deletion_leave_no_key_beyond_its_authority,
);

/// A read key revoked by its answerer's demotion on one node is refused on
/// the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_revokes_keys_on_every_node_within_a_second() {
    let Some(c) =
        two_nodes("authority::a_demotion_revokes_keys_on_every_node_within_a_second").await
    else {
        return;
    };
    let team = id(
        &c.post(0, "/v1/teams", json!({"name": "ml"})).await.ok(),
        "id",
    );
    let ana = id(
        &c.post(0, "/v1/users", json!({"email": "ana@example.com"}))
            .await
            .ok(),
        "user_id",
    );
    let members = format!("/v1/teams/{team}/members/{ana}");
    c.req(
        0,
        Method::PUT,
        &members,
        &c.admin_key,
        Some(json!({"role": "ADMIN"})),
    )
    .await
    .ok();
    let personal = id(
        &c.post(0, &format!("/v1/users/{ana}/api_keys"), json!({}))
            .await
            .ok(),
        "api_key",
    );
    let reader = id(
        &c.req(
            1,
            Method::POST,
            &format!("/v1/teams/{team}/api_keys"),
            &personal,
            Some(json!({"type": "WORKSPACE_READ_SECRETS"})),
        )
        .await
        .ok(),
        "api_key",
    );
    // Node 1 knows the key (and has it cached) before the demotion.
    c.req(1, Method::GET, "/runtime/v1/secrets", &reader, None)
        .await
        .ok();
    c.req(
        0,
        Method::PUT,
        &format!("{members}?revoke_keys=true"),
        &c.admin_key,
        Some(json!({"role": "MEMBER"})),
    )
    .await
    .ok();
    // The revocation reaches every node within 1 s.
    let deadline = Deadline::within("node 1 refusing the revoked key", Duration::from_secs(1));
    c.req(0, Method::GET, "/runtime/v1/secrets", &reader, None)
        .await
        .err(401, "UNAUTHORIZED");
    loop {
        let r = c
            .req(1, Method::GET, "/runtime/v1/secrets", &reader, None)
            .await;
        if r.status == 401 {
            break;
        }
        r.ok();
        deadline.tick().await;
    }
}
