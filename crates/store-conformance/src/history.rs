//! The history aggregate: previous versions moved by the update that
//! replaces them (batched or not), kept up to the write's retention,
//! destroyed on request; deleted secrets kept, undeleted and purged; who
//! received which version.

use super::{
    assert_err, conflict, create_secret, deleted, event, not_found, quota, sealed, tick,
    update_secret, Org,
};
use tessera_core::domain::consumer_kind::ConsumerKind;
use tessera_core::domain::ids::new_id;
use tessera_store::{
    Actor, ConsumerCap, ConsumerSeen, Deletion, Destroyed, DynStore, StoredVersion, WriteHistory,
};

fn history(keep: i64, destroy: bool, by: &str) -> WriteHistory {
    WriteHistory {
        actor: Actor {
            key_prefix: Some(by.to_owned()),
            user_id: Some(format!("user-{by}")),
        },
        keep_versions: keep,
        destroy_previous: destroy,
    }
}

/// Each update moves the version it replaces, with its writer and time, to
/// the history; the listing is newest first with the current one on top;
/// the oldest beyond the write's `keep_versions` are dropped.
pub async fn updates_keep_previous_versions(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let id = new_id();
    let mut writes = Vec::new();
    for (i, by) in ["k1", "k2", "k3", "k4"].iter().enumerate() {
        let mut w = sealed("token", &id, i > 0);
        w.history = history(2, false, by);
        writes.push(w.clone());
        store.upsert_secret(&team, w, 10).await.unwrap();
    }
    let h = store.secret_history(&team, "token").await.unwrap().unwrap();
    assert_eq!(h.record.id, id);
    let listed: Vec<(i64, bool, Option<&str>, i64)> = h
        .versions
        .iter()
        .map(|v| {
            (
                v.version,
                v.current,
                v.actor.key_prefix.as_deref(),
                v.written_at,
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (4, true, Some("k4"), writes[3].now),
            (3, false, Some("k3"), writes[2].now),
            (2, false, Some("k2"), writes[1].now),
        ]
    );
    assert_eq!(h.versions[1].actor.user_id.as_deref(), Some("user-k3"));
    assert!(h.versions.iter().all(|v| v.destroyed_at.is_none()));
    assert_eq!(
        store.stored_version(&team, &id, 3).await.unwrap(),
        Some(StoredVersion::Sealed {
            version_id: Some(writes[2].version_id.clone()),
            ciphertext: writes[2].ciphertext.clone(),
        })
    );
    assert_eq!(
        store.stored_version(&team, &id, 4).await.unwrap(),
        Some(StoredVersion::Current)
    );
    assert_eq!(store.stored_version(&team, &id, 1).await.unwrap(), None);
    assert_eq!(
        store.stored_version(&team, &new_id(), 1).await.unwrap(),
        None
    );
    assert!(store.secret_history(&team, "nope").await.unwrap().is_none());
    // Another team of the organization sees none of it.
    let other = acme.team(&acme.new_team(&*store, "other").await);
    assert_eq!(store.stored_version(&other, &id, 3).await.unwrap(), None);
}

/// `destroy_previous` clears every earlier ciphertext at once and keeps
/// their metadata; keeping 0 versions keeps no metadata either.
pub async fn destroy_previous_clears_earlier_ciphertexts(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    for _ in 0..3 {
        create_or_update(&store, &team, "aws").await;
    }
    let id = store.secret_id(&team, "aws").await.unwrap().unwrap();
    let mut w = sealed("aws", &id, true);
    w.history = history(10, true, "rotator");
    store.upsert_secret(&team, w.clone(), 10).await.unwrap();
    let h = store.secret_history(&team, "aws").await.unwrap().unwrap();
    let destroyed: Vec<(i64, Option<i64>)> = h
        .versions
        .iter()
        .map(|v| (v.version, v.destroyed_at))
        .collect();
    assert_eq!(
        destroyed,
        vec![
            (4, None),
            (3, Some(w.now)),
            (2, Some(w.now)),
            (1, Some(w.now))
        ]
    );
    for v in 1..=3 {
        assert_eq!(
            store.stored_version(&team, &id, v).await.unwrap(),
            Some(StoredVersion::Destroyed)
        );
    }
    let mut w = sealed("aws", &id, true);
    w.history = history(0, false, "rotator");
    store.upsert_secret(&team, w, 10).await.unwrap();
    let h = store.secret_history(&team, "aws").await.unwrap().unwrap();
    assert_eq!(h.versions.len(), 1);
}

async fn create_or_update(
    store: &DynStore,
    team: &tessera_core::domain::access::TeamAccess<tessera_core::domain::access::WriteSecrets>,
    name: &str,
) {
    if store.secret_id(team, name).await.unwrap().is_some() {
        update_secret(&**store, team, name).await;
    } else {
        create_secret(&**store, team, name).await;
    }
}

/// Destroying one version: its ciphertext goes, its metadata stays; the
/// current version, a missing one and another team's are refused.
pub async fn destroy_one_version(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    for _ in 0..3 {
        create_or_update(&store, &team, "cert").await;
    }
    let id = store.secret_id(&team, "cert").await.unwrap().unwrap();
    let now = tick();
    assert_eq!(
        store
            .destroy_version(&team, &id, 2, now, event("v"))
            .await
            .unwrap(),
        Destroyed::Now
    );
    assert_eq!(
        store
            .destroy_version(&team, &id, 2, tick(), event("v"))
            .await
            .unwrap(),
        Destroyed::Already
    );
    assert_eq!(
        store
            .destroy_version(&team, &id, 3, now, event("v"))
            .await
            .unwrap(),
        Destroyed::Current
    );
    assert_eq!(
        store
            .destroy_version(&team, &id, 9, now, event("v"))
            .await
            .unwrap(),
        Destroyed::Missing
    );
    let other = acme.team(&acme.new_team(&*store, "other").await);
    assert_eq!(
        store
            .destroy_version(&other, &id, 1, now, event("v"))
            .await
            .unwrap(),
        Destroyed::Missing
    );
    let h = store.secret_history(&team, "cert").await.unwrap().unwrap();
    let destroyed: Vec<Option<i64>> = h.versions.iter().map(|v| v.destroyed_at).collect();
    assert_eq!(destroyed, vec![None, Some(now), None]);
    assert!(matches!(
        store.stored_version(&team, &id, 1).await.unwrap(),
        Some(StoredVersion::Sealed { .. })
    ));
}

/// A kept deletion frees the name and keeps the secret (with its
/// versions) among the deleted; undelete brings back the same id and
/// versions, moving the revision; a taken name, a missing id and a full
/// team are refused with nothing changed.
pub async fn deleted_secrets_round_trip(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let first = create_secret(&*store, &team, "hook").await.record;
    update_secret(&*store, &team, "hook").await;
    let how = deleted();
    let gone = store
        .delete_secret(&team, "hook", &how)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.record.id, first.id);
    let listed = store.deleted_secrets(&team).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].record.id.as_str(),
            listed[0].record.version,
            listed[0].deleted_at,
            listed[0].deleted_by.as_deref()
        ),
        (first.id.as_str(), 2, how.at, Some("deleter1"))
    );
    // The name is free: a new secret of that name is a new secret.
    let second = create_secret(&*store, &team, "hook").await.record;
    assert_ne!(second.id, first.id);
    assert_err(
        store
            .undelete_secret(&team, &first.id, 10, i64::MAX, event("u"))
            .await,
        conflict("a secret with this name exists again; delete or rename it first"),
    );
    assert_eq!(store.deleted_secrets(&team).await.unwrap().len(), 1);
    store
        .delete_secret(&team, "hook", &deleted())
        .await
        .unwrap();
    let before = store.team_revision(&team).await.unwrap();
    let back = store
        .undelete_secret(&team, &first.id, 10, i64::MAX, event("u"))
        .await
        .unwrap();
    assert_eq!(back.record.id, first.id);
    assert_eq!(back.record.version, 2);
    assert!(back.revision > before);
    let h = store.secret_history(&team, "hook").await.unwrap().unwrap();
    assert_eq!(h.versions.len(), 2);
    assert_err(
        store
            .undelete_secret(&team, &first.id, 10, i64::MAX, event("u"))
            .await,
        not_found("no such deleted secret"),
    );
    // Full team: the second "hook" cannot come back while the first lives.
    let other = acme.team(&acme.new_team(&*store, "full").await);
    create_secret(&*store, &other, "a").await;
    let b = create_secret(&*store, &other, "b").await.record;
    store.delete_secret(&other, "b", &deleted()).await.unwrap();
    create_secret(&*store, &other, "c").await;
    assert_err(
        store
            .undelete_secret(&other, &b.id, 2, i64::MAX, event("u"))
            .await,
        quota("secrets per team", 2),
    );
    assert_eq!(store.deleted_secrets(&other).await.unwrap().len(), 1);
    // Another team cannot undelete it.
    assert_err(
        store
            .undelete_secret(&team, &b.id, 10, i64::MAX, event("u"))
            .await,
        not_found("no such deleted secret"),
    );
}

