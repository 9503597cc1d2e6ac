//! The runtime routes: values leave the server only here, only to
//! WORKSPACE_READ_SECRETS keys, and long polls wake on writes.

use crate::common::{canary, Resp, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tessera::wire::management::TeamView;
use tessera::wire::runtime::{SecretItem, SecretsBody};

/// Creates a team and a WORKSPACE_READ_SECRETS key for it (optionally
/// narrowed); returns (team id, key).
async fn team_with_reader(app: &TestApp, names: Option<Vec<&str>>) -> (String, String) {
    let team = app
        .post(
            "/v1/teams",
            json!({"name": format!("t-{}", tessera::domain::ids::random_base62(6))}),
        )
        .await
        .json::<TeamView>()
        .id;
    let key = reader_key(app, &team, names).await;
    (team, key)
}

async fn reader_key(app: &TestApp, team: &str, names: Option<Vec<&str>>) -> String {
    let mut body = json!({"type": "WORKSPACE_READ_SECRETS", "name": canary("reader")});
    if let Some(n) = names {
        body["secret_names"] = json!(n);
    }
    app.post(&format!("/v1/teams/{team}/api_keys"), body)
        .await
        .json::<tessera::wire::management::NewApiKeyView>()
        .api_key
}

async fn put(app: &TestApp, team: &str, name: &str, value: &str) {
    app.post(
        &format!("/v1/teams/{team}/secrets"),
        json!({"name": name, "value": value}),
    )
    .await
    .ok();
}

/// A runtime GET with an optional held ETag.
async fn fetch(app: &TestApp, key: &str, path: &str, etag: Option<&str>) -> (Resp, Option<String>) {
    let mut req = app
        .http
        .get(format!("{}{path}", app.url))
        .header("Authorization", format!("Bearer {key}"))
        .timeout(Duration::from_secs(90));
    if let Some(e) = etag {
        req = req.header("If-None-Match", e);
    }
    let r = req.send().await.expect("request");
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if r.status() == StatusCode::OK {
        assert_eq!(
            r.headers().get("cache-control").unwrap(),
            "no-store",
            "values must not be cached"
        );
    }
    (crate::common::to_resp(r).await, etag)
}

fn values(body: &Value) -> Vec<(String, String)> {
    body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn values_arrive_exactly(app: TestApp) {
    let (team, key) = team_with_reader(&app, None).await;
    let big: String = "x".repeat(64 * 1024);
    let cases = [
        ("multi-line", "line one\nline two\n".to_owned()),
        ("trailing_newline", format!("{}\n", canary("nl"))),
        ("non.ascii", "héllo wörld ✓ 秘密".to_owned()),
        ("empty", String::new()),
        ("big", big),
        ("quote", "a \"quoted\" \\ value\t".to_owned()),
    ];
    for (n, v) in &cases {
        put(&app, &team, n, v).await;
    }
    let (r, etag) = fetch(&app, &key, "/runtime/v1/secrets", None).await;
    let body = r.ok();
    let mut want: Vec<(String, String)> = cases
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    want.sort_by_key(|(n, _)| tessera::domain::secret_name::canonicalize(n));
    assert_eq!(values(&body), want);
    assert_eq!(etag.unwrap(), format!("\"{}\"", body["revision"]));
    for s in body["secrets"].as_array().unwrap() {
        crate::common::assert_utc_z(&s["updated_at"]);
        assert_eq!(s["version"], 1);
        assert_eq!(s["fingerprint"].as_str().unwrap().len(), 32);
    }
    assert_eq!(body["secrets"][0]["canonical_name"], "big");
    // One by name, any spelling.
    let one = fetch(&app, &key, "/runtime/v1/secrets/multi_line", None)
        .await
        .0
        .ok();
    assert_eq!(one["name"], "multi-line");
    assert_eq!(one["value"], "line one\nline two\n");
    assert_eq!(one["version"], 1);
    let keys: Vec<&String> = one.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["fingerprint", "name", "value", "version"]);
    fetch(&app, &key, "/runtime/v1/secrets/absent", None)
        .await
        .0
        .err(404, "NOT_FOUND");
    fetch(&app, &key, "/runtime/v1/secrets/a%2Fb", None)
        .await
        .0
        .err(400, "INVALID_REQUEST");
}

async fn fingerprints_are_stable_and_only_on_runtime_routes(app: TestApp) {
    let (team, key) = team_with_reader(&app, None).await;
    put(&app, &team, "a", "same").await;
    put(&app, &team, "b", "same").await;
    let first = fetch(&app, &key, "/runtime/v1/secrets", None).await.0.ok();
    let fp = |b: &Value, i: usize| b["secrets"][i]["fingerprint"].as_str().unwrap().to_owned();
    assert_ne!(
        fp(&first, 0),
        fp(&first, 1),
        "bound to the secret, not only the value"
    );
    // Rewriting the same value keeps the fingerprint; another value changes it.
    put(&app, &team, "a", "same").await;
    put(&app, &team, "b", "other").await;
    let second = fetch(&app, &key, "/runtime/v1/secrets", None).await.0.ok();
    assert_eq!(second["secrets"][0]["version"], 2);
    assert_eq!(fp(&first, 0), fp(&second, 0));
    assert_ne!(fp(&first, 1), fp(&second, 1));
    // Management responses never carry values or fingerprints.
    for path in [
        "/v1/secrets".to_owned(),
        format!("/v1/teams/{team}/secrets"),
    ] {
        let text = app.get(&path).await.text;
        assert!(!text.contains(&fp(&second, 0)), "{text}");
        assert!(
            !text.contains("fingerprint") && !text.contains("\"value\""),
            "{text}"
        );
    }
}

async fn narrowed_keys_see_only_their_names(app: TestApp) {
    let team = app
        .post("/v1/teams", json!({"name": "narrow"}))
        .await
        .json::<TeamView>()
        .id;
    put(&app, &team, "hf-token", "h").await;
    put(&app, &team, "db_password", "d").await;
    put(&app, &team, "other", "o").await;
    let key = reader_key(
        &app,
        &team,
        Some(vec!["hf.token", "db-password", "not_yet"]),
    )
    .await;
    let body = fetch(&app, &key, "/runtime/v1/secrets", None).await.0.ok();
    assert_eq!(
        values(&body),
        [
            ("db_password".into(), "d".into()),
            ("hf-token".into(), "h".into())
        ]
    );
    fetch(&app, &key, "/runtime/v1/secrets/other", None)
        .await
        .0
        .err(404, "NOT_FOUND");
    // A name that did not exist when the key was made arrives once written.
    put(&app, &team, "not-yet", "n").await;
    let body = fetch(&app, &key, "/runtime/v1/secrets", None).await.0.ok();
    assert_eq!(values(&body).len(), 3);
    // The listing shows the narrowing (canonical names), never the values.
    let keys = app.get("/v1/api_keys").await.ok();
    let listed = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| key.starts_with(k["prefix"].as_str().unwrap()))
        .unwrap()
        .clone();
    assert_eq!(listed["type"], "WORKSPACE_READ_SECRETS");
    assert_eq!(
        listed["secret_names"],
        json!(["db_password", "hf_token", "not_yet"])
    );
}

