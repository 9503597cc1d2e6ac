//! Signed checkpoints and pruning of the audit log, on both engines: a log
//! rewritten with the chain key (as whoever holds the database and the
//! master key could) or truncated at its tail still verifies on its own,
//! and fails against a checkpoint exported before. Pruning (in
//! `audit_pruning.rs`) stands on anchors shipped with the checkpoints.

use crate::audit::{all_events, sql, verify};
use crate::common::TestApp;
use serde_json::json;
use tessera::audit::chain::{link, BreakKind, StoredEvent};
use tessera::audit::checkpoint::{verify_checkpoint, Checkpoint};
use tessera::domain::time::now_micros;
use tessera::service::audit_log::Verified;

/// Writes `n` secrets (one event each).
pub(crate) async fn write_secrets(app: &TestApp, n: usize, tag: &str) {
    let team = app.default_team_id().await;
    for i in 0..n {
        app.post(
            &format!("/v1/teams/{team}/secrets"),
            json!({"name": format!("{tag}{i}"), "value": "v"}),
        )
        .await
        .ok();
    }
}

/// Checkpoints of every chain's head now, as exported, checked with the
/// store's public key.
async fn checkpoints(app: &TestApp) -> Vec<Checkpoint> {
    let service = app.service();
    service
        .audit_log()
        .sign_audit_heads(now_micros())
        .await
        .unwrap()
        .iter()
        .map(|signed| {
            let line = signed.to_json_line().unwrap();
            let parsed = tessera::audit::checkpoint::SignedCheckpoint::from_json_line(&line);
            verify_checkpoint(service.audit_log().audit_public_key(), &parsed.unwrap()).unwrap()
        })
        .collect()
}

/// A `bytea`/`BLOB` literal of `bytes` for the test's engine.
pub(crate) fn blob(app: &TestApp, bytes: &[u8]) -> String {
    match app.storage.pg {
        Some(_) => format!("'\\x{}'::bytea", hex::encode(bytes)),
        None => format!("X'{}'", hex::encode(bytes)),
    }
}

pub(crate) fn broken(v: Verified) -> tessera::audit::chain::Broken {
    match v {
        Verified::Broken(b) => b,
        Verified::Intact { .. } => panic!("the log verified"),
    }
}

/// Rewriting the log with the chain key, and cutting off its tail, leave a
/// log that verifies on its own; a checkpoint exported before catches both
/// and names the place. An untouched log extends its checkpoints.
async fn checkpoints_catch_rewrites_and_truncation(app: TestApp) {
    write_secrets(&app, 5, "s").await;
    let before = checkpoints(&app).await;
    let events = all_events(&app).await;
    let chain = before[0].chain.clone();
    let top = before[0].seq;
    assert_eq!(top as usize, events.len());
    match verify(&app, &before).await {
        Verified::Intact { proved, .. } => assert_eq!(proved, before.len()),
        Verified::Broken(b) => panic!("an untouched log: {b}"),
    }
    let copy = "CREATE TABLE audit_backup AS SELECT * FROM audit_events";
    let restore = "DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM audit_backup";
    sql(&app, copy).await;

    // The tail cut off: every remaining link holds.
    sql(
        &app,
        &format!(
            "DELETE FROM audit_events WHERE chain = '{chain}' AND seq >= {}",
            top - 1
        ),
    )
    .await;
    assert!(matches!(verify(&app, &[]).await, Verified::Intact { .. }));
    let b = broken(verify(&app, &before).await);
    assert_eq!((b.chain.as_str(), b.seq), (chain.as_str(), top));
    assert_eq!(b.kind, BreakKind::Truncated { last: top - 2 });
    sql(&app, restore).await;

    // Event 3 edited and every MAC from it on recomputed with the chain
    // key, which the master key unwraps.
    let key = tessera::service::bootstrap::load_audit_key(app.store.as_ref(), &app.keyring)
        .await
        .unwrap();
    let mut stored: Vec<StoredEvent> = events
        .into_iter()
        .filter(|e| e.event.chain == chain)
        .collect();
    stored.sort_by_key(|e| e.event.seq);
    let mut prev = stored[1].mac;
    let mut rewrite = String::new();
    for s in &mut stored[2..] {
        if s.event.seq == 3 {
            s.event.target_name = Some("rewritten".into());
        }
        let mac = link(&key, &prev, &s.event);
        rewrite.push_str(&format!(
            "UPDATE audit_events SET target_name = '{}', mac = {} WHERE chain = '{chain}' AND seq = {};\n",
            s.event.target_name.as_deref().unwrap_or_default(),
            blob(&app, &mac),
            s.event.seq,
        ));
        prev = mac;
    }
    sql(&app, &rewrite).await;
    assert!(
        matches!(verify(&app, &[]).await, Verified::Intact { .. }),
        "the rewrite should verify on its own"
    );
    let b = broken(verify(&app, &before).await);
    assert_eq!((b.chain.as_str(), b.seq), (chain.as_str(), top));
    assert_eq!(b.kind, BreakKind::Rewritten);
    sql(&app, restore).await;

    // A checkpoint of a chain that is gone altogether.
    let mut gone = before[0].clone();
    gone.chain = "sqlite-removed-0".into();
    let b = broken(verify(&app, &[gone]).await);
    assert_eq!(b.kind, BreakKind::Truncated { last: 0 });
    assert!(matches!(
        verify(&app, &before).await,
        Verified::Intact { .. }
    ));
}

crate::on_both_engines!(crate::common::TestApp::start => checkpoints_catch_rewrites_and_truncation);