/// A deletion that is not kept removes the versions with the secret; the
/// purge removes what was deleted before the cut-off, and only that.
pub async fn purges_remove_secrets_and_versions(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let a = create_secret(&*store, &team, "a").await.record;
    update_secret(&*store, &team, "a").await;
    let at = tick();
    let removed = Deletion {
        at,
        by: None,
        keep: false,
        max_kept: 1_000,
        audit: event("secret.delete"),
    };
    store.delete_secret(&team, "a", &removed).await.unwrap();
    assert!(store.deleted_secrets(&team).await.unwrap().is_empty());
    assert_eq!(store.stored_version(&team, &a.id, 1).await.unwrap(), None);

    create_secret(&*store, &team, "old").await;
    update_secret(&*store, &team, "old").await;
    let old_deletion = deleted();
    store
        .delete_secret(&team, "old", &old_deletion)
        .await
        .unwrap();
    create_secret(&*store, &team, "new").await;
    let cutoff = tick();
    store.delete_secret(&team, "new", &deleted()).await.unwrap();
    assert_eq!(store.purge_expired(cutoff, 0, event("x")).await.unwrap(), 1);
    let left: Vec<String> = store
        .deleted_secrets(&team)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.record.name)
        .collect();
    assert_eq!(left, vec!["new"]);
    let new_id_ = store.deleted_secrets(&team).await.unwrap()[0]
        .record
        .id
        .clone();
    assert!(store
        .purge_deleted_secret(&team, &new_id_, event("p"))
        .await
        .unwrap());
    assert!(!store
        .purge_deleted_secret(&team, &new_id_, event("p"))
        .await
        .unwrap());
    assert!(store.deleted_secrets(&team).await.unwrap().is_empty());
}