async fn key_creation_rules(app: TestApp) {
    let team = app.default_team_id().await;
    let path = format!("/v1/teams/{team}/api_keys");
    let msg = app
        .post(
            &path,
            json!({"type": "WORKSPACE_READ_SECRETS", "secret_names": []}),
        )
        .await
        .err(400, "INVALID_REQUEST");
    assert!(msg.contains("secret_names"), "{msg}");
    let msg = app
        .post(
            &path,
            json!({"type": "WORKSPACE_READ_SECRETS", "secret_names": ["a/b"]}),
        )
        .await
        .err(400, "INVALID_REQUEST");
    assert!(msg.contains("secret_names[0]"), "{msg}");
    let msg = app
        .post(
            &path,
            json!({"type": "WORKSPACE_MANAGE_ALL", "secret_names": ["a"]}),
        )
        .await
        .err(400, "INVALID_REQUEST");
    assert!(
        msg.contains("only allowed for WORKSPACE_READ_SECRETS"),
        "{msg}"
    );
    // Through POST /v1/api_keys with team_id too.
    let k = app
        .post(
            "/v1/api_keys",
            json!({"type": "WORKSPACE_READ_SECRETS", "team_id": team}),
        )
        .await
        .ok();
    assert!(k["api_key"].as_str().unwrap().contains('.'));
    // No workspace key may issue one, not even for its own team.
    for ty in ["WORKSPACE_MANAGE_ALL", "WORKSPACE_MANAGE_API_KEYS"] {
        let body = if ty == "WORKSPACE_MANAGE_ALL" {
            json!({"type": ty, "team_id": team})
        } else {
            json!({"type": ty})
        };
        let ws = app
            .post("/v1/api_keys", body)
            .await
            .json::<tessera::wire::management::NewApiKeyView>()
            .api_key;
        let msg = app
            .as_key(
                &ws,
                Method::POST,
                &path,
                Some(json!({"type": "WORKSPACE_READ_SECRETS"})),
            )
            .await
            .err(403, "FORBIDDEN");
        assert!(msg.contains("WORKSPACE_READ_SECRETS"), "{msg}");
    }
}

