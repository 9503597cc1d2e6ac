//! The permission matrix: every key type (and personal keys of an org
//! admin, a team admin, a team member and a user outside the team) × every
//! route × own team / other team of the same organization / team of another
//! organization. The table below is the specification; the test fails on
//! any cell that differs and prints every differing cell.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use tessera::wire::management::TeamsView;

/// Columns: the callers. Rows: a route and which team (or key, or user) it
/// addresses: `own` = team A (the team the team-bound keys belong to and the
/// team admin/member are in), `other` = team B of the same organization,
/// `foreign` = the default team of another organization, `-` = no target.
const MATRIX: &str = r#"
#method path                              target   admin tadmin tmember outsider m_all m_keys invoke metrics routes read
GET    /v1/teams/{T}                      own      200   200    200     403      200   200    403    403     403   403
GET    /v1/teams/{T}                      other    200   403    403     403      403   200    403    403     403   403
GET    /v1/teams/{T}                      foreign  404   404    404     404      404   404    404    404     404   404
GET    /v1/teams/{T}/secrets              own      200   200    200     403      200   403    403    403     403   403
GET    /v1/teams/{T}/secrets              other    200   403    403     403      403   403    403    403     403   403
GET    /v1/teams/{T}/secrets              foreign  404   404    404     404      404   404    404    404     404   404
POST   /v1/teams/{T}/secrets              own      200   200    200     403      200   403    403    403     403   403
POST   /v1/teams/{T}/secrets              other    200   403    403     403      403   403    403    403     403   403
POST   /v1/teams/{T}/secrets              foreign  404   404    404     404      404   404    404    404     404   404
DELETE /v1/teams/{T}/secrets/probe        own      200   200    200     403      200   403    403    403     403   403
DELETE /v1/teams/{T}/secrets/probe        other    200   403    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}/secrets/probe        foreign  404   404    404     404      404   404    404    404     404   404
POST   /v1/teams/{T}/api_keys             own      200   200    403     403      200   200    403    403     403   403
POST   /v1/teams/{T}/api_keys             other    200   403    403     403      403   200    403    403     403   403
POST   /v1/teams/{T}/api_keys             foreign  404   404    404     404      404   404    404    404     404   404
PATCH  /v1/teams/{T}                      own      200   200    403     403      403   403    403    403     403   403
PATCH  /v1/teams/{T}                      other    200   403    403     403      403   403    403    403     403   403
PATCH  /v1/teams/{T}                      foreign  404   404    404     404      404   404    404    404     404   404
DELETE /v1/teams/{T}                      own      409   403    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}                      other    409   403    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}                      foreign  404   404    404     404      404   404    404    404     404   404
GET    /v1/teams/{T}/members              own      200   200    200     403      200   200    403    403     403   403
GET    /v1/teams/{T}/members              other    200   403    403     403      403   200    403    403     403   403
GET    /v1/teams/{T}/members              foreign  404   404    404     404      404   404    404    404     404   404
PUT    /v1/teams/{T}/members/{U}          own      200   200    403     403      403   403    403    403     403   403
PUT    /v1/teams/{T}/members/{U}          other    200   403    403     403      403   403    403    403     403   403
PUT    /v1/teams/{T}/members/{U}          foreign  404   404    404     404      404   404    404    404     404   404
DELETE /v1/teams/{T}/members/{U}          own      200   200    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}/members/{U}          other    200   403    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}/members/{U}          foreign  404   404    404     404      404   404    404    404     404   404
DELETE /v1/api_keys/{K}                   own      200   200    403     403      200   200    403    403     403   403
DELETE /v1/api_keys/{K}                   other    200   403    403     403      403   200    403    403     403   403
DELETE /v1/api_keys/{K}                   foreign  404   404    404     404      404   404    404    404     404   404
GET    /v1/users/{U}                      own      200   200    200     200      200   200    403    403     403   403
GET    /v1/users/{U}                      foreign  404   404    404     404      404   404    403    403     403   403
POST   /v1/users/{U}/api_keys             own      200   403    403     403      403   403    403    403     403   403
POST   /v1/users/{U}/api_keys             foreign  404   404    404     404      404   404    404    404     404   404
DELETE /v1/users/{V}                      own      200   403    403     403      403   403    403    403     403   403
DELETE /v1/users/{V}                      foreign  404   403    403     403      403   403    403    403     403   403
GET    /v1/teams/{T}/secrets/seed/versions       own      200   200    200     403      200   403    403    403     403   403
GET    /v1/teams/{T}/secrets/seed/versions       other    200   403    403     403      403   403    403    403     403   403
GET    /v1/teams/{T}/secrets/seed/versions       foreign  404   404    404     404      404   404    404    404     404   404
GET    /v1/teams/{T}/secrets/seed/consumers      own      200   200    200     403      200   403    403    403     403   403
GET    /v1/teams/{T}/secrets/seed/consumers      other    200   403    403     403      403   403    403    403     403   403
GET    /v1/teams/{T}/secrets/seed/consumers      foreign  404   404    404     404      404   404    404    404     404   404
POST   /v1/teams/{T}/secrets/{S}/versions/1/restore own   200   200    403     403      403   403    403    403     403   403
POST   /v1/teams/{T}/secrets/{S}/versions/1/restore other 200   403    403     403      403   403    403    403     403   403
POST   /v1/teams/{T}/secrets/{S}/versions/1/restore foreign 404 404    404     404      404   404    404    404     404   404
DELETE /v1/teams/{T}/secrets/{S}/versions/1      own      200   200    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}/secrets/{S}/versions/1      other    200   403    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}/secrets/{S}/versions/1      foreign  404   404    404     404      404   404    404    404     404   404
GET    /v1/teams/{T}/deleted_secrets             own      200   200    200     403      200   403    403    403     403   403
GET    /v1/teams/{T}/deleted_secrets             other    200   403    403     403      403   403    403    403     403   403
GET    /v1/teams/{T}/deleted_secrets             foreign  404   404    404     404      404   404    404    404     404   404
POST   /v1/teams/{T}/deleted_secrets/{D}/restore own      200   200    403     403      403   403    403    403     403   403
POST   /v1/teams/{T}/deleted_secrets/{D}/restore other    200   403    403     403      403   403    403    403     403   403
POST   /v1/teams/{T}/deleted_secrets/{D}/restore foreign  404   404    404     404      404   404    404    404     404   404
DELETE /v1/teams/{T}/deleted_secrets/{D}         own      200   200    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}/deleted_secrets/{D}         other    200   403    403     403      403   403    403    403     403   403
DELETE /v1/teams/{T}/deleted_secrets/{D}         foreign  404   404    404     404      404   404    404    404     404   404
GET    /v1/secrets                        -        200   200    200     200      200   403    403    403     403   403
POST   /v1/secrets                        -        200   200    200     200      200   403    403    403     403   403
DELETE /v1/secrets/probe2                 -        200   200    200     200      200   403    403    403     403   403
GET    /v1/teams                          -        200   200    200     200      200   200    403    403     403   403
POST   /v1/teams                          -        200   403    403     403      403   403    403    403     403   403
GET    /v1/users/me                       -        200   200    200     200      200   200    403    403     403   403
GET    /v1/organizations/me               -        200   200    200     200      200   200    403    403     403   403
GET    /v1/api_keys                       -        200   200    200     200      200   200    403    403     403   403
POST   /v1/api_keys#personal              -        200   200    200     200      403   403    403    403     403   403
POST   /v1/api_keys#manage_keys           -        200   403    403     403      403   200    403    403     403   403
GET    /v1/users                          -        200   200    200     200      200   200    403    403     403   403
POST   /v1/users                          -        200   403    403     403      403   403    403    403     403   403
GET    /v1/audit_events                   -        200   403    403     403      403   403    403    403     403   403
GET    /runtime/v1/secrets                -        403   403    403     403      403   403    403    403     403    200
GET    /runtime/v1/secrets/seed           -        403   403    403     403      403   403    403    403     403    200
POST   /v1/teams/{T}/api_keys#WORKSPACE_MANAGE_ALL    own      200   200    403     403      200   403    403    403     403    403
POST   /v1/teams/{T}/api_keys#WORKSPACE_MANAGE_ALL    other    200   403    403     403      403   403    403    403     403    403
POST   /v1/teams/{T}/api_keys#WORKSPACE_MANAGE_ALL    foreign  404   404    404     404      404   404    404    404     404    404
POST   /v1/teams/{T}/api_keys#WORKSPACE_EXPORT_METRICS own     200   200    403     403      200   200    403    403     403    403
POST   /v1/teams/{T}/api_keys#WORKSPACE_EXPORT_METRICS other   200   403    403     403      403   200    403    403     403    403
POST   /v1/teams/{T}/api_keys#ROUTES      own      200   200    403     403      200   200    403    403     403    403
POST   /v1/teams/{T}/api_keys#ROUTES      other    200   403    403     403      403   200    403    403     403    403
POST   /v1/teams/{T}/api_keys#WORKSPACE_READ_SECRETS  own      200   200    403     403      403   403    403    403     403    403
POST   /v1/teams/{T}/api_keys#WORKSPACE_READ_SECRETS  other    200   403    403     403      403   403    403    403     403    403
POST   /v1/teams/{T}/api_keys#WORKSPACE_READ_SECRETS  foreign  404   404    404     404      404   404    404    404     404    404
POST   /v1/api_keys#read_secrets_own_team -        200   200    403     403      403   403    403    403     403    403
DELETE /v1/api_keys/{K:WORKSPACE_MANAGE_ALL}   own      200   200    403     403      200   403    403    403     403    403
DELETE /v1/api_keys/{K:WORKSPACE_MANAGE_ALL}   other    200   403    403     403      403   403    403    403     403    403
DELETE /v1/api_keys/{K:WORKSPACE_MANAGE_ALL}   foreign  404   404    404     404      404   404    404    404     404    404
DELETE /v1/api_keys/{K:ROUTES}             own      200   200    403     403      200   200    403    403     403    403
DELETE /v1/api_keys/{K:ROUTES}             other    200   403    403     403      403   200    403    403     403    403
DELETE /v1/api_keys/{K:WORKSPACE_READ_SECRETS} own      200   200    403     403      403   403    403    403     403    403
DELETE /v1/api_keys/{K:WORKSPACE_READ_SECRETS} other    200   403    403     403      403   403    403    403     403    403
DELETE /v1/api_keys/{K:WORKSPACE_READ_SECRETS} foreign  404   404    404     404      404   404    404    404     404    404
DELETE /v1/api_keys/{P:admin}              own      200   403    403     403      403   403    403    403     403    403
DELETE /v1/api_keys/{P:member}             own      200   403    403     403      403   403    403    403     403    403
DELETE /v1/api_keys/{P:admin}              foreign  404   404    404     404      404   404    404    404     404    404
"#;

