//! The secret aggregate: sealed writes applied only where their expectation
//! holds, the team's revision moving with every change, listings in a
//! stable order with cursors, and delivery snapshots of one instant.

use super::{assert_err, create_secret, not_found, quota, sealed, update_secret, Org};
use tessera_core::domain::ids::new_id;
use tessera_core::domain::types::ListedSecret;
use tessera_store::StoreError::Stale;
use tessera_store::{DynStore, Store, StoredSecret};

/// A creation gives version 1 and the write's spelling; an update of the
/// same id keeps id, spelling and `created_at`, gains a version and stores
/// the new ciphertext. Each moves the team's revision, and only its team's.
pub async fn create_then_update(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let other_team = acme.team(&acme.new_team(&*store, "other").await);
    let before = store.team_revision(&team).await.unwrap();
    let other_before = store.team_revision(&other_team).await.unwrap();

    let create = sealed("api-key", &new_id(), false);
    let created = store
        .upsert_secret(&team, create.clone(), 10)
        .await
        .unwrap();
    let r = &created.record;
    assert_eq!(
        (
            r.id.as_str(),
            r.name.as_str(),
            r.canonical_name.as_str(),
            r.version
        ),
        (create.secret_id.as_str(), "api-key", "api_key", 1)
    );
    assert_eq!((r.created_at, r.updated_at), (create.now, create.now));
    assert_eq!(
        (r.org_id.as_str(), r.team_id.as_str(), r.team_name.as_str()),
        (acme.org.id.as_str(), team.team_id(), "default")
    );
    assert!(created.revision > before);
    assert_eq!(store.team_revision(&team).await.unwrap(), created.revision);
    assert_eq!(
        store.secret_id(&team, "api_key").await.unwrap().as_deref(),
        Some(create.secret_id.as_str())
    );
    assert_eq!(
        store.latest_secret(&team, "api_key").await.unwrap(),
        Some(StoredSecret {
            record: created.record.clone(),
            version_id: Some(create.version_id.clone()),
            ciphertext: create.ciphertext.clone(),
        })
    );

    // Another spelling of the same canonical name updates it.
    let update = sealed("api.key", &create.secret_id, true);
    let updated = store
        .upsert_secret(&team, update.clone(), 10)
        .await
        .unwrap();
    let mut expected = created.record.clone();
    expected.updated_at = update.now;
    expected.version = 2;
    assert_eq!(updated.record, expected);
    assert!(updated.revision > created.revision);
    assert_eq!(
        store.latest_secret(&team, "api_key").await.unwrap(),
        Some(StoredSecret {
            record: expected,
            version_id: Some(update.version_id),
            ciphertext: update.ciphertext,
        })
    );
    assert_eq!(
        store.team_revision(&other_team).await.unwrap(),
        other_before
    );
}

/// `Stale` whenever the write's expectation no longer holds, and then
/// nothing changes: not the secret, not the revision.
pub async fn stale_expectations_change_nothing(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let first = create_secret(&*store, &team, "token").await;
    let id = first.record.id.clone();
    let unchanged = |store: DynStore| {
        let team = team.clone();
        let first = first.clone();
        async move {
            let latest = store.latest_secret(&team, "token").await.unwrap().unwrap();
            assert_eq!(latest.record, first.record);
            assert_eq!(store.team_revision(&team).await.unwrap(), first.revision);
        }
    };
    for (id, exists) in [
        // Created meanwhile: a creation under another id.
        (new_id(), false),
        // Re-created meanwhile: an update of another id.
        (new_id(), true),
        // A creation under the existing id still expects the name to be free.
        (id.clone(), false),
    ] {
        assert_err(
            store
                .upsert_secret(&team, sealed("token", &id, exists), 10)
                .await,
            Stale,
        );
        unchanged(store.clone()).await;
    }
    // Never created: an update finds nothing.
    assert_err(
        store
            .upsert_secret(&team, sealed("absent", &new_id(), true), 10)
            .await,
        Stale,
    );
    assert_eq!(store.latest_secret(&team, "absent").await.unwrap(), None);
    unchanged(store.clone()).await;

    // Deleted and re-created meanwhile: the old id no longer holds.
    store
        .delete_secret(&team, "token", &crate::deleted())
        .await
        .unwrap()
        .unwrap();
    assert_err(
        store
            .upsert_secret(&team, sealed("token", &id, true), 10)
            .await,
        Stale,
    );
    assert_eq!(store.latest_secret(&team, "token").await.unwrap(), None);
    let again = create_secret(&*store, &team, "token").await;
    assert_ne!(again.record.id, id);
    assert_eq!(again.record.version, 1);
    assert_err(
        store
            .upsert_secret(&team, sealed("token", &id, true), 10)
            .await,
        Stale,
    );
}

