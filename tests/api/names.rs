//! Look-alike names: team, key and user names and emails refuse control and
//! invisible formatting characters (Unicode Cc, Cf, Zl, Zp) with a 400 that
//! says why, are compared in NFC, and emails are compared case-insensitively.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::json;
use tessera::wire::management::TeamView;

const INVISIBLE: &[(&str, &str)] = &[
    ("default\u{200b}", "U+200B"),
    ("\u{202e}tluafed", "U+202E"),
    ("de\u{2066}fault", "U+2066"),
    ("a\u{feff}b", "U+FEFF"),
    ("line\u{2028}break", "U+2028"),
    ("bell\u{7}", "U+0007"),
];

#[track_caller]
fn says_why(message: &str, field: &str, code_point: &str) {
    assert!(
        message.contains(field) && message.contains(code_point),
        "{message:?} should name {field} and {code_point}"
    );
}

async fn names_refuse_invisible_characters(app: TestApp) {
    let team = app
        .post("/v1/teams", json!({"name": "ml"}))
        .await
        .json::<TeamView>()
        .id;
    for (bad, cp) in INVISIBLE {
        let m = app
            .post("/v1/teams", json!({"name": bad}))
            .await
            .err(400, "INVALID_REQUEST");
        says_why(&m, "team name", cp);
        let m = app
            .request(
                Method::PATCH,
                &format!("/v1/teams/{team}"),
                Some(&app.admin_key),
                Some(json!({"name": bad})),
            )
            .await
            .err(400, "INVALID_REQUEST");
        says_why(&m, "team name", cp);
        let m = app
            .post(
                "/v1/api_keys",
                json!({"type": "WORKSPACE_MANAGE_ALL", "name": bad}),
            )
            .await
            .err(400, "INVALID_REQUEST");
        says_why(&m, "key name", cp);
        let m = app
            .post("/v1/users", json!({"email": "x@example.com", "name": bad}))
            .await
            .err(400, "INVALID_REQUEST");
        says_why(&m, "name", cp);
        let m = app
            .post("/v1/users", json!({"email": format!("{bad}@example.com")}))
            .await
            .err(400, "INVALID_REQUEST");
        says_why(&m, "email", cp);
    }
    // Nothing was created.
    let teams = app.get("/v1/teams").await.ok();
    assert_eq!(teams["teams"].as_array().unwrap().len(), 2, "{teams}");
    let users = app.get("/v1/users").await.ok();
    assert_eq!(users["items"].as_array().unwrap().len(), 1, "{users}");
}

async fn names_are_compared_in_nfc(app: TestApp) {
    // "café" precomposed, then with a combining accent: one name.
    let t = app
        .post("/v1/teams", json!({"name": "caf\u{e9}"}))
        .await
        .ok();
    assert_eq!(t["name"], "caf\u{e9}");
    app.post("/v1/teams", json!({"name": "cafe\u{301}"}))
        .await
        .err(409, "CONFLICT");
    let found = app.get("/v1/teams?name=cafe%CC%81").await.ok();
    assert_eq!(found["teams"].as_array().unwrap().len(), 1, "{found}");
    // Key names are stored in NFC too.
    app.post(
        "/v1/api_keys",
        json!({"type": "WORKSPACE_MANAGE_ALL", "name": "d\u{e9}ploy"}),
    )
    .await
    .ok();
    app.post(
        "/v1/api_keys",
        json!({"type": "WORKSPACE_MANAGE_ALL", "name": "de\u{301}ploy"}),
    )
    .await
    .err(400, "INVALID_REQUEST");
}

async fn emails_are_compared_case_insensitively(app: TestApp) {
    let u = app
        .post("/v1/users", json!({"email": "Dup.User@x.y"}))
        .await
        .ok();
    assert_eq!(u["email"], "Dup.User@x.y", "the spelling given is kept");
    let m = app
        .post("/v1/users", json!({"email": "dup.user@x.y"}))
        .await
        .err(409, "CONFLICT");
    assert!(m.contains("email"), "{m}");
    app.post("/v1/users", json!({"email": "DUP.USER@X.Y"}))
        .await
        .err(409, "CONFLICT");
    for query in ["dup.user%40x.y", "DUP.USER%40X.Y", "Dup.User%40x.y"] {
        let found = app.get(&format!("/v1/users?email={query}")).await.ok();
        let items = found["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{query}: {found}");
        assert_eq!(items[0]["user_id"], u["user_id"]);
    }
    // Deleting the user frees the address, in any case.
    let id = u["user_id"].as_str().unwrap();
    app.delete(&format!("/v1/users/{id}")).await.ok();
    app.post("/v1/users", json!({"email": "dup.user@x.y"}))
        .await
        .ok();
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    names_refuse_invisible_characters,
    names_are_compared_in_nfc,
    emails_are_compared_case_insensitively,
);
