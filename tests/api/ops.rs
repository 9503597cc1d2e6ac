//! Operational endpoints and the OpenAPI document.

use crate::common::{canary, TestApp};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;
use tessera::wire::management::TeamView;

/// Every route Tessera serves. Adding a route means adding it here, and the
/// test below proves the generated document lists it.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/secrets"),
    ("post", "/v1/secrets"),
    ("delete", "/v1/secrets/{secret_name}"),
    ("get", "/v1/teams"),
    ("get", "/v1/teams/{team_id}"),
    ("get", "/v1/teams/{team_id}/secrets"),
    ("post", "/v1/teams/{team_id}/secrets"),
    ("delete", "/v1/teams/{team_id}/secrets/{secret_name}"),
    ("post", "/v1/teams"),
    ("patch", "/v1/teams/{team_id}"),
    ("delete", "/v1/teams/{team_id}"),
    ("get", "/v1/teams/{team_id}/members"),
    ("put", "/v1/teams/{team_id}/members/{user_id}"),
    ("delete", "/v1/teams/{team_id}/members/{user_id}"),
    ("get", "/v1/api_keys"),
    ("post", "/v1/api_keys"),
    ("delete", "/v1/api_keys/{api_key_prefix}"),
    ("post", "/v1/teams/{team_id}/api_keys"),
    ("get", "/v1/users"),
    ("post", "/v1/users"),
    ("get", "/v1/users/{user_id}"),
    ("delete", "/v1/users/{user_id}"),
    ("post", "/v1/users/{user_id}/api_keys"),
    ("get", "/v1/users/me"),
    ("get", "/v1/organizations/me"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
    ("get", "/runtime/v1/secrets"),
    ("get", "/runtime/v1/secrets/{secret_name}"),
    ("get", "/v1/teams/{team_id}/secrets/{secret_name}/versions"),
    (
        "post",
        "/v1/teams/{team_id}/secrets/{secret_name}/versions/{version}/restore",
    ),
    (
        "delete",
        "/v1/teams/{team_id}/secrets/{secret_name}/versions/{version}",
    ),
    ("get", "/v1/teams/{team_id}/secrets/{secret_name}/consumers"),
    ("get", "/v1/teams/{team_id}/deleted_secrets"),
    (
        "post",
        "/v1/teams/{team_id}/deleted_secrets/{secret_name}/restore",
    ),
    (
        "delete",
        "/v1/teams/{team_id}/deleted_secrets/{secret_name}",
    ),
    ("get", "/v1/audit_events"),
];

async fn health_and_readiness(app: TestApp) {
    let h = app.request(Method::GET, "/healthz", None, None).await.ok();
    assert_eq!(h["status"], "ok");
    let r = app.request(Method::GET, "/readyz", None, None).await.ok();
    assert_eq!(r["status"], "ready");
    assert_eq!(r["kek_id"].as_str().unwrap().len(), 16);
}

async fn metrics_use_route_templates_only(app: TestApp) {
    let name = format!("metric_probe_{}", tessera::domain::ids::random_base62(10));
    let value = canary("metrics");
    app.post("/v1/secrets", json!({"name": name, "value": value}))
        .await
        .ok();
    app.delete(&format!("/v1/secrets/{name}")).await.ok();
    let r = app
        .http
        .get(format!("{}/metrics", app.metrics_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"route="/v1/secrets/{secret_name}""#),
        "{text}"
    );
    assert!(text.contains("tessera_http_request_duration_seconds_bucket"));
    assert!(!text.contains(&name), "a secret name leaked into metrics");
    assert!(!text.contains(&value), "a secret value leaked into metrics");
}

async fn openapi_lists_every_route_the_router_serves(app: TestApp) {
    let doc = app
        .request(Method::GET, "/openapi.json", None, None)
        .await
        .ok();
    assert_eq!(doc["openapi"].as_str().unwrap().get(..2), Some("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);
    // And each documented operation is really routed (not the 404 fallback).
    let team = app.default_team_id().await;
    for (method, path) in &documented {
        let concrete = path
            .replace("{team_id}", &team)
            .replace("{secret_name}", "probe")
            .replace("{version}", "1");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = (m == Method::POST).then(|| json!({"name": "probe", "value": "v"}));
        let r = app.request(m, &concrete, Some(&app.admin_key), body).await;
        assert!(
            !(r.status == 404 && r.body["message"] == "no such route") && r.status != 405,
            "{method} {path} is documented but not routed: {}",
            r.text
        );
    }
    assert!(doc["components"]["securitySchemes"]["BearerAuth"].is_object());
    // Tessera's own routes are marked as extensions; Baseten's are not.
    assert_eq!(
        doc["paths"]["/v1/teams"]["post"]["x-tessera-extension"],
        true
    );
    assert!(doc["paths"]["/v1/teams"]["get"]
        .get("x-tessera-extension")
        .is_none());
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    health_and_readiness,
    metrics_use_route_templates_only,
    metrics_have_their_own_listener_and_no_tenant_labels,
    openapi_lists_every_route_the_router_serves
);

/// Issue 24, finding 9: metrics are not on the API's listener (anyone who
/// can reach the API would read them), and no label names a tenant: the
/// runtime reads of two teams add up in one series.
async fn metrics_have_their_own_listener_and_no_tenant_labels(app: TestApp) {
    app.request(Method::GET, "/metrics", None, None)
        .await
        .err(404, "NOT_FOUND");
    let team = app.default_team_id().await;
    let other = app
        .post("/v1/teams", json!({"name": "other"}))
        .await
        .json::<TeamView>()
        .id;
    for t in [&team, &other] {
        let key = app.reader_key(t).await;
        app.as_key(&key, Method::GET, "/runtime/v1/secrets", None)
            .await
            .ok();
    }
    let text = app
        .http
        .get(format!("{}/metrics", app.metrics_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("tessera_runtime_reads_total "), "{text}");
    for id in [&team, &other] {
        assert!(
            !text.contains(id.as_str()),
            "a team id in the metrics: {text}"
        );
    }
    // Only /metrics is served there.
    let r = app
        .http
        .get(format!("{}/v1/teams", app.metrics_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