/// A team keeps at most `max_kept` deleted secrets: a deletion beyond that
/// purges the oldest, with its versions.
pub async fn the_oldest_deleted_secrets_make_room(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(create_secret(&*store, &team, name).await.record.id);
        update_secret(&*store, &team, name).await;
        let how = Deletion {
            max_kept: 2,
            ..deleted()
        };
        store.delete_secret(&team, name, &how).await.unwrap();
    }
    let left: Vec<String> = store
        .deleted_secrets(&team)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.record.name)
        .collect();
    assert_eq!(left, vec!["c", "b"]);
    assert_err(
        store
            .undelete_secret(&team, &ids[0], 10, i64::MAX, event("u"))
            .await,
        not_found("no such deleted secret"),
    );
    // The ones kept come back with their versions.
    store
        .undelete_secret(&team, &ids[1], 10, i64::MAX, event("u"))
        .await
        .unwrap();
    let h = store.secret_history(&team, "b").await.unwrap().unwrap();
    assert_eq!(h.versions.len(), 2);
}

/// Consumers: the latest version each received, newest first, only within
/// the team; an older report never overwrites a newer one (its kind
/// included); consumers not
/// seen since the cut-off are forgotten by the purge.
pub async fn consumers_record_the_latest_version(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let s = create_secret(&*store, &team, "s").await.record;
    let seen = |instance: &str, version: i64, at: i64| ConsumerSeen {
        key_prefix: "reader01".into(),
        instance: instance.into(),
        team_id: team.team_id().to_owned(),
        // "b" is a one-shot run when last seen; its older report said agent.
        kind: match (instance, version) {
            ("b", 2) => ConsumerKind::OneShot,
            _ => ConsumerKind::Agent,
        },
        client: Some("10.0.0.1".into()),
        seen_at: at,
        received: vec![(s.id.clone(), version, at)],
    };
    let (t1, t2, t3) = (tick(), tick(), tick());
    store
        .record_consumers(vec![seen("a", 1, t1), seen("b", 2, t2)], CAP)
        .await
        .unwrap();
    // An older report of "b" arrives late: it does not win.
    store
        .record_consumers(vec![seen("b", 1, t1)], CAP)
        .await
        .unwrap();
    store
        .record_consumers(vec![seen("a", 1, t3)], CAP)
        .await
        .unwrap();
    let c = store.secret_consumers(&team, &s.id).await.unwrap();
    let got: Vec<(&str, i64, i64, i64, ConsumerKind)> = c
        .iter()
        .map(|c| {
            (
                c.instance.as_str(),
                c.version,
                c.received_at,
                c.last_seen_at,
                c.kind,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("b", 2, t2, t2, ConsumerKind::OneShot),
            ("a", 1, t3, t3, ConsumerKind::Agent)
        ]
    );
    let other = acme.team(&acme.new_team(&*store, "other").await);
    assert!(store
        .secret_consumers(&other, &s.id)
        .await
        .unwrap()
        .is_empty());
    store.purge_expired(0, t3, event("x")).await.unwrap();
    let c = store.secret_consumers(&team, &s.id).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].instance, "a");
}