async fn other_keys_are_refused_on_runtime_routes_and_readers_everywhere_else(app: TestApp) {
    let (team, reader) = team_with_reader(&app, None).await;
    put(&app, &team, "x", "v").await;
    for path in ["/runtime/v1/secrets", "/runtime/v1/secrets/x"] {
        let msg = fetch(&app, &app.admin_key, path, None)
            .await
            .0
            .err(403, "FORBIDDEN");
        assert!(msg.contains("WORKSPACE_READ_SECRETS"), "{msg}");
    }
    for (m, p) in [
        (Method::GET, "/v1/secrets".to_owned()),
        (Method::GET, format!("/v1/teams/{team}/secrets")),
        (Method::GET, "/v1/teams".to_owned()),
        (Method::GET, "/v1/api_keys".to_owned()),
        (Method::GET, "/v1/users/me".to_owned()),
    ] {
        app.as_key(&reader, m, &p, None).await.err(403, "FORBIDDEN");
    }
    fetch(&app, "abcdefgh.nope", "/runtime/v1/secrets", None)
        .await
        .0
        .err(401, "UNAUTHORIZED");
}

async fn long_poll_answers_after_a_write_and_not_before(app: TestApp) {
    let (team, key) = team_with_reader(&app, None).await;
    let (other_team, _) = team_with_reader(&app, None).await;
    put(&app, &team, "a", "1").await;
    let (_, etag) = fetch(&app, &key, "/runtime/v1/secrets", None).await;
    let etag = etag.unwrap();
    // Nothing changes: 304 with the same ETag at the end of the wait.
    let started = Instant::now();
    let (r, same) = fetch(&app, &key, "/runtime/v1/secrets?wait=1", Some(&etag)).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.text.is_empty());
    assert_eq!(same.as_deref(), Some(etag.as_str()));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A write to another team does not wake this team's waiter.
    let poll = {
        let (app_url, http, key, etag) =
            (app.url.clone(), app.http.clone(), key.clone(), etag.clone());
        tokio::spawn(async move {
            let r = http
                .get(format!("{app_url}/runtime/v1/secrets?wait=2"))
                .header("Authorization", format!("Bearer {key}"))
                .header("If-None-Match", etag)
                .send()
                .await
                .unwrap();
            (r.status(), Instant::now())
        })
    };
    app.wait_for_waiters(&team, 1).await;
    put(&app, &other_team, "b", "2").await;
    let (status, _) = poll.await.unwrap();
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // A write to this team answers the waiter, after the write and well
    // before the end of its wait.
    let poll = {
        let (app_url, http, key, etag) =
            (app.url.clone(), app.http.clone(), key.clone(), etag.clone());
        tokio::spawn(async move {
            let r = http
                .get(format!("{app_url}/runtime/v1/secrets?wait=30"))
                .header("Authorization", format!("Bearer {key}"))
                .header("If-None-Match", etag)
                .send()
                .await
                .unwrap();
            let at = Instant::now();
            (crate::common::to_resp(r).await, at)
        })
    };
    app.wait_for_waiters(&team, 1).await;
    assert!(!poll.is_finished(), "the waiter answered before any write");
    let value = canary("polled");
    let written_at = Instant::now();
    put(&app, &team, "a", &value).await;
    let (r, answered_at) = poll.await.unwrap();
    assert!(answered_at >= written_at);
    assert!(answered_at - written_at < Duration::from_secs(10));
    let body = r.ok();
    assert_eq!(values(&body), [("a".into(), value)]);
    assert_ne!(format!("\"{}\"", body["revision"]), etag);
    // A delete moves the revision too.
    let (_, etag) = fetch(&app, &key, "/runtime/v1/secrets", None).await;
    app.delete(&format!("/v1/teams/{team}/secrets/a"))
        .await
        .ok();
    let (r, _) = fetch(&app, &key, "/runtime/v1/secrets?wait=5", etag.as_deref()).await;
    assert_eq!(r.json::<SecretsBody<SecretItem<String>>>().secrets.len(), 0);
    // An ETag the client did not get from this team answers at once.
    let (r, _) = fetch(
        &app,
        &key,
        "/runtime/v1/secrets?wait=30",
        Some("\"999999\""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn long_poll_input_is_checked(app: TestApp) {
    let (_, key) = team_with_reader(&app, None).await;
    let msg = fetch(&app, &key, "/runtime/v1/secrets?wait=61", Some("\"1\""))
        .await
        .0
        .err(400, "INVALID_REQUEST");
    assert!(msg.contains("60"), "{msg}");
    fetch(&app, &key, "/runtime/v1/secrets?wait=soon", Some("\"1\""))
        .await
        .0
        .err(400, "INVALID_REQUEST");
    for bad in ["*", "17", "\"1\", \"2\""] {
        fetch(&app, &key, "/runtime/v1/secrets", Some(bad))
            .await
            .0
            .err(400, "INVALID_REQUEST");
    }
}

async fn revoking_the_key_or_deleting_its_team_ends_its_waiters(app: TestApp) {
    for how in ["revoke", "delete team"] {
        let (team, key) = team_with_reader(&app, None).await;
        put(&app, &team, "a", "1").await;
        let (_, etag) = fetch(&app, &key, "/runtime/v1/secrets", None).await;
        let poll = {
            let (url, http, key, etag) = (
                app.url.clone(),
                app.http.clone(),
                key.clone(),
                etag.unwrap(),
            );
            tokio::spawn(async move {
                let r = http
                    .get(format!("{url}/runtime/v1/secrets?wait=30"))
                    .header("Authorization", format!("Bearer {key}"))
                    .header("If-None-Match", etag)
                    .send()
                    .await
                    .unwrap();
                (crate::common::to_resp(r).await, Instant::now())
            })
        };
        app.wait_for_waiters(&team, 1).await;
        let done_at = Instant::now();
        match how {
            "revoke" => {
                let prefix = key.split('.').next().unwrap();
                app.delete(&format!("/v1/api_keys/{prefix}")).await.ok();
            }
            _ => {
                app.delete(&format!("/v1/teams/{team}?cascade=true"))
                    .await
                    .ok();
            }
        }
        let (r, at) = poll.await.unwrap();
        r.err(401, "UNAUTHORIZED");
        assert!(
            at - done_at < Duration::from_secs(1),
            "{how}: {:?}",
            at - done_at
        );
    }
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    values_arrive_exactly,
    fingerprints_are_stable_and_only_on_runtime_routes,
    narrowed_keys_see_only_their_names,
    key_creation_rules,
    other_keys_are_refused_on_runtime_routes_and_readers_everywhere_else,
    long_poll_answers_after_a_write_and_not_before,
    long_poll_input_is_checked,
    revoking_the_key_or_deleting_its_team_ends_its_waiters,
);
