//! The quota on the bytes of a team's current values (migration 0010): a
//! write that grows them past the write's quota is refused and changes
//! nothing; one that keeps or shrinks them passes, also when the team is
//! already over a lowered quota; concurrent updates batched together (on
//! PostgreSQL) count each other's growth.

use super::{assert_err, quota, sealed, Org};
use tessera_core::domain::ids::new_id;
use tessera_store::{DynStore, SealedWrite};

const QUOTA: &str =
    "bytes of current values per team (the plaintext lengths of every secret's current value)";

/// A sealed write whose value has `bytes` bytes of plaintext (a blob is
/// its plaintext and 106 bytes), under a quota of `max` bytes.
fn write(name: &str, id: &str, exists: bool, bytes: usize, max: i64) -> SealedWrite {
    let mut w = sealed(name, id, exists);
    w.ciphertext = vec![7u8; 106 + bytes];
    w.max_team_bytes = max;
    w
}

pub async fn over_a_lowered_quota_only_growth_is_refused(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let a = new_id();
    let b = new_id();
    store
        .upsert_secret(&team, write("a", &a, false, 600, 1000), 10)
        .await
        .unwrap();
    store
        .upsert_secret(&team, write("b", &b, false, 400, 1000), 10)
        .await
        .unwrap();
    let revision = store.team_revision(&team).await.unwrap();
    // The quota is now lowered to 500: 1,000 bytes are over it.
    assert_err(
        store
            .upsert_secret(&team, write("c", &new_id(), false, 1, 500), 10)
            .await,
        quota(QUOTA, 500),
    );
    assert_err(
        store
            .upsert_secret(&team, write("a", &a, true, 601, 500), 10)
            .await,
        quota(QUOTA, 500),
    );
    assert_eq!(store.team_revision(&team).await.unwrap(), revision);
    // An empty new value, the same length, a shorter one: all pass.
    store
        .upsert_secret(&team, write("empty", &new_id(), false, 0, 500), 10)
        .await
        .unwrap();
    store
        .upsert_secret(&team, write("a", &a, true, 600, 500), 10)
        .await
        .unwrap();
    store
        .upsert_secret(&team, write("a", &a, true, 100, 500), 10)
        .await
        .unwrap();
    // 500 bytes now: at the quota, not over it.
    assert_err(
        store
            .upsert_secret(&team, write("b", &b, true, 401, 500), 10)
            .await,
        quota(QUOTA, 500),
    );
    let d = new_id();
    store
        .upsert_secret(&team, write("d", &d, false, 0, 500), 10)
        .await
        .unwrap();
    // A deletion frees its bytes.
    store
        .delete_secret(&team, "b", &crate::deleted())
        .await
        .unwrap()
        .unwrap();
    store
        .upsert_secret(&team, write("d", &d, true, 400, 500), 10)
        .await
        .unwrap();
    assert_err(
        store
            .upsert_secret(&team, write("d", &d, true, 401, 500), 10)
            .await,
        quota(QUOTA, 500),
    );
}

/// Updates sent at once (batched together on PostgreSQL) that each fit
/// but together do not: on SQLite the total never passes the quota; on
/// PostgreSQL by at most what a concurrent batch added.
pub async fn concurrent_growth_stays_within_the_quota(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let mut ids = Vec::new();
    for i in 0..8 {
        let id = new_id();
        store
            .upsert_secret(&team, write(&format!("s{i}"), &id, false, 0, 1000), 10)
            .await
            .unwrap();
        ids.push(id);
    }
    let grown: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (store, team) = (store.clone(), team.clone());
            let w = write(&format!("s{i}"), id, true, 300, 1000);
            tokio::spawn(async move { store.upsert_secret(&team, w, 10).await })
        })
        .collect();
    let mut applied = 0;
    for g in grown {
        match g.await.unwrap() {
            Ok(_) => applied += 1,
            Err(e) => assert_err::<()>(Err(e), quota(QUOTA, 1000)),
        }
    }
    if store.backend() == "sqlite" {
        // One writer: every write sees the ones before it.
        assert_eq!(applied, 3, "three 300-byte values fit in 1,000 bytes");
    } else {
        // Updates batched together count each other; two batches in flight
        // at once each check against the total committed before them
        // (docs/compatibility.md), so each applies at most three.
        assert!((3..=6).contains(&applied), "{applied} applied");
    }
    // Over or at the quota now: any further growth is refused.
    assert_err(
        store
            .upsert_secret(&team, write("extra", &new_id(), false, 101, 1000), 10)
            .await,
        quota(QUOTA, 1000),
    );
}
