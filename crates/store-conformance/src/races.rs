//! What the contracts promise when calls race: uniqueness and quotas hold
//! however many writers arrive at once, every loser gets the documented
//! error, and concurrent writes of one secret all apply with revisions that
//! follow the order of the versions.

use super::{
    assert_err, conflict, create_secret, new_key, new_team, new_user, not_found, quota, sealed, Org,
};
use std::future::Future;
use tessera_core::domain::access::{KeyHandover, KeyTarget};
use tessera_core::domain::ids::new_id;
use tessera_core::domain::types::{KeyType, TeamRole};
use tessera_store::{AuthorityOutcome, DynStore, StoreError, StoreResult, TeamDeletion};

const N: usize = 8;

/// Runs `N` calls at once (each on its own task) and returns their results.
async fn race<T, F, Fut>(call: F) -> Vec<StoreResult<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = StoreResult<T>> + Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (barrier, call) = (barrier.clone(), call(i));
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut results = vec![];
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

/// Splits results into successes and errors.
fn split<T>(results: Vec<StoreResult<T>>) -> (Vec<T>, Vec<StoreError>) {
    let (mut ok, mut err) = (vec![], vec![]);
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => err.push(e),
        }
    }
    (ok, err)
}

/// The losers all failed with exactly `expected`.
#[track_caller]
fn all_are(errors: Vec<StoreError>, expected: StoreError) {
    for e in errors {
        assert_err::<()>(Err(e), expected.clone());
    }
}

/// Writers creating the same new name at once, each under its own id:
/// exactly one creates it, the others are `Stale` (and would re-read and
/// update), and the secret is the winner's.
pub async fn creates_of_one_name_one_wins(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let results = race(|_| {
        let (store, team) = (store.clone(), team.clone());
        async move {
            store
                .upsert_secret(&team, sealed("race", &new_id(), false), 100)
                .await
        }
    })
    .await;
    let (won, lost) = split(results);
    assert_eq!(won.len(), 1, "exactly one creation wins");
    all_are(lost, StoreError::Stale);
    let winner = &won[0].record;
    assert_eq!(winner.version, 1);
    assert_eq!(
        store.secret_id(&team, "race").await.unwrap().as_ref(),
        Some(&winner.id)
    );
    assert_eq!(
        store.team_secrets_page(&team, "", 10).await.unwrap().len(),
        1
    );
    assert_eq!(store.team_revision(&team).await.unwrap(), won[0].revision);
}

/// Writers updating one secret at once: every update applies, each gets its
/// own version, revisions never go backwards in version order and all move
/// past the revision before, and the last version is what stays.
pub async fn updates_of_one_secret_all_apply(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let created = create_secret(&*store, &team, "hot").await;
    let id = created.record.id.clone();
    let results = race(|_| {
        let (store, team, write) = (store.clone(), team.clone(), sealed("hot", &id, true));
        async move {
            let done = store.upsert_secret(&team, write.clone(), 100).await?;
            Ok((done, write))
        }
    })
    .await;
    let (mut done, errors) = split(results);
    assert!(errors.is_empty(), "{errors:?}");
    done.sort_by_key(|(w, _)| w.record.version);
    let versions: Vec<_> = done.iter().map(|(w, _)| w.record.version).collect();
    assert_eq!(versions, (2..=N as i64 + 1).collect::<Vec<_>>());
    // Writes committed together share a revision: never backwards.
    let revisions: Vec<_> = done.iter().map(|(w, _)| w.revision).collect();
    assert!(revisions[0] > created.revision, "{revisions:?}");
    assert!(revisions.windows(2).all(|w| w[0] <= w[1]), "{revisions:?}");
    assert_eq!(
        store.team_revision(&team).await.unwrap(),
        *revisions.last().unwrap()
    );
    let (_, last) = done.last().unwrap();
    let latest = store.latest_secret(&team, "hot").await.unwrap().unwrap();
    assert_eq!(
        (latest.record.id, latest.record.version, latest.ciphertext),
        (id, N as i64 + 1, last.ciphertext.clone())
    );
}

/// Writers deleting one secret at once: exactly one deletes it.
pub async fn deletes_of_one_secret_one_wins(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    create_secret(&*store, &team, "once").await;
    let results = race(|_| {
        let (store, team) = (store.clone(), team.clone());
        async move { store.delete_secret(&team, "once", &crate::deleted()).await }
    })
    .await;
    let (done, errors) = split(results);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(done.iter().filter(|d| d.is_some()).count(), 1);
}

