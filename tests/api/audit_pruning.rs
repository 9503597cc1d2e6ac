//! Pruning the audit log, on both engines, through the node's checkpoint
//! exporter: a pruned prefix is proved by the anchor shipped in a
//! checkpoint file before the events went, never by the database alone.
//! Covered: the attack of issue 24 (an anchor forged with the master key
//! past the last shipped checkpoint, or for a prefix), a crash between
//! shipping an anchor and deleting, a chain rewritten before an honest
//! prune, several nodes each with their own file, and chains that did not
//! move getting no new line, even across a restart.

use crate::audit::{all_events, sql};
use crate::audit_checkpoints::{blob, broken, write_secrets};
use crate::common::TestApp;
use std::io::Write;
use std::path::{Path, PathBuf};
use tessera::audit::chain::{link, BreakKind, ChainHead, StoredEvent};
use tessera::audit::checkpoint::{verify_checkpoint, Checkpoint, SignedCheckpoint};
use tessera::audit::event::AuditEvent;
use tessera::cli::checkpoint_export::CheckpointExport;
use tessera::config::CheckpointArgs;
use tessera::domain::time::now_micros;
use tessera::service::audit_log::Verified;
use tessera::service::Service;

const DAY: i64 = 24 * 3600 * 1_000_000;
/// Between two exports: more than the least distance between two pruning
/// points a node keeps (a 1,024th of the retention).
const GAP: i64 = 5 * 60 * 1_000_000;

/// A node of the app's store keeping audit events for a day.
async fn node(app: &TestApp) -> Service {
    let mut limits = app.limits.clone();
    limits.audit_retention = Some(std::time::Duration::from_secs(24 * 3600));
    tessera::app::service_from_parts(app.store.clone(), app.keyring.clone(), limits)
        .await
        .unwrap()
}

/// Another node keeping events for a day: on PostgreSQL with a store (a
/// pool and chains) of its own, as a second process would have.
async fn other_node(app: &TestApp) -> Service {
    let store = match app.storage.pg {
        Some(_) => tessera::store::open(&app.storage.database_url())
            .await
            .unwrap(),
        None => app.store.clone(),
    };
    let mut limits = app.limits.clone();
    limits.audit_retention = Some(std::time::Duration::from_secs(24 * 3600));
    tessera::app::service_from_parts(store, app.keyring.clone(), limits)
        .await
        .unwrap()
}

fn file(app: &TestApp, name: &str) -> PathBuf {
    app.storage.dir.path().join(name)
}

/// The exporter of `file`, as a server opens it at start.
fn exporter(service: &Service, file: &Path) -> CheckpointExport {
    let args = CheckpointArgs {
        audit_checkpoint_file: Some(file.to_owned()),
        audit_checkpoint_stdout: false,
        audit_checkpoint_interval: 60,
    };
    CheckpointExport::open(&args, service).unwrap().unwrap()
}

/// The lines of `files`, each checked with the store's public key.
fn shipped(app: &TestApp, files: &[&Path]) -> Vec<Checkpoint> {
    let key = app.service().audit_log().audit_public_key();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| verify_checkpoint(key, &SignedCheckpoint::from_json_line(l).unwrap()))
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        })
        .collect()
}

async fn verify_with(app: &TestApp, files: &[&Path]) -> Verified {
    let lines = shipped(app, files);
    let service = app.service();
    service
        .audit_log()
        .verify_audit(service.audit_log().audit_public_key(), Some(&lines))
        .await
        .unwrap()
}

async fn verify_alone(app: &TestApp) -> Verified {
    let service = app.service();
    service
        .audit_log()
        .verify_audit(service.audit_log().audit_public_key(), None)
        .await
        .unwrap()
}

