//! Malformed input: every case is a 4xx JSON error that says what was wrong,
//! and nothing is stored.

use crate::common::{to_resp, TestApp};
use reqwest::Method;
use serde_json::json;
use tessera::wire::management::{SecretInfo, SecretList, TeamsView};

async fn name_rules_each_have_a_message(app: TestApp) {
    let long = "a".repeat(254);
    let cases: &[(&str, &str)] = &[
        ("", "must not be empty"),
        (&long, "limit is 253"),
        ("-x", "must start with"),
        (".env", "must start with"),
        ("..", "must start with"),
        ("a/b", "may only contain"),
        ("../etc/passwd", "may only contain"),
        ("a b", "may only contain"),
        ("tab\there", "may only contain"),
        ("nul\u{0}", "may only contain"),
        ("café", "may only contain"),
    ];
    for (name, want) in cases {
        let msg = app
            .post("/v1/secrets", json!({"name": name, "value": "v"}))
            .await
            .err(400, "INVALID_REQUEST");
        assert!(msg.contains(want), "{name:?}: {msg}");
    }
    assert!(!app
        .post(
            "/v1/secrets",
            json!({"name": "a".repeat(253), "value": "v"})
        )
        .await
        .json::<SecretInfo>()
        .id
        .is_empty());
    assert_eq!(
        app.get("/v1/secrets")
            .await
            .json::<SecretList>()
            .secrets
            .len(),
        1
    );
}

async fn body_errors_name_the_problem(app: TestApp) {
    let raw = |body: &'static str, ct: Option<&'static str>| {
        let mut req = app
            .http
            .post(format!("{}/v1/secrets", app.url))
            .header("Authorization", format!("Bearer {}", app.admin_key))
            .body(body);
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        async move { to_resp(req.send().await.unwrap()).await }
    };
    assert!(raw("", None)
        .await
        .err(400, "INVALID_REQUEST")
        .contains("empty"));
    assert!(raw("{", None)
        .await
        .err(400, "INVALID_REQUEST")
        .contains("not valid JSON"));
    assert!(raw("[1,2]", None)
        .await
        .err(400, "INVALID_REQUEST")
        .contains("JSON object"));
    assert!(raw(r#"{"value":"v"}"#, None)
        .await
        .err(400, "INVALID_REQUEST")
        .contains("`name`"));
    assert!(raw(r#"{"name":"n"}"#, None)
        .await
        .err(400, "INVALID_REQUEST")
        .contains("`value`"));
    assert!(raw(r#"{"name":5,"value":"v"}"#, None)
        .await
        .err(400, "INVALID_REQUEST")
        .contains("`name` must be a string"));
    let msg = raw(r#"{"name":"n","value":12345678}"#, None)
        .await
        .err(400, "INVALID_REQUEST");
    assert!(
        msg.contains("`value`") && !msg.contains("12345678"),
        "{msg}"
    );
    assert!(raw(r#"{"name":"n","value":null}"#, None)
        .await
        .err(400, "INVALID_REQUEST")
        .contains("`value`"));
    // Parsed as JSON whatever the Content-Type says; unknown fields ignored.
    raw(r#"{"name":"ct_none","value":"v"}"#, None).await.ok();
    raw(r#"{"name":"ct_text","value":"v"}"#, Some("text/plain"))
        .await
        .ok();
    raw(
        r#"{"name":"ct_form","value":"v"}"#,
        Some("application/x-www-form-urlencoded"),
    )
    .await
    .ok();
    raw(
        r#"{"name":"extra","value":"v","description":"x","team":{"a":1}}"#,
        None,
    )
    .await
    .ok();
    assert_eq!(
        app.get("/v1/secrets")
            .await
            .json::<SecretList>()
            .secrets
            .len(),
        4
    );
}

async fn oversized_body_is_413(app: TestApp) {
    let body = format!(
        r#"{{"name":"big","value":"{}"}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let r = app
        .http
        .post(format!("{}/v1/secrets", app.url))
        .header("Authorization", format!("Bearer {}", app.admin_key))
        .body(body)
        .send()
        .await
        .unwrap();
    to_resp(r).await.err(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(
        app.get("/v1/secrets")
            .await
            .json::<SecretList>()
            .secrets
            .len(),
        0
    );
}

async fn unknown_routes_and_methods(app: TestApp) {
    app.get("/v1/nothing-here").await.err(404, "NOT_FOUND");
    app.request(
        Method::PUT,
        "/v1/secrets",
        Some(&app.admin_key),
        Some(json!({})),
    )
    .await
    .err(405, "METHOD_NOT_ALLOWED");
    app.request(Method::PATCH, "/v1/teams", Some(&app.admin_key), None)
        .await
        .err(405, "METHOD_NOT_ALLOWED");
    app.request(Method::GET, "/v1/secrets/abc", Some(&app.admin_key), None)
        .await
        .err(405, "METHOD_NOT_ALLOWED");
}

async fn team_name_filter_is_decoded(app: TestApp) {
    assert_eq!(
        app.get("/v1/teams?name=%64efault")
            .await
            .json::<TeamsView>()
            .teams
            .len(),
        1
    );
    // `+` decodes to a space (the Python SDK encodes spaces that way).
    assert_eq!(
        app.get("/v1/teams?name=no+such+team")
            .await
            .json::<TeamsView>()
            .teams
            .len(),
        0
    );
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    name_rules_each_have_a_message,
    body_errors_name_the_problem,
    oversized_body_is_413,
    unknown_routes_and_methods,
    team_name_filter_is_decoded,
);
