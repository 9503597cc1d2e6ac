//! The keyring aggregate: the first master key recorded stands, and so does
//! the first key wrapped for a purpose, however many nodes race to record
//! theirs.

use super::tick;
use tessera_core::domain::types::KekRecord;
use tessera_store::DynStore;

fn kek(id: &str) -> KekRecord {
    KekRecord {
        kek_id: id.to_owned(),
        check_value: format!("check:{id}").into_bytes(),
        created_at: tick(),
    }
}

/// `record_first_kek` records on an empty store, then does nothing (no
/// error: the caller re-reads and verifies), whatever key is offered.
pub async fn first_kek_is_recorded_once(store: DynStore) {
    assert!(store.keks().await.unwrap().is_empty());
    let first = kek("kek-a");
    store.record_first_kek(first.clone()).await.unwrap();
    assert_eq!(store.keks().await.unwrap(), vec![first.clone()]);
    // The same key again, and another one: both do nothing.
    store.record_first_kek(first.clone()).await.unwrap();
    store.record_first_kek(kek("kek-b")).await.unwrap();
    assert_eq!(store.keks().await.unwrap(), vec![first]);
}

/// Nodes starting together on an empty database: exactly one key stands,
/// and every node succeeds.
pub async fn first_kek_race_keeps_one(store: DynStore) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.record_first_kek(kek(&format!("kek-{i}"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.keks().await.unwrap().len(), 1);
}

/// `insert_wrapped_key` stores the first key for a purpose and then does
/// nothing; purposes are independent.
pub async fn wrapped_key_first_stands(store: DynStore) {
    assert_eq!(store.wrapped_key("fingerprint").await.unwrap(), None);
    store
        .insert_wrapped_key("fingerprint", "kek-a", vec![1, 2, 3], tick())
        .await
        .unwrap();
    store
        .insert_wrapped_key("fingerprint", "kek-b", vec![9], tick())
        .await
        .unwrap();
    assert_eq!(
        store.wrapped_key("fingerprint").await.unwrap(),
        Some(("kek-a".to_owned(), vec![1, 2, 3]))
    );
    assert_eq!(store.wrapped_key("other").await.unwrap(), None);
    store
        .insert_wrapped_key("other", "kek-b", vec![4], tick())
        .await
        .unwrap();
    assert_eq!(
        store.wrapped_key("other").await.unwrap(),
        Some(("kek-b".to_owned(), vec![4]))
    );
}

/// Two nodes insert a key for the same purpose at once: both succeed, one
/// key wins, and both then read the same one.
pub async fn wrapped_key_race_one_wins(store: DynStore) {
    let insert = |i: u8| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .insert_wrapped_key("fingerprint", &format!("kek-{i}"), vec![i; 16], tick())
                .await?;
            store.wrapped_key("fingerprint").await
        })
    };
    let (a, b) = (insert(1), insert(2));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(a, b);
    let (kek_id, wrapped) = a.unwrap();
    let i = if kek_id == "kek-1" { 1 } else { 2 };
    assert_eq!((kek_id, wrapped), (format!("kek-{i}"), vec![i; 16]));
}