#[track_caller]
fn intact(v: Verified) -> (usize, usize) {
    match v {
        Verified::Intact { proved, pruned, .. } => (proved, pruned),
        Verified::Broken(b) => panic!("the log should verify: {b}"),
    }
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// The chain the test's writes went to, and its head.
async fn head(app: &TestApp) -> ChainHead {
    let last = all_events(app).await.pop().unwrap();
    ChainHead {
        chain: last.event.chain,
        seq: last.event.seq,
        mac: last.mac,
    }
}

/// The stored anchors, parsed.
async fn stored_anchors(app: &TestApp) -> Vec<Checkpoint> {
    app.store
        .audit_anchors()
        .await
        .unwrap()
        .iter()
        .map(|(_, line)| SignedCheckpoint::from_json_line(line).unwrap().checkpoint)
        .collect()
}

/// Old events go behind an anchor shipped first; the rest verifies with
/// and without the file; a crash after shipping an anchor and before the
/// deletion leaves a log that verifies and is pruned on the next round;
/// chains that did not move get no line, also after a restart.
async fn pruning_stands_on_shipped_anchors(app: TestApp) {
    let p = node(&app).await;
    let path = file(&app, "node-a.jsonl");
    let mut a = exporter(&p, &path);
    write_secrets(&app, 3, "p").await;
    let t0 = now_micros();
    assert!(a.export(&p, t0).await.unwrap() >= 1);
    let n = lines_in(&path);
    // Nothing moved: nothing shipped, and none after a restart either.
    assert_eq!(a.export(&p, t0 + 1).await.unwrap(), 0);
    assert_eq!(exporter(&p, &path).export(&p, t0 + 1).await.unwrap(), 0);
    assert_eq!(lines_in(&path), n);
    write_secrets(&app, 3, "r").await;
    assert_eq!(a.export(&p, t0 + GAP).await.unwrap(), 1);
    // Within the retention, nothing goes; two days on, the events up to
    // the first line shipped do (the last line's event stays).
    assert_eq!(a.prune(&p, t0 + DAY / 2).await.unwrap(), 0);
    let chain = head(&app).await.chain;
    let ours = |lines: Vec<Checkpoint>| -> Vec<Checkpoint> {
        lines.into_iter().filter(|c| c.chain == chain).collect()
    };
    let first = ours(shipped(&app, &[&path]))[0].seq;
    assert_eq!(a.prune(&p, t0 + 2 * DAY).await.unwrap(), first);
    let lines = ours(shipped(&app, &[&path]));
    let anchors: Vec<&Checkpoint> = lines.iter().filter(|c| c.is_anchor()).collect();
    assert_eq!(anchors.len(), 1);
    assert_eq!(anchors[0].seq, first);
    assert_eq!(stored_anchors(&app).await, [anchors[0].clone()]);
    // It names the last checkpoint shipped before it, which it was checked
    // against.
    let basis = anchors[0].prune.as_ref().unwrap();
    let before_it = &lines[lines.len() - 2];
    assert_eq!(
        (basis.checked_seq, basis.checked_mac),
        (before_it.seq, before_it.mac)
    );
    // The anchor and both lines proved: the first is where the anchor is.
    assert_eq!(intact(verify_with(&app, &[&path]).await), (3, 0));
    intact(verify_alone(&app).await);

    // A crash after the anchor was shipped, before the deletion committed:
    // the file shows a pruning the database has not made.
    write_secrets(&app, 2, "q").await;
    a.export(&p, t0 + 2 * GAP).await.unwrap();
    let plain: Vec<Checkpoint> = ours(shipped(&app, &[&path]))
        .into_iter()
        .filter(|c| !c.is_anchor())
        .collect();
    let last = plain[plain.len() - 1].head();
    let through = plain[plain.len() - 2].head();
    let anchor = p
        .audit_log()
        .audit_prune_anchor(&through, &last, first, t0 + 3 * DAY)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(f, "{}", anchor.to_json_line().unwrap()).unwrap();
    drop(f);
    intact(verify_with(&app, &[&path]).await);
    // Started again: it reads back the file and prunes on the next round.
    let mut again = exporter(&p, &path);
    assert_eq!(again.export(&p, t0 + 3 * DAY).await.unwrap(), 0);
    assert!(again.prune(&p, t0 + 3 * DAY).await.unwrap() > 0);
    assert_eq!(stored_anchors(&app).await[0].seq, through.seq);
    intact(verify_with(&app, &[&path]).await);
    intact(verify_alone(&app).await);
}

/// An event row as SQL, for forging.
fn insert_event(app: &TestApp, e: &StoredEvent) -> String {
    let ev = &e.event;
    let text = |s: &Option<String>| match s {
        Some(s) => format!("'{s}'"),
        None => "NULL".into(),
    };
    format!(
        "INSERT INTO audit_events (chain, seq, time, actor_key, actor_type, actor_user, org_id,
         team_id, action, target_id, target_name, result, request_id, client, detail, mac)
         VALUES ('{}', {}, {}, {}, {}, {}, {}, {}, '{}', {}, {}, '{}', {}, {}, {}, {});",
        ev.chain,
        ev.seq,
        ev.time,
        text(&ev.actor_key),
        text(&ev.actor_type),
        text(&ev.actor_user),
        text(&ev.org_id),
        text(&ev.team_id),
        ev.action,
        text(&ev.target_id),
        text(&ev.target_name),
        ev.result,
        text(&ev.request_id),
        text(&ev.client),
        text(&ev.detail),
        blob(app, &e.mac),
    )
}