/// `max_secrets` limits new secrets per team only: updates at the quota
/// succeed, a refused creation stores nothing, a deletion makes room, and
/// other teams count their own.
pub async fn quota_counts_new_secrets_per_team(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let other = acme.team(&acme.new_team(&*store, "other").await);
    for name in ["a", "b"] {
        store
            .upsert_secret(&team, sealed(name, &new_id(), false), 2)
            .await
            .unwrap();
    }
    let revision = store.team_revision(&team).await.unwrap();
    assert_err(
        store
            .upsert_secret(&team, sealed("c", &new_id(), false), 2)
            .await,
        quota("secrets per team", 2),
    );
    assert_eq!(store.latest_secret(&team, "c").await.unwrap(), None);
    assert_eq!(store.secret_id(&team, "c").await.unwrap(), None);
    assert_eq!(store.team_revision(&team).await.unwrap(), revision);
    // At the quota, a creation of a name that exists is `Stale`, not
    // `QuotaExceeded`: the caller re-reads and updates it.
    assert_err(
        store
            .upsert_secret(&team, sealed("a", &new_id(), false), 2)
            .await,
        Stale,
    );

    let id = store.secret_id(&team, "a").await.unwrap().unwrap();
    store
        .upsert_secret(&team, sealed("a", &id, true), 2)
        .await
        .unwrap();
    store
        .upsert_secret(&other, sealed("c", &new_id(), false), 2)
        .await
        .unwrap();
    store
        .delete_secret(&team, "b", &crate::deleted())
        .await
        .unwrap()
        .unwrap();
    store
        .upsert_secret(&team, sealed("c", &new_id(), false), 2)
        .await
        .unwrap();
}

/// `delete_secret` returns what it deleted with the revision it moved to,
/// and `None` when there is nothing to delete.
pub async fn delete_moves_revision(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    create_secret(&*store, &team, "db-url").await;
    let last = update_secret(&*store, &team, "db-url").await;
    let deleted = store
        .delete_secret(&team, "db_url", &crate::deleted())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.record, last.record);
    assert!(deleted.revision > last.revision);
    assert_eq!(store.team_revision(&team).await.unwrap(), deleted.revision);
    assert_eq!(store.latest_secret(&team, "db_url").await.unwrap(), None);
    assert_eq!(store.secret_id(&team, "db_url").await.unwrap(), None);
    // Nothing to delete: nothing changes, the revision included.
    assert!(store
        .delete_secret(&team, "db_url", &crate::deleted())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .delete_secret(&team, "never", &crate::deleted())
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.team_revision(&team).await.unwrap(), deleted.revision);
}

/// Every change moves the revision strictly forward, in the order the
/// changes were made.
pub async fn revisions_strictly_increase(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let mut revisions = vec![store.team_revision(&team).await.unwrap()];
    for name in ["a", "b", "c"] {
        revisions.push(create_secret(&*store, &team, name).await.revision);
        revisions.push(update_secret(&*store, &team, name).await.revision);
    }
    for name in ["a", "b"] {
        revisions.push(
            store
                .delete_secret(&team, name, &crate::deleted())
                .await
                .unwrap()
                .unwrap()
                .revision,
        );
    }
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions {revisions:?}"
    );
}

fn canonicals(page: &[ListedSecret]) -> Vec<&str> {
    page.iter().map(|s| s.canonical_name.as_str()).collect()
}

/// Secret names whose byte order differs from a case-insensitive or
/// punctuation-blind order: the listing order must be byte order on both
/// engines.
const NAMES: [&str; 7] = ["b", "A", "a_b", "a", "Z9", "_x", "a-c"];
const BYTE_ORDER: [&str; 7] = ["A", "Z9", "_x", "a", "a_b", "a_c", "b"];