/// Issue 24, finding 4: however many instance ids one key's clients
/// invent, the store keeps only the key's most recently seen consumers (and
/// their versions); another key's are untouched.
pub async fn consumers_are_capped_per_key(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let s = create_secret(&*store, &team, "s").await.record;
    let seen = |key: &str, instance: String, at: i64| ConsumerSeen {
        key_prefix: key.into(),
        instance,
        team_id: team.team_id().to_owned(),
        kind: ConsumerKind::Agent,
        client: None,
        seen_at: at,
        received: vec![(s.id.clone(), 1, at)],
    };
    let three = ConsumerCap {
        consumers: 3,
        versions: 1000,
    };
    store
        .record_consumers(vec![seen("other001", "stays".into(), tick())], three)
        .await
        .unwrap();
    for round in 0..4 {
        let batch = (0..5)
            .map(|i| seen("reader01", format!("r{round}-{i}"), tick()))
            .collect();
        store.record_consumers(batch, three).await.unwrap();
    }
    let c = store.secret_consumers(&team, &s.id).await.unwrap();
    let mut got: Vec<(&str, &str)> = c
        .iter()
        .map(|c| (c.key_prefix.as_str(), c.instance.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("other001", "stays"),
            ("reader01", "r3-2"),
            ("reader01", "r3-3"),
            ("reader01", "r3-4")
        ]
    );
    // A budget of version rows: one each here, so two consumers are left.
    let two_rows = ConsumerCap {
        consumers: 100,
        versions: 2,
    };
    store
        .record_consumers(vec![seen("reader01", "last".into(), tick())], two_rows)
        .await
        .unwrap();
    let c = store.secret_consumers(&team, &s.id).await.unwrap();
    let mut got: Vec<(&str, &str)> = c
        .iter()
        .map(|c| (c.key_prefix.as_str(), c.instance.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("other001", "stays"),
            ("reader01", "last"),
            ("reader01", "r3-4")
        ]
    );
}

/// A cap that never evicts in these tests.
const CAP: ConsumerCap = ConsumerCap {
    consumers: 1000,
    versions: 100_000,
};

/// Deleting a team removes its secrets' history too.
pub async fn team_deletion_removes_history(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team_record = acme.new_team(&*store, "doomed").await;
    let team = acme.team(&team_record);
    create_secret(&*store, &team, "x").await;
    update_secret(&*store, &team, "x").await;
    create_secret(&*store, &team, "y").await;
    store.delete_secret(&team, "y", &deleted()).await.unwrap();
    store
        .delete_team(&team, true, crate::event("x"))
        .await
        .unwrap();
    assert!(store.deleted_secrets(&team).await.unwrap().is_empty());
}
