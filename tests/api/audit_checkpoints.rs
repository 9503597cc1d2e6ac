//! Signed checkpoints and pruning of the audit log, on both engines: a log
//! rewritten with the chain key (as whoever holds the database and the
//! master key could) or truncated at its tail still verifies on its own,
//! and fails against a checkpoint exported before; pruning replaces a
//! chain's old events with a signed checkpoint, after which the rest still
//! verifies and tampering with that checkpoint is found.

use crate::audit::{all_events, sql, verify};
use crate::common::TestApp;
use serde_json::json;
use tessera::audit::chain::{link, BreakKind, StoredEvent};
use tessera::audit::checkpoint::{verify_checkpoint, Checkpoint};
use tessera::domain::time::now_micros;
use tessera::service::audit_log::Verified;

/// Writes `n` secrets (one event each).
async fn write_secrets(app: &TestApp, n: usize, tag: &str) {
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
        .sign_audit_heads(now_micros())
        .await
        .unwrap()
        .iter()
        .map(|signed| {
            let line = signed.to_json_line().unwrap();
            let parsed = tessera::audit::checkpoint::SignedCheckpoint::from_json_line(&line);
            verify_checkpoint(service.audit_public_key(), &parsed.unwrap()).unwrap()
        })
        .collect()
}

/// A `bytea`/`BLOB` literal of `bytes` for the test's engine.
fn blob(app: &TestApp, bytes: &[u8]) -> String {
    match app.storage.pg {
        Some(_) => format!("'\\x{}'::bytea", hex::encode(bytes)),
        None => format!("X'{}'", hex::encode(bytes)),
    }
}

fn broken(v: Verified) -> tessera::audit::chain::Broken {
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

/// Pruning removes events older than the retention behind a signed
/// checkpoint: the rest still verifies (and extends checkpoints taken
/// before), the pruning is an event itself, and removing or editing the
/// checkpoint that stands for the pruned events is found.
async fn pruning_keeps_the_log_verifiable(app: TestApp) {
    write_secrets(&app, 3, "p").await;
    let early = checkpoints(&app).await;
    write_secrets(&app, 3, "r").await;
    let before = checkpoints(&app).await;
    let chain = before[0].chain.clone();
    let day = 24 * 3600 * 1_000_000i64;
    // The app's own service keeps everything (the default).
    assert_eq!(
        app.service()
            .prune_audit(now_micros() + 2 * day)
            .await
            .unwrap(),
        0
    );
    let mut limits = app.limits.clone();
    limits.audit_retention = Some(std::time::Duration::from_secs(24 * 3600));
    let pruner = tessera::app::service_from_parts(app.store.clone(), app.keyring.clone(), limits)
        .await
        .unwrap();
    // Nothing is a day old yet.
    assert_eq!(pruner.prune_audit(now_micros()).await.unwrap(), 0);
    let total = all_events(&app).await.len() as u64;
    // Two days on, everything but each chain's last event goes.
    let pruned = pruner.prune_audit(now_micros() + 2 * day).await.unwrap();
    assert_eq!(pruned, total - 1);
    let left = all_events(&app).await;
    let actions: Vec<&str> = left.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(actions, ["secret.write", "audit.prune"], "{left:?}");
    assert_eq!(left[1].event.target_id.as_deref(), Some(chain.as_str()));
    match verify(&app, &[early, before].concat()).await {
        // The later checkpoint is of the event kept; the earlier one, of
        // events pruned since, has nothing left to compare.
        Verified::Intact { proved, pruned, .. } => assert_eq!((proved, pruned), (1, 1)),
        Verified::Broken(b) => panic!("a pruned log: {b}"),
    }
    write_secrets(&app, 2, "q").await;
    let after = checkpoints(&app).await;
    assert!(matches!(
        verify(&app, &after).await,
        Verified::Intact { .. }
    ));

    // The stored checkpoint edited, or removed.
    let copy = "CREATE TABLE anchor_backup AS SELECT * FROM audit_anchors";
    let restore =
        "DELETE FROM audit_anchors; INSERT INTO audit_anchors SELECT * FROM anchor_backup";
    sql(&app, copy).await;
    sql(
        &app,
        "UPDATE audit_anchors SET checkpoint = replace(checkpoint, '\"seq\":', '\"seq\":1')",
    )
    .await;
    let b = broken(verify(&app, &[]).await);
    assert!(matches!(b.kind, BreakKind::BadAnchor(_)), "{b}");
    sql(&app, restore).await;
    sql(&app, "DELETE FROM audit_anchors").await;
    let b = broken(verify(&app, &[]).await);
    assert!(matches!(b.kind, BreakKind::Gap { .. }), "{b}");
    sql(&app, restore).await;
    // Every remaining event deleted: the chain ends at its pruned prefix.
    sql(
        &app,
        "CREATE TABLE audit_backup AS SELECT * FROM audit_events",
    )
    .await;
    sql(
        &app,
        &format!("DELETE FROM audit_events WHERE chain = '{chain}'"),
    )
    .await;
    let b = broken(verify(&app, &[]).await);
    assert!(matches!(b.kind, BreakKind::Truncated { .. }), "{b}");
    sql(&app, "INSERT INTO audit_events SELECT * FROM audit_backup").await;
    assert!(matches!(
        verify(&app, &after).await,
        Verified::Intact { .. }
    ));
}

crate::app_tests!(
    checkpoints_catch_rewrites_and_truncation,
    pruning_keeps_the_log_verifiable,
);