/// A team's listing in canonical-name order, page after page from a cursor,
/// with what a listing shows of each secret.
pub async fn team_pages_in_name_order(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let other = acme.team(&acme.new_team(&*store, "other").await);
    for name in NAMES {
        create_secret(&*store, &team, name).await;
    }
    create_secret(&*store, &other, "elsewhere").await;
    let updated = update_secret(&*store, &team, "a-c").await.record;

    let all = store.team_secrets_page(&team, "", 100).await.unwrap();
    assert_eq!(canonicals(&all), BYTE_ORDER);
    let listed = all.iter().find(|s| s.canonical_name == "a_c").unwrap();
    assert_eq!(
        listed,
        &ListedSecret {
            team_id: updated.team_id,
            team_name: updated.team_name,
            id: updated.id,
            name: "a-c".into(),
            canonical_name: "a_c".into(),
            created_at: updated.created_at,
            version: 2,
        }
    );
    let mut paged = vec![];
    let mut after = String::new();
    loop {
        let page = store.team_secrets_page(&team, &after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.canonical_name.clone();
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(
        canonicals(&store.team_secrets_page(&team, "a", 2).await.unwrap()),
        ["a_b", "a_c"]
    );
}

/// The organization's listing in (team id, canonical name) order across
/// teams, paged by that pair, with each team's name; other organizations'
/// secrets are not in it.
pub async fn org_pages_across_teams(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let other_org = Org::create(&*store, "other").await;
    create_secret(&*store, &other_org.default_access(), "theirs").await;
    let mut teams = vec![acme.default_team.clone()];
    for name in ["t1", "t2"] {
        teams.push(acme.new_team(&*store, name).await);
    }
    let mut expected = vec![];
    for team in &teams {
        for name in ["b", "A", "a"] {
            create_secret(&*store, &acme.team(team), name).await;
            expected.push((team.id.clone(), team.name.clone(), name.to_owned()));
        }
    }
    expected.sort();
    let all = store
        .org_secrets_page(&acme.all_teams(), ("", ""), 100)
        .await
        .unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|s| {
            (
                s.team_id.clone(),
                s.team_name.clone(),
                s.canonical_name.clone(),
            )
        })
        .collect();
    assert_eq!(got, expected);

    let mut paged = vec![];
    let mut after = (String::new(), String::new());
    loop {
        let page = store
            .org_secrets_page(&acme.all_teams(), (&after.0, &after.1), 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = (last.team_id.clone(), last.canonical_name.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

/// The teams holding at least one secret, by id.
pub async fn teams_with_secrets_by_id(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let other_org = Org::create(&*store, "other").await;
    create_secret(&*store, &other_org.default_access(), "theirs").await;
    assert!(store
        .teams_with_secrets(&acme.grant())
        .await
        .unwrap()
        .is_empty());
    let mut holding = vec![];
    for name in ["t1", "t2", "t3"] {
        holding.push(acme.new_team(&*store, name).await);
    }
    acme.new_team(&*store, "empty").await;
    for team in &holding {
        create_secret(&*store, &acme.team(team), "s").await;
    }
    create_secret(&*store, &acme.team(&holding[0]), "s2").await;
    let emptied = holding[1].clone();
    holding.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        store.teams_with_secrets(&acme.grant()).await.unwrap(),
        holding
    );
    // A team whose last secret is deleted no longer holds any.
    store
        .delete_secret(&acme.team(&emptied), "s", &crate::deleted())
        .await
        .unwrap()
        .unwrap();
    holding.retain(|t| t.id != emptied.id);
    assert_eq!(
        store.teams_with_secrets(&acme.grant()).await.unwrap(),
        holding
    );
}

/// A snapshot is the team's secrets in canonical-name order as
/// `latest_secret` reads them, with the team's revision at that instant.
pub async fn snapshot_matches_revision(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.new_team(&*store, "t").await;
    let access = acme.team(&team);
    let empty = store.snapshot(&acme.delivery(&team)).await.unwrap();
    assert!(empty.secrets.is_empty());
    assert_eq!(empty.revision, store.team_revision(&access).await.unwrap());
    for name in NAMES {
        create_secret(&*store, &access, name).await;
    }
    let last = update_secret(&*store, &access, "b").await;
    let snapshot = store.snapshot(&acme.delivery(&team)).await.unwrap();
    assert_eq!(snapshot.revision, last.revision);
    let mut latest = vec![];
    for name in BYTE_ORDER {
        latest.push(store.latest_secret(&access, name).await.unwrap().unwrap());
    }
    assert_eq!(snapshot.secrets, latest);
}

/// A team that was deleted: its revision and snapshot are `NotFound`, a
/// creation in it is `NotFound`, its secrets are gone (a deletion finds
/// none, an update is `Stale`), and `team_revisions` leaves it out.
pub async fn deleted_team_is_not_found(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let kept = acme.new_team(&*store, "kept").await;
    let doomed = acme.new_team(&*store, "doomed").await;
    let kept_revision = create_secret(&*store, &acme.team(&kept), "s")
        .await
        .revision;
    let access = acme.team(&doomed);
    let doomed_revision = create_secret(&*store, &access, "s").await.revision;
    let mut expected = vec![
        (kept.id.clone(), kept_revision),
        (doomed.id.clone(), doomed_revision),
    ];
    expected.sort();
    let ids = vec![kept.id.clone(), "nope".into(), doomed.id.clone()];
    assert_eq!(sorted_revisions(&*store, ids.clone()).await, expected);

    store
        .delete_team(&access, true, crate::event("x"))
        .await
        .unwrap();
    assert_err(
        store.team_revision(&access).await,
        not_found("team not found"),
    );
    assert_err(
        store.snapshot(&acme.delivery(&doomed)).await,
        not_found("team not found"),
    );
    assert_err(
        store
            .upsert_secret(&access, sealed("new", &new_id(), false), 10)
            .await,
        not_found("team not found"),
    );
    // Its secrets went with it: nothing to delete, nothing to update.
    assert!(store
        .delete_secret(&access, "s", &crate::deleted())
        .await
        .unwrap()
        .is_none());
    assert_err(
        store
            .upsert_secret(&access, sealed("s", &new_id(), true), 10)
            .await,
        Stale,
    );
    assert_eq!(
        sorted_revisions(&*store, ids).await,
        vec![(kept.id.clone(), kept_revision)]
    );
    assert!(store.team_revisions(vec![]).await.unwrap().is_empty());
}

/// `team_revisions` promises no order.
async fn sorted_revisions(store: &dyn Store, ids: Vec<String>) -> Vec<(String, i64)> {
    let mut r = store.team_revisions(ids).await.unwrap();
    r.sort();
    r
}
