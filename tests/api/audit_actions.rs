//! The audit actions clients read about are the ones the log records
//! (issue 25): `/openapi.json` lists them from the code's own list, a filter
//! on each finds its events, and a filter on a name the log never records
//! is a 400 that lists the real ones instead of an empty page.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::json;
use tessera::domain::audit_action::AuditAction;

async fn events(app: &TestApp, action: &str) -> Vec<serde_json::Value> {
    app.get(&format!("/v1/audit_events?action={action}"))
        .await
        .ok()["events"]
        .as_array()
        .unwrap()
        .clone()
}

async fn documented_actions_are_the_recorded_ones(app: TestApp) {
    let doc: serde_json::Value = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let param = doc["paths"]["/v1/audit_events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "action")
        .expect("an action parameter")
        .clone();
    let all: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(param["schema"]["enum"], json!(all), "{param}");
    let view = &doc["components"]["schemas"]["AuditEventView"]["properties"]["action"];
    assert_eq!(view["enum"], json!(all), "{view}");

    // A write and a runtime read, found by the names the document gives.
    let team = app.default_team_id().await;
    app.post("/v1/secrets", json!({"name": "documented", "value": "v"}))
        .await
        .ok();
    let key = app.reader_key(&team).await;
    app.as_key(&key, Method::GET, "/runtime/v1/secrets", None)
        .await
        .ok();
    let writes = events(&app, AuditAction::SecretWrite.as_str()).await;
    assert!(
        writes.iter().any(|e| e["target_name"] == "documented"),
        "{writes:?}"
    );
    let reads = events(&app, AuditAction::SecretsRead.as_str()).await;
    assert!(
        reads.iter().any(|e| e["team_id"] == team.as_str()),
        "{reads:?}"
    );
    // Every event the log holds names an action of the list.
    let page = app.get("/v1/audit_events?limit=1000").await.ok();
    for e in page["events"].as_array().unwrap() {
        let a = e["action"].as_str().unwrap();
        assert!(
            AuditAction::from_name(a).is_some(),
            "{a} is not in the list"
        );
    }
}

async fn a_filter_on_an_unknown_action_is_refused(app: TestApp) {
    for name in ["secret.upsert", "secret.read", "SECRET.WRITE"] {
        let msg = app
            .get(&format!("/v1/audit_events?action={name}"))
            .await
            .err(400, "INVALID_REQUEST");
        assert!(msg.contains(name), "{msg}");
        assert!(
            msg.contains("secret.write") && msg.contains("secrets.read"),
            "{msg}"
        );
    }
    // An empty filter is no filter.
    app.get("/v1/audit_events?action=").await.ok();
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    documented_actions_are_the_recorded_ones,
    a_filter_on_an_unknown_action_is_refused
);
