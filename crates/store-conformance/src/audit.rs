//! The audit aggregate: events appended on their own, read back chain by
//! chain in seq order; every chain's head; pruning a chain's prefix behind
//! a stored checkpoint (a later one replaces an earlier one, never the
//! reverse; the last event always stays); an organization's events newest
//! first, filtered and paged.

use super::event;
use tessera_core::audit::chain::ChainHead;
use tessera_core::audit::event::AuditEvent;
use tessera_store::{AuditFilter, DynStore};

fn org_event(action: &str, org: &str, time: i64, target: &str) -> AuditEvent {
    let mut e = event(action);
    e.org_id = Some(org.into());
    e.time = time;
    e.target_name = Some(target.into());
    e
}

/// The one chain the test's events went to.
async fn only_chain(store: &DynStore) -> String {
    let chains = store.audit_chains().await.unwrap();
    assert_eq!(chains.len(), 1, "{chains:?}");
    chains[0].clone()
}

pub async fn appended_events_read_back_in_order(store: DynStore) {
    assert!(store.audit_chains().await.unwrap().is_empty());
    assert!(store.audit_heads().await.unwrap().is_empty());
    let events: Vec<AuditEvent> = (0..5).map(|i| event(&format!("a.{i}"))).collect();
    store.append_audit(events).await.unwrap();
    let chain = only_chain(&store).await;
    let all = store.audit_events(&chain, 0, 100).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(all[2].event.action, "a.2");
    // Paging: after a seq, at most `limit`.
    let page = store.audit_events(&chain, 2, 2).await.unwrap();
    let seqs: Vec<u64> = page.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, [3, 4]);
    assert!(store
        .audit_events("no-such-chain", 0, 10)
        .await
        .unwrap()
        .is_empty());
    let heads = store.audit_heads().await.unwrap();
    assert_eq!(
        heads,
        [ChainHead {
            chain: chain.clone(),
            seq: 5,
            mac: all[4].mac
        }]
    );
}

pub async fn pruning_keeps_the_latest_anchor(store: DynStore) {
    let events: Vec<AuditEvent> = (0..6)
        .map(|i| org_event("a", "org1", 1_000 + i, "t"))
        .collect();
    store.append_audit(events).await.unwrap();
    let chain = only_chain(&store).await;
    let deleted = store
        .prune_audit(&chain, 3, "anchor-3".into(), event("audit.prune"))
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(
        store.audit_anchors().await.unwrap(),
        [(chain.clone(), "anchor-3".to_owned())]
    );
    let left: Vec<u64> = store
        .audit_events(&chain, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.seq)
        .collect();
    // The pruning is an event of its own, in the same chain (one writer).
    assert_eq!(left, [4, 5, 6, 7]);
    // An earlier anchor never replaces a later one (two nodes pruning at
    // once); a later one does.
    assert_eq!(
        store
            .prune_audit(&chain, 2, "anchor-2".into(), event("audit.prune"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.audit_anchors().await.unwrap()[0].1, "anchor-3");
    store
        .prune_audit(&chain, 5, "anchor-5".into(), event("audit.prune"))
        .await
        .unwrap();
    assert_eq!(store.audit_anchors().await.unwrap()[0].1, "anchor-5");
}

pub async fn an_organizations_events_newest_first(store: DynStore) {
    let mut events = Vec::new();
    for i in 0..6 {
        let mut e = org_event("secret.write", "org1", 10 + i, &format!("s{i}"));
        e.actor_user = Some(if i % 2 == 0 { "u-even" } else { "u-odd" }.into());
        events.push(e);
    }
    events.push(org_event("secret.write", "org2", 12, "s2"));
    // Two events at the same time: the seq decides.
    events.push(org_event("team.create", "org1", 15, "t1"));
    store.append_audit(events).await.unwrap();
    let names = |events: &[tessera_core::audit::chain::StoredEvent]| -> Vec<String> {
        events
            .iter()
            .map(|e| e.event.target_name.clone().unwrap_or_default())
            .collect()
    };
    let all = store
        .query_audit("org1", &AuditFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(names(&all), ["t1", "s5", "s4", "s3", "s2", "s1", "s0"]);
    let by = |f: &dyn Fn(&mut AuditFilter)| {
        let mut q = AuditFilter::default();
        f(&mut q);
        let store = store.clone();
        async move { names(&store.query_audit("org1", &q, 100).await.unwrap()) }
    };
    assert_eq!(by(&|q| q.action = Some("team.create".into())).await, ["t1"]);
    assert_eq!(by(&|q| q.target = Some("s2".into())).await, ["s2"]);
    assert_eq!(
        by(&|q| q.actor = Some("u-odd".into())).await,
        ["s5", "s3", "s1"]
    );
    assert_eq!(by(&|q| q.actor = Some("actor001".into())).await.len(), 7);
    assert_eq!(
        by(&|q| {
            q.since = Some(12);
            q.until = Some(15);
        })
        .await,
        ["s4", "s3", "s2"]
    );
    let any = AuditFilter::default();
    assert!(store
        .query_audit("org3", &any, 100)
        .await
        .unwrap()
        .is_empty());
    // Pages: each starts after the last event of the one before.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let q = AuditFilter {
            after: after.clone(),
            ..Default::default()
        };
        let page = store.query_audit("org1", &q, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.event.time, last.event.chain.clone(), last.event.seq));
        pages.push(names(&page));
    }
    assert_eq!(
        pages,
        [vec!["t1", "s5", "s4"], vec!["s3", "s2", "s1"], vec!["s0"]]
    );
}

/// A write whose caller goes away mid-flight (a client that disconnects
/// while its request's commit is on its way) leaves every chain usable: the
/// next writes get fresh seqs, none is refused as a repeated one. Each
/// abandoned write is cut at a different point, from before its first
/// statement to after its commit was sent.
pub async fn writes_abandoned_mid_commit_leave_the_chain_usable(store: DynStore) {
    let acme = super::Org::create(&*store, "acme").await;
    let team = acme.default_access();
    for i in 0..300u64 {
        let budget = std::time::Duration::from_micros(20 + (i * 37) % 3_000);
        let write = store.upsert_secret(
            &team,
            super::sealed(
                &format!("c{i}"),
                &tessera_core::domain::ids::new_id(),
                false,
            ),
            1_000,
        );
        if let Ok(done) = tokio::time::timeout(budget, write).await {
            done.unwrap();
        }
    }
    for i in 0..50 {
        super::create_secret(&*store, &team, &format!("after{i}")).await;
    }
}