/// Replaces `chain`'s stored anchor with `anchor` and its events with one
/// event chained to it, as an attacker holding the master key can.
async fn forge(app: &TestApp, anchor: &SignedCheckpoint, keep_after: bool) {
    let key = tessera::service::bootstrap::load_audit_key(app.store.as_ref(), &app.keyring)
        .await
        .unwrap();
    let c = &anchor.checkpoint;
    let mut statements = format!(
        "DELETE FROM audit_anchors WHERE chain = '{0}';
         INSERT INTO audit_anchors (chain, seq, checkpoint) VALUES ('{0}', {1}, '{2}');",
        c.chain,
        c.seq,
        anchor.to_json_line().unwrap()
    );
    if keep_after {
        statements.push_str(&format!(
            "DELETE FROM audit_events WHERE chain = '{}' AND seq <= {};",
            c.chain, c.seq
        ));
    } else {
        let event = AuditEvent {
            chain: c.chain.clone(),
            seq: c.seq + 1,
            time: now_micros(),
            actor_key: None,
            actor_type: Some("SYSTEM".into()),
            actor_user: None,
            org_id: None,
            team_id: None,
            action: "organization.create".into(),
            target_id: None,
            target_name: None,
            result: "ok".into(),
            request_id: None,
            client: None,
            detail: None,
        };
        let mac = link(&key, &c.mac, &event);
        statements.push_str(&format!(
            "DELETE FROM audit_events WHERE chain = '{}';",
            c.chain
        ));
        statements.push_str(&insert_event(app, &StoredEvent { event, mac }));
    }
    sql(app, &statements).await;
}