/// Creations of distinct secrets racing for the last places of a quota:
/// exactly the quota's worth succeed, the rest are `QuotaExceeded`.
pub async fn secret_quota_holds_under_race(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    let results = race(|i| {
        let (store, team) = (store.clone(), team.clone());
        async move {
            store
                .upsert_secret(&team, sealed(&format!("s{i}"), &new_id(), false), 3)
                .await
        }
    })
    .await;
    let (won, lost) = split(results);
    assert_eq!(won.len(), 3);
    all_are(lost, quota("secrets per team", 3));
    assert_eq!(
        store.team_secrets_page(&team, "", 10).await.unwrap().len(),
        3
    );
}

/// Teams, users and keys of one name created at once: one wins, the others
/// are `Conflict`.
pub async fn identity_names_unique_under_race(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let org = acme.grant();
    let (won, lost) = split(
        race(|_| {
            let (store, org) = (store.clone(), org.clone());
            async move {
                store
                    .create_team(&org, new_team("dup"), 100, crate::event("x"))
                    .await
            }
        })
        .await,
    );
    assert_eq!(won.len(), 1);
    all_are(
        lost,
        conflict("the organization already has a team with this name"),
    );

    let (won, lost) = split(
        race(|_| {
            let (store, org) = (store.clone(), org.clone());
            async move {
                store
                    .create_user(
                        &org,
                        new_user(Some("dup@example.com")),
                        100,
                        crate::event("x"),
                    )
                    .await
            }
        })
        .await,
    );
    assert_eq!(won.len(), 1);
    all_are(lost, conflict("a user with this email already exists"));

    let grant = acme.key_grant(
        KeyType::WorkspaceInvoke,
        KeyTarget::Team(&acme.default_team),
    );
    let (won, lost) = split(
        race(|_| {
            let (store, grant) = (store.clone(), grant.clone());
            async move {
                store
                    .insert_api_key(
                        &grant,
                        new_key(KeyType::WorkspaceInvoke, Some("dup"), None),
                        100,
                        crate::event("x"),
                    )
                    .await
            }
        })
        .await,
    );
    assert_eq!(won.len(), 1);
    all_are(
        lost,
        conflict("a live API key with this name already exists in the same scope"),
    );
}

/// Teams, users and keys created at once past their quota: exactly the
/// quota's worth succeed, the rest are `QuotaExceeded`.
pub async fn identity_quotas_hold_under_race(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let org = acme.grant();
    // The default team and the admin count already.
    let (won, lost) = split(
        race(|i| {
            let (store, org) = (store.clone(), org.clone());
            async move {
                store
                    .create_team(&org, new_team(&format!("t{i}")), 3, crate::event("x"))
                    .await
            }
        })
        .await,
    );
    assert_eq!(won.len(), 2);
    all_are(lost, quota("teams per organization", 3));

    let (won, lost) = split(
        race(|_| {
            let (store, org) = (store.clone(), org.clone());
            async move {
                store
                    .create_user(&org, new_user(None), 3, crate::event("x"))
                    .await
            }
        })
        .await,
    );
    assert_eq!(won.len(), 2);
    all_are(lost, quota("users per organization", 3));

    let grant = acme.key_grant(KeyType::WorkspaceManageApiKeys, KeyTarget::Org);
    let (won, lost) = split(
        race(|_| {
            let (store, grant) = (store.clone(), grant.clone());
            async move {
                store
                    .insert_api_key(
                        &grant,
                        new_key(KeyType::WorkspaceManageApiKeys, None, None),
                        3,
                        crate::event("x"),
                    )
                    .await
            }
        })
        .await,
    );
    assert_eq!(won.len(), 3);
    all_are(lost, quota("organization-wide live API keys", 3));
}

