//! Authentication: both schemes, and 401 for everything else.

use crate::common::TestApp;
use reqwest::Method;

async fn both_schemes_work(app: TestApp) {
    for scheme in ["Bearer", "Api-Key", "bearer", "api-key"] {
        let r = app
            .http
            .get(format!("{}/v1/secrets", app.url))
            .header("Authorization", format!("{scheme} {}", app.admin_key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
}

async fn missing_malformed_unknown_and_wrong_keys_are_401(app: TestApp) {
    let (prefix, _) = app.admin_key.split_once('.').unwrap();
    let wrong_secret = format!("{prefix}.{}", "A".repeat(43));
    let headers = [
        None,
        Some("".to_owned()),
        Some("Bearer".to_owned()),
        Some(app.admin_key.clone()),
        Some(format!("Basic {}", app.admin_key)),
        Some("Bearer not-a-key".to_owned()),
        Some(format!("Bearer {}", &app.admin_key[..20])),
        Some(format!("Bearer {wrong_secret}")),
        Some("Bearer AAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
    ];
    for path in [
        "/v1/secrets",
        "/v1/teams",
        "/v1/users/me",
        "/v1/organizations/me",
    ] {
        for h in &headers {
            let mut req = app.http.request(Method::GET, format!("{}{path}", app.url));
            if let Some(h) = h {
                req = req.header("Authorization", h);
            }
            let r = crate::common::to_resp(req.send().await.unwrap()).await;
            let msg = r.err(401, "UNAUTHORIZED");
            assert!(
                !msg.contains(&app.admin_key[9..]),
                "the key must not be echoed"
            );
        }
    }
    // Authentication comes before body validation.
    let r = app
        .request(
            Method::POST,
            "/v1/secrets",
            None,
            Some(serde_json::json!({"bad": true})),
        )
        .await;
    r.err(401, "UNAUTHORIZED");
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    both_schemes_work,
    missing_malformed_unknown_and_wrong_keys_are_401
);