/// Issue 24's attack: with the master key in hand, the signing seed is
/// unwrapped, an anchor inserted past the last checkpoint shipped (or for a
/// prefix), the events deleted and one forged event chained to it. The
/// chain alone verifies; against the shipped file it fails, naming the
/// chain and the anchor's seq. The node itself refuses to go on from it.
async fn a_forged_anchor_fails_against_the_shipped_files(app: TestApp) {
    let p = node(&app).await;
    let path = file(&app, "node.jsonl");
    let mut a = exporter(&p, &path);
    write_secrets(&app, 3, "s").await;
    let t0 = now_micros();
    a.export(&p, t0).await.unwrap();
    let exported = head(&app).await;
    write_secrets(&app, 3, "t").await;
    let past = head(&app).await;
    assert!(past.seq > exported.seq);
    let signer =
        tessera::service::bootstrap::load_checkpoint_signer(app.store.as_ref(), &app.keyring)
            .await
            .unwrap();
    sql(
        &app,
        "CREATE TABLE events_backup AS SELECT * FROM audit_events",
    )
    .await;
    let restore = "DELETE FROM audit_anchors; DELETE FROM audit_events;
                   INSERT INTO audit_events SELECT * FROM events_backup";
    let chain = past.chain.clone();

    // Past the last checkpoint shipped: as an anchor, and as the plain
    // checkpoint the previous version stored.
    let forged_head = ChainHead {
        chain: chain.clone(),
        seq: past.seq + 5,
        mac: [9; 32],
    };
    for anchor in [
        signer.sign_anchor(&forged_head, t0, &forged_head),
        signer.sign(&forged_head, t0),
    ] {
        forge(&app, &anchor, false).await;
        intact(verify_alone(&app).await);
        let b = broken(verify_with(&app, &[&path]).await);
        assert_eq!((b.chain.as_str(), b.seq), (chain.as_str(), past.seq + 5));
        assert_eq!(b.kind, BreakKind::PrunedUnshipped);
        assert!(
            b.to_string().contains(&format!("seq {}", past.seq + 5)),
            "{b}"
        );
        sql(&app, restore).await;
    }

    // A prefix, through the very checkpoint shipped (its true MAC), and
    // through an earlier event, its events deleted.
    let events = all_events(&app).await;
    let earlier = events.iter().find(|e| e.event.chain == chain).unwrap();
    let earlier = ChainHead {
        chain: chain.clone(),
        seq: earlier.event.seq,
        mac: earlier.mac,
    };
    for (at, checked) in [(&exported, &exported), (&earlier, &exported)] {
        forge(&app, &signer.sign_anchor(at, t0, checked), true).await;
        intact(verify_alone(&app).await);
        let b = broken(verify_with(&app, &[&path]).await);
        assert_eq!((b.chain.as_str(), b.seq), (chain.as_str(), at.seq));
        assert_eq!(b.kind, BreakKind::PrunedUnshipped);
        sql(&app, restore).await;
    }
    intact(verify_with(&app, &[&path]).await);

    // The node, faced with an anchor past what it shipped, ships and prunes
    // nothing more of that chain (a later honest prune would hide it).
    forge(
        &app,
        &signer.sign_anchor(&forged_head, t0, &forged_head),
        false,
    )
    .await;
    let before = lines_in(&path);
    a.export(&p, t0 + 1).await.unwrap();
    assert_eq!(a.prune(&p, t0 + 3 * DAY).await.unwrap(), 0);
    let mut restarted = exporter(&p, &path);
    restarted.export(&p, t0 + 2).await.unwrap();
    assert_eq!(restarted.prune(&p, t0 + 3 * DAY).await.unwrap(), 0);
    assert!(shipped(&app, &[&path])[before..]
        .iter()
        .all(|c| c.chain != chain));
    assert_eq!(
        broken(verify_with(&app, &[&path]).await).kind,
        BreakKind::PrunedUnshipped
    );
}

/// A chain rewritten with the chain key before an honest prune: the node
/// finds that the log no longer continues its last line, ships no
/// checkpoint of the rewrite and prunes nothing of it, so the shipped
/// checkpoints still catch the rewrite.
async fn a_rewrite_is_not_pruned_away(app: TestApp) {
    let p = node(&app).await;
    let path = file(&app, "node.jsonl");
    let mut a = exporter(&p, &path);
    write_secrets(&app, 3, "s").await;
    let t0 = now_micros();
    a.export(&p, t0).await.unwrap();
    write_secrets(&app, 3, "t").await;
    a.export(&p, t0 + 1).await.unwrap();
    let top = head(&app).await;
    let key = tessera::service::bootstrap::load_audit_key(app.store.as_ref(), &app.keyring)
        .await
        .unwrap();
    let mut events: Vec<StoredEvent> = all_events(&app)
        .await
        .into_iter()
        .filter(|e| e.event.chain == top.chain)
        .collect();
    events.sort_by_key(|e| e.event.seq);
    let mut prev = events[0].mac;
    let mut rewrite = String::new();
    for e in &mut events[1..] {
        if e.event.seq == 2 {
            e.event.target_name = Some("rewritten".into());
        }
        e.mac = link(&key, &prev, &e.event);
        prev = e.mac;
        rewrite.push_str(&format!(
            "UPDATE audit_events SET target_name = {}, mac = {} WHERE chain = '{}' AND seq = {};",
            e.event
                .target_name
                .as_deref()
                .map_or("NULL".to_owned(), |n| format!("'{n}'")),
            blob(&app, &e.mac),
            top.chain,
            e.event.seq
        ));
    }
    sql(&app, &rewrite).await;
    intact(verify_alone(&app).await);
    let before = lines_in(&path);
    for mut n in [a, exporter(&p, &path)] {
        n.export(&p, t0 + 2).await.unwrap();
        assert_eq!(n.prune(&p, t0 + 3 * DAY).await.unwrap(), 0);
    }
    assert_eq!(lines_in(&path), before, "nothing shipped of the rewrite");
    assert!(stored_anchors(&app).await.is_empty());
    let b = broken(verify_with(&app, &[&path]).await);
    assert_eq!(
        (b.chain.as_str(), b.kind),
        (top.chain.as_str(), BreakKind::Rewritten)
    );
}