const CALLERS: [&str; 10] = [
    "admin", "tadmin", "tmember", "outsider", "m_all", "m_keys", "invoke", "metrics", "routes",
    "read",
];

struct World {
    keys: HashMap<&'static str, String>,
    team: HashMap<&'static str, String>,
    /// A user of each organization that the matrix may add to teams or mint keys for.
    bystander: HashMap<&'static str, String>,
    foreign_admin: String,
}

fn rand(tag: &str) -> String {
    format!("{tag}-{}", tessera::domain::ids::random_base62(8))
}

async fn post_ok(app: &TestApp, key: &str, path: &str, body: Value) -> Value {
    app.as_key(key, Method::POST, path, Some(body)).await.ok()
}

async fn new_user(app: &TestApp, key: &str) -> String {
    let u = post_ok(
        app,
        key,
        "/v1/users",
        json!({"email": format!("{}@example.com", rand("u"))}),
    )
    .await;
    u["user_id"].as_str().unwrap().to_owned()
}

async fn build_world(app: &TestApp) -> World {
    let admin = app.admin_key.clone();
    let a = post_ok(app, &admin, "/v1/teams", json!({"name": "alpha"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = post_ok(app, &admin, "/v1/teams", json!({"name": "beta"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign_admin = app.new_org("globex").await;
    let x = app
        .as_key(&foreign_admin, Method::GET, "/v1/teams", None)
        .await
        .json::<TeamsView>()
        .teams[0]
        .id
        .clone();
    let mut keys = HashMap::new();
    keys.insert("admin", admin.clone());
    for (who, role) in [
        ("tadmin", Some("ADMIN")),
        ("tmember", Some("MEMBER")),
        ("outsider", None),
    ] {
        let id = new_user(app, &admin).await;
        if let Some(role) = role {
            app.as_key(
                &admin,
                Method::PUT,
                &format!("/v1/teams/{a}/members/{id}"),
                Some(json!({"role": role})),
            )
            .await
            .ok();
        }
        let k = post_ok(
            app,
            &admin,
            &format!("/v1/users/{id}/api_keys"),
            json!({"name": who}),
        )
        .await;
        keys.insert(who, k["api_key"].as_str().unwrap().to_owned());
    }
    for (who, ty) in [
        ("m_all", "WORKSPACE_MANAGE_ALL"),
        ("invoke", "WORKSPACE_INVOKE"),
        ("metrics", "WORKSPACE_EXPORT_METRICS"),
        ("routes", "ROUTES"),
        ("read", "WORKSPACE_READ_SECRETS"),
    ] {
        let k = post_ok(
            app,
            &admin,
            &format!("/v1/teams/{a}/api_keys"),
            json!({"type": ty, "name": who}),
        )
        .await;
        keys.insert(who, k["api_key"].as_str().unwrap().to_owned());
    }
    let k = post_ok(
        app,
        &admin,
        "/v1/api_keys",
        json!({"type": "WORKSPACE_MANAGE_API_KEYS", "name": "m_keys"}),
    )
    .await;
    keys.insert("m_keys", k["api_key"].as_str().unwrap().to_owned());
    // Teams hold a secret each, so deleting them without cascade is a 409.
    for t in [&a, &b] {
        post_ok(
            app,
            &admin,
            &format!("/v1/teams/{t}/secrets"),
            json!({"name": "seed", "value": "s"}),
        )
        .await;
    }
    post_ok(
        app,
        &foreign_admin,
        &format!("/v1/teams/{x}/secrets"),
        json!({"name": "seed", "value": "s"}),
    )
    .await;
    let mut bystander = HashMap::new();
    bystander.insert("own", new_user(app, &admin).await);
    bystander.insert("foreign", new_user(app, &foreign_admin).await);
    let team = HashMap::from([("own", a), ("other", b), ("foreign", x)]);
    World {
        keys,
        team,
        bystander,
        foreign_admin,
    }
}

/// Puts the world in the state a cell needs and returns the concrete path.
async fn prepare(app: &TestApp, w: &World, path: &str, target: &str) -> String {
    let org_admin = if target == "foreign" {
        &w.foreign_admin
    } else {
        &app.admin_key
    };
    let team = w.team.get(target).cloned().unwrap_or_default();
    let user_side = if target == "foreign" {
        "foreign"
    } else {
        "own"
    };
    let mut concrete = path
        .replace("{T}", &team)
        .replace("{U}", &w.bystander[user_side]);
    if path.ends_with("/secrets/probe") {
        post_ok(
            app,
            org_admin,
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": "probe", "value": "p"}),
        )
        .await;
    }
    if path.contains("{S}") || path.contains("{D}") {
        // A secret with two versions ({S}), or one deleted since ({D}).
        let name = rand("hist");
        for v in ["one", "two"] {
            post_ok(
                app,
                org_admin,
                &format!("/v1/teams/{team}/secrets"),
                json!({"name": name, "value": v}),
            )
            .await;
        }
        if path.contains("{D}") {
            app.as_key(
                org_admin,
                Method::DELETE,
                &format!("/v1/teams/{team}/secrets/{name}"),
                None,
            )
            .await
            .ok();
        }
        concrete = concrete.replace("{S}", &name).replace("{D}", &name);
    }
    if path == "/v1/secrets/probe2" {
        // Personal keys act on the default team, team-bound keys on team A.
        post_ok(
            app,
            &app.admin_key,
            "/v1/secrets",
            json!({"name": "probe2", "value": "p"}),
        )
        .await;
        let a = &w.team["own"];
        post_ok(
            app,
            &app.admin_key,
            &format!("/v1/teams/{a}/secrets"),
            json!({"name": "probe2", "value": "p"}),
        )
        .await;
    }
    if path.starts_with("/v1/teams/{T}/members/") && path.contains("{U}") && target != "foreign" {
        let u = &w.bystander["own"];
        app.as_key(
            &app.admin_key,
            Method::PUT,
            &format!("/v1/teams/{team}/members/{u}"),
            Some(json!({"role": "MEMBER"})),
        )
        .await
        .ok();
    }
    if let Some((placeholder, ty)) = key_placeholder(path) {
        let k = post_ok(
            app,
            org_admin,
            &format!("/v1/teams/{team}/api_keys"),
            json!({"type": ty, "name": rand("victim")}),
        )
        .await;
        concrete = concrete.replace(&placeholder, prefix_of(&k));
    }
    if let Some(who) = path.split("{P:").nth(1).and_then(|r| r.split('}').next()) {
        // A personal key of another user of the target organization: an
        // org admin's or a plain member's.
        let role = if who == "admin" { "ADMIN" } else { "MEMBER" };
        let u = post_ok(
            app,
            org_admin,
            "/v1/users",
            json!({"email": format!("{}@example.com", rand("p")), "role": role}),
        )
        .await;
        let id = u["user_id"].as_str().unwrap();
        let k = post_ok(
            app,
            org_admin,
            &format!("/v1/users/{id}/api_keys"),
            json!({"name": rand("victim")}),
        )
        .await;
        concrete = concrete.replace(&format!("{{P:{who}}}"), prefix_of(&k));
    }
    if path.contains("{V}") {
        concrete = concrete.replace("{V}", &new_user(app, org_admin).await);
    }
    concrete
}

/// `{K}` (a WORKSPACE_INVOKE key) or `{K:TYPE}` in a path, with the type.
fn key_placeholder(path: &str) -> Option<(String, String)> {
    if path.contains("{K}") {
        return Some(("{K}".into(), "WORKSPACE_INVOKE".into()));
    }
    let ty = path.split("{K:").nth(1)?.split('}').next()?;
    Some((format!("{{K:{ty}}}"), ty.to_owned()))
}

fn prefix_of(created: &Value) -> &str {
    created["api_key"]
        .as_str()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
}

fn body_for(method: &Method, path: &str, w: &World) -> Option<Value> {
    if *method != Method::POST && *method != Method::PUT && *method != Method::PATCH {
        return None;
    }
    Some(if path.ends_with("/secrets") {
        json!({"name": "probe", "value": "v"})
    } else if path.contains("/members/") {
        json!({"role": "MEMBER"})
    } else if path.ends_with("/api_keys#personal") {
        json!({"type": "PERSONAL", "name": rand("k")})
    } else if path.ends_with("/api_keys#read_secrets_own_team") {
        json!({"type": "WORKSPACE_READ_SECRETS", "team_id": w.team["own"], "name": rand("k")})
    } else if path.ends_with("/api_keys#manage_keys") {
        json!({"type": "WORKSPACE_MANAGE_API_KEYS", "name": rand("k")})
    } else if let Some(ty) = path
        .split_once("/api_keys#")
        .map(|(_, t)| t)
        .filter(|t| t.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    {
        json!({"type": ty, "name": rand("k")})
    } else if path.ends_with("/api_keys") && path.starts_with("/v1/users/") {
        json!({"name": rand("minted")})
    } else if path.ends_with("/api_keys") {
        json!({"type": "WORKSPACE_INVOKE", "name": rand("k")})
    } else if path == "/v1/users" {
        json!({"email": format!("{}@example.com", rand("new"))})
    } else {
        json!({"name": rand("team")})
    })
}

async fn permission_matrix(app: TestApp) {
    let w = build_world(&app).await;
    let mut cells = 0;
    let mut wrong = Vec::new();
    for line in MATRIX
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 3 + CALLERS.len(), "malformed row: {line}");
        let method = Method::from_bytes(cols[0].as_bytes()).unwrap();
        let (path, target) = (cols[1], cols[2]);
        for (caller, want) in CALLERS.iter().zip(&cols[3..]) {
            let concrete = prepare(&app, &w, path, target).await;
            let url_path = concrete.split('#').next().unwrap();
            let r = app
                .as_key(
                    &w.keys[caller],
                    method.clone(),
                    url_path,
                    body_for(&method, &concrete, &w),
                )
                .await;
            cells += 1;
            if r.status.as_str() != *want {
                wrong.push(format!(
                    "{method} {path} [{target}] as {caller}: want {want}, got {} {}",
                    r.status.as_u16(),
                    r.text
                ));
            }
            assert_eq!(r.content_type, "application/json", "{method} {path}");
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(cells >= 960, "the matrix shrank: {cells} cells");
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("permission matrix: {cells} cells checked\n").as_bytes(),
    );
}

crate::on_both_engines!(crate::common::TestApp::start => permission_matrix);