/// Secrets, keys and memberships added while their team is deleted
/// (cascading): each either commits before the deletion (and goes with the
/// team) or finds the team gone (`NotFound`), never anything else, and
/// nothing of the team outlives it. Several rounds, so that some additions
/// share a commit with the deletion.
pub async fn additions_racing_team_deletion(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let user = acme.new_user(&*store, "u@example.com").await;
    for round in 0..10 {
        let team = acme.new_team(&*store, &format!("t{round}")).await;
        let access = acme.team(&team);
        let key_grant = acme.key_grant(KeyType::WorkspaceInvoke, KeyTarget::Team(&team));
        let results = race(|i| {
            let (store, access, key_grant) = (store.clone(), access.clone(), key_grant.clone());
            let user_id = user.id.clone();
            async move {
                match i {
                    0 => match store.delete_team(&access, true, crate::event("x")).await? {
                        TeamDeletion::Deleted { secrets } => Ok(Some(secrets)),
                        other => panic!("{other:?}"),
                    },
                    1 => store
                        .set_member(
                            &access,
                            &user_id,
                            TeamRole::Member,
                            KeyHandover::Refuse,
                            crate::event("x"),
                        )
                        .await
                        .map(|_| None),
                    2 | 3 => store
                        .insert_api_key(
                            &key_grant,
                            new_key(KeyType::WorkspaceInvoke, None, None),
                            100,
                            crate::event("x"),
                        )
                        .await
                        .map(|_| None),
                    _ => {
                        let write = sealed(&format!("s{i}"), &new_id(), false);
                        store.upsert_secret(&access, write, 100).await.map(|_| None)
                    }
                }
            }
        })
        .await;
        let mut results = results.into_iter();
        let deleted = results.next().unwrap().unwrap().unwrap();
        let results: Vec<_> = results.collect();
        let secrets_created = results[3..].iter().filter(|r| r.is_ok()).count();
        assert!(
            secrets_created as i64 <= deleted,
            "{secrets_created} > {deleted}"
        );
        let (_, gone) = split(results);
        all_are(gone, not_found("team not found"));
        assert_eq!(store.find_team(&team.id).await.unwrap(), None);
        let keys = store.list_api_keys(&acme.grant()).await.unwrap();
        assert!(keys
            .iter()
            .all(|k| k.key.team_id.as_ref() != Some(&team.id)));
        let memberships = store.memberships(&user.id).await.unwrap();
        assert!(memberships.iter().all(|m| m.team_id != team.id));
    }
}

/// Keys created by a user while the user is deleted: each is refused
/// (`NotFound`) or revoked with its creator; none outlives it.
pub async fn keys_racing_creator_deletion(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let grant = acme.key_grant(
        KeyType::WorkspaceInvoke,
        KeyTarget::Team(&acme.default_team),
    );
    for round in 0..10 {
        let user = acme
            .new_user(&*store, &format!("u{round}@example.com"))
            .await;
        // A team admin, who may issue the team's keys.
        store
            .set_member(
                &acme.team(&acme.default_team),
                &user.id,
                TeamRole::Admin,
                KeyHandover::Refuse,
                crate::event("x"),
            )
            .await
            .unwrap();
        let results = race(|i| {
            let (store, org, grant) = (store.clone(), acme.grant(), grant.clone());
            let user_id = user.id.clone();
            async move {
                if i == 0 {
                    // Revoking the keys it answers for, whichever were
                    // created before.
                    let outcome = store
                        .delete_user(&org, &user_id, KeyHandover::Revoke, crate::event("x"))
                        .await?;
                    assert!(
                        matches!(outcome, AuthorityOutcome::Done { .. }),
                        "{outcome:?}"
                    );
                    return Ok(());
                }
                let key = new_key(KeyType::WorkspaceInvoke, None, Some(&user_id));
                store
                    .insert_api_key(&grant, key, 100, crate::event("x"))
                    .await
                    .map(|_| ())
            }
        })
        .await;
        let (_, gone) = split(results);
        all_are(
            gone,
            not_found("the user creating this key no longer exists"),
        );
        let keys = store.list_api_keys(&acme.grant()).await.unwrap();
        assert!(keys
            .iter()
            .all(|k| k.key.created_by.as_ref() != Some(&user.id)));
    }
}

/// Snapshots taken while secrets are being created hold exactly the
/// secrets written up to the revision they report: the revision and the
/// rows are of one instant.
pub async fn snapshots_are_of_one_instant(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.new_team(&*store, "t").await;
    let access = acme.team(&team);
    let delivery = acme.delivery(&team);
    let names: Vec<String> = (0..30).map(|i| format!("s{i:02}")).collect();
    let writer = {
        let (store, access, names) = (store.clone(), access.clone(), names.clone());
        tokio::spawn(async move {
            // The revision after each creation, one at a time.
            let mut revisions = vec![store.team_revision(&access).await.unwrap()];
            for name in &names {
                revisions.push(create_secret(&*store, &access, name).await.revision);
            }
            revisions
        })
    };
    let mut snapshots = vec![];
    while !writer.is_finished() {
        snapshots.push(store.snapshot(&delivery).await.unwrap());
    }
    let revisions = writer.await.unwrap();
    assert!(snapshots.len() > 1, "the snapshots overlapped the writes");
    for snapshot in snapshots {
        let k = revisions
            .iter()
            .position(|r| *r == snapshot.revision)
            .unwrap_or_else(|| panic!("revision {} was never written", snapshot.revision));
        let held: Vec<_> = snapshot
            .secrets
            .iter()
            .map(|s| s.record.canonical_name.clone())
            .collect();
        assert_eq!(held, names[..k], "at revision {}", snapshot.revision);
    }
}