/// Two nodes, each with its own file, both pruning: verify needs every
/// node's file, and names the chain and seq when one is missing.
async fn several_nodes_each_ship_their_own_file(app: TestApp) {
    let (pa, pb) = (node(&app).await, other_node(&app).await);
    let (fa, fb) = (file(&app, "a.jsonl"), file(&app, "b.jsonl"));
    let (mut a, mut b) = (exporter(&pa, &fa), exporter(&pb, &fb));
    let t0 = now_micros();
    for (i, tag) in ["x", "y", "z"].into_iter().enumerate() {
        write_secrets(&app, 2, tag).await;
        a.export(&pa, t0 + i as i64 * GAP).await.unwrap();
        b.export(&pb, t0 + i as i64 * GAP).await.unwrap();
    }
    // A prunes through its second line (its last one stays).
    assert!(a.prune(&pa, t0 + GAP + DAY).await.unwrap() > 0);
    let anchor = stored_anchors(&app).await.remove(0);
    let v = broken(verify_with(&app, &[&fb]).await);
    assert_eq!(
        (v.chain.as_str(), v.seq),
        (anchor.chain.as_str(), anchor.seq)
    );
    assert_eq!(v.kind, BreakKind::PrunedUnshipped);
    intact(verify_with(&app, &[&fa, &fb]).await);
    // B goes on from its own lines (the pruning is behind them) and
    // prunes further; then its file alone shows the database's start.
    write_secrets(&app, 2, "w").await;
    assert!(b.export(&pb, t0 + 3 * GAP).await.unwrap() >= 1);
    assert!(b.prune(&pb, t0 + 2 * GAP + DAY).await.unwrap() > 0);
    assert!(stored_anchors(&app).await[0].seq > anchor.seq);
    intact(verify_with(&app, &[&fa, &fb]).await);
    intact(verify_with(&app, &[&fb]).await);
    assert!(a.export(&pa, t0 + 4 * GAP).await.unwrap() >= 1);
    intact(verify_with(&app, &[&fa, &fb]).await);
}

/// A crash while a line was being appended leaves it incomplete: the next
/// start cuts it off (it was never shipped whole, and nothing was pruned
/// on it), so the file stays one checkpoint per line and verifies.
async fn a_torn_last_line_is_cut_off_at_start(app: TestApp) {
    let p = node(&app).await;
    let path = file(&app, "node.jsonl");
    write_secrets(&app, 2, "s").await;
    let t0 = now_micros();
    exporter(&p, &path).export(&p, t0).await.unwrap();
    let whole = std::fs::read_to_string(&path).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    write!(f, "{}", &whole[..40]).unwrap();
    drop(f);
    let mut again = exporter(&p, &path);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
    write_secrets(&app, 2, "t").await;
    assert_eq!(again.export(&p, t0 + GAP).await.unwrap(), 1);
    assert_eq!(intact(verify_with(&app, &[&path]).await).0, lines_in(&path));
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    a_torn_last_line_is_cut_off_at_start,
    pruning_stands_on_shipped_anchors,
    a_forged_anchor_fails_against_the_shipped_files,
    a_rewrite_is_not_pruned_away,
    several_nodes_each_ship_their_own_file,
);
