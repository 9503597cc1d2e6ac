//! The API-key aggregate: where a key lives comes from its grant, names are
//! unique among live keys of one scope, each scope has a quota, and a key
//! never outlives what it belongs to.

use super::{assert_err, conflict, new_key, not_found, quota, tick, Org};
use tessera_core::domain::access::{KeyHandover, KeyTarget};
use tessera_core::domain::types::KeyType;
use tessera_store::DynStore;

const NAME_TAKEN: &str = "a live API key with this name already exists in the same scope";

/// The key's organization, owner and team come from the grant; lookups by
/// prefix find it anywhere (`find_api_key`) or in the grant's organization
/// only (`org_api_key`); list-valued scopes round-trip.
pub async fn insert_and_find(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let other = Org::create(&*store, "other").await;
    let team = acme.new_team(&*store, "t").await;

    let personal = store
        .insert_api_key(
            &acme.key_grant(
                KeyType::Personal,
                KeyTarget::Personal { owner: &acme.admin },
            ),
            new_key(KeyType::Personal, Some("laptop"), Some(&acme.admin.id)),
            10,
            crate::event("x"),
        )
        .await
        .unwrap();
    assert_eq!(personal.org_id, acme.org.id);
    assert_eq!(personal.user_id.as_deref(), Some(acme.admin.id.as_str()));
    assert_eq!(personal.team_id, None);
    assert_eq!(personal.last_used_at, None);

    let mut reader = new_key(KeyType::WorkspaceReadSecrets, Some("reader"), None);
    reader.secret_names = Some(vec!["A".into(), "B_C".into()]);
    let reader = store
        .insert_api_key(
            &acme.key_grant(KeyType::WorkspaceReadSecrets, KeyTarget::Team(&team)),
            reader,
            10,
            crate::event("x"),
        )
        .await
        .unwrap();
    assert_eq!(reader.team_id.as_deref(), Some(team.id.as_str()));
    assert_eq!(reader.user_id, None);

    let mut invoke = new_key(KeyType::WorkspaceInvoke, None, None);
    invoke.model_ids = Some(vec!["m1".into()]);
    let invoke = store
        .insert_api_key(
            &acme.key_grant(KeyType::WorkspaceInvoke, KeyTarget::Team(&team)),
            invoke,
            10,
            crate::event("x"),
        )
        .await
        .unwrap();
    let org_wide = store
        .insert_api_key(
            &acme.key_grant(KeyType::WorkspaceManageApiKeys, KeyTarget::Org),
            new_key(KeyType::WorkspaceManageApiKeys, Some("ops"), None),
            10,
            crate::event("x"),
        )
        .await
        .unwrap();
    assert_eq!(
        (org_wide.user_id.as_ref(), org_wide.team_id.as_ref()),
        (None, None)
    );

    for key in [&personal, &reader, &invoke, &org_wide] {
        assert_eq!(
            store.find_api_key(&key.prefix).await.unwrap().as_ref(),
            Some(key)
        );
        let found = store.org_api_key(&acme.grant(), &key.prefix).await.unwrap();
        assert_eq!(found.as_ref(), Some(key));
        // Another organization's key is not there for it.
        assert_eq!(
            store
                .org_api_key(&other.grant(), &key.prefix)
                .await
                .unwrap(),
            None
        );
        // Full records, list-valued fields included.
        let found = found.unwrap();
        assert_eq!(
            (
                &found.secret_names,
                &found.model_ids,
                &found.name,
                &found.created_by
            ),
            (
                &key.secret_names,
                &key.model_ids,
                &key.name,
                &key.created_by
            )
        );
    }
}

/// Names are unique among live keys of one scope (per user, per team, per
/// organization): `Conflict`; unnamed keys never collide; a revoked key's
/// name is free again.
pub async fn names_unique_per_scope(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let user = acme.new_user(&*store, "u@example.com").await;
    let team = acme.new_team(&*store, "t").await;
    let scopes = [
        (
            KeyType::Personal,
            KeyTarget::Personal { owner: &acme.admin },
        ),
        (KeyType::Personal, KeyTarget::Personal { owner: &user }),
        (
            KeyType::WorkspaceManageAll,
            KeyTarget::Team(&acme.default_team),
        ),
        (KeyType::WorkspaceInvoke, KeyTarget::Team(&team)),
        (KeyType::WorkspaceManageApiKeys, KeyTarget::Org),
    ];
    for (key_type, target) in scopes {
        let grant = acme.key_grant(key_type, target);
        let first = store
            .insert_api_key(
                &grant,
                new_key(key_type, Some("ci"), None),
                100,
                crate::event("x"),
            )
            .await
            .unwrap();
        assert_err(
            store
                .insert_api_key(
                    &grant,
                    new_key(key_type, Some("ci"), None),
                    100,
                    crate::event("x"),
                )
                .await,
            conflict(NAME_TAKEN),
        );
        for _ in 0..2 {
            store
                .insert_api_key(
                    &grant,
                    new_key(key_type, None, None),
                    100,
                    crate::event("x"),
                )
                .await
                .unwrap();
        }
        assert!(store
            .delete_api_key(&acme.revocation(&first), crate::event("x"))
            .await
            .unwrap());
        store
            .insert_api_key(
                &grant,
                new_key(key_type, Some("ci"), None),
                100,
                crate::event("x"),
            )
            .await
            .unwrap();
    }
}

/// Each scope counts its live keys against `max_keys`: `QuotaExceeded`
/// naming the scope's quota; revoking one makes room.
pub async fn quota_per_scope(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let user = acme.new_user(&*store, "u@example.com").await;
    let scopes = [
        (
            KeyType::Personal,
            KeyTarget::Personal { owner: &user },
            "live API keys per user",
        ),
        (
            KeyType::WorkspaceInvoke,
            KeyTarget::Team(&acme.default_team),
            "live API keys per team",
        ),
        (
            KeyType::WorkspaceManageApiKeys,
            KeyTarget::Org,
            "organization-wide live API keys",
        ),
    ];
    for (key_type, target, name) in scopes {
        let grant = acme.key_grant(key_type, target);
        let mut keys = vec![];
        for _ in 0..2 {
            keys.push(
                store
                    .insert_api_key(&grant, new_key(key_type, None, None), 2, crate::event("x"))
                    .await
                    .unwrap(),
            );
        }
        assert_err(
            store
                .insert_api_key(&grant, new_key(key_type, None, None), 2, crate::event("x"))
                .await,
            quota(name, 2),
        );
        store
            .delete_api_key(&acme.revocation(&keys[0]), crate::event("x"))
            .await
            .unwrap();
        store
            .insert_api_key(&grant, new_key(key_type, None, None), 2, crate::event("x"))
            .await
            .unwrap();
    }
}

/// `NotFound` when the key's team, its owner or the user creating it is
/// gone.
pub async fn insert_refused_when_referents_are_gone(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let user = acme.new_user(&*store, "u@example.com").await;
    let team = acme.new_team(&*store, "t").await;
    let admin = Some(acme.admin.id.as_str());

    let team_grant = acme.key_grant(KeyType::WorkspaceInvoke, KeyTarget::Team(&team));
    let owner_grant = acme.key_grant(KeyType::Personal, KeyTarget::Personal { owner: &user });
    store
        .delete_team(&acme.team(&team), true, crate::event("x"))
        .await
        .unwrap();
    assert_err(
        store
            .insert_api_key(
                &team_grant,
                new_key(KeyType::WorkspaceInvoke, None, admin),
                10,
                crate::event("x"),
            )
            .await,
        not_found("team not found"),
    );
    store
        .delete_user(
            &acme.grant(),
            &user.id,
            KeyHandover::Refuse,
            crate::event("x"),
        )
        .await
        .unwrap();
    assert_err(
        store
            .insert_api_key(
                &owner_grant,
                new_key(KeyType::Personal, None, admin),
                10,
                crate::event("x"),
            )
            .await,
        not_found("user not found"),
    );
    let org_grant = acme.key_grant(KeyType::WorkspaceManageApiKeys, KeyTarget::Org);
    assert_err(
        store
            .insert_api_key(
                &org_grant,
                new_key(KeyType::WorkspaceManageApiKeys, None, Some(&user.id)),
                10,
                crate::event("x"),
            )
            .await,
        not_found("the user creating this key no longer exists"),
    );
}

/// The organization's keys, ordered by creation time then prefix, with the
/// team's name and the owner; another organization's keys are not listed.
pub async fn list_order_and_details(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let other = Org::create(&*store, "other").await;
    let team = acme.new_team(&*store, "t").await;
    let same_instant = tick();
    let mut inserted = vec![acme.admin_key.clone()];
    for (key_type, target) in [
        (KeyType::WorkspaceInvoke, KeyTarget::Team(&team)),
        (KeyType::WorkspaceManageApiKeys, KeyTarget::Org),
        (
            KeyType::Personal,
            KeyTarget::Personal { owner: &acme.admin },
        ),
    ] {
        let mut key = new_key(key_type, None, None);
        key.created_at = same_instant;
        inserted.push(
            store
                .insert_api_key(
                    &acme.key_grant(key_type, target),
                    key,
                    10,
                    crate::event("x"),
                )
                .await
                .unwrap(),
        );
    }
    inserted.sort_by(|a, b| (a.created_at, &a.prefix).cmp(&(b.created_at, &b.prefix)));
    let listed = store.list_api_keys(&acme.grant()).await.unwrap();
    let keys: Vec<_> = listed.iter().map(|l| l.key.clone()).collect();
    assert_eq!(keys, inserted);
    for l in &listed {
        let team_name = l.key.team_id.as_ref().map(|_| team.name.clone());
        assert_eq!(l.team_name, team_name);
        let owner = l.key.user_id.as_ref().map(|_| acme.admin.clone());
        assert_eq!(l.owner, owner);
    }
    assert_eq!(store.list_api_keys(&other.grant()).await.unwrap().len(), 1);
}

/// `delete_api_key` deletes the key its grant names and says whether it
/// was there.
pub async fn delete_key(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let key = acme.new_invoke_key(&*store).await;
    let kept = acme.new_invoke_key(&*store).await;
    let revocation = acme.revocation(&key);
    assert!(store
        .delete_api_key(&revocation, crate::event("x"))
        .await
        .unwrap());
    assert_eq!(store.find_api_key(&key.prefix).await.unwrap(), None);
    assert!(!store
        .delete_api_key(&revocation, crate::event("x"))
        .await
        .unwrap());
    assert_eq!(store.find_api_key(&kept.prefix).await.unwrap(), Some(kept));
}

/// `touch_api_keys` records the latest use: an older time never moves it
/// back (within one call either), and unknown prefixes are ignored.
pub async fn touch_records_latest_use(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let key = acme.new_invoke_key(&*store).await;
    let admin = &acme.admin_key.prefix;
    let last_used = |prefix: String| {
        let store = store.clone();
        async move {
            store
                .find_api_key(&prefix)
                .await
                .unwrap()
                .unwrap()
                .last_used_at
        }
    };
    let (t1, t2, t3) = (tick(), tick(), tick());
    store
        .touch_api_keys(vec![
            (key.prefix.clone(), t2),
            (admin.clone(), t1),
            ("unknown".into(), t3),
        ])
        .await
        .unwrap();
    assert_eq!(last_used(key.prefix.clone()).await, Some(t2));
    assert_eq!(last_used(admin.clone()).await, Some(t1));
    store
        .touch_api_keys(vec![(key.prefix.clone(), t1), (admin.clone(), t3)])
        .await
        .unwrap();
    assert_eq!(last_used(key.prefix.clone()).await, Some(t2));
    assert_eq!(last_used(admin.clone()).await, Some(t3));
    // One key named twice in a call: the later time counts, in either order.
    let (t4, t5) = (tick(), tick());
    for (first, second) in [(t5, t4), (t4, t5)] {
        store
            .touch_api_keys(vec![
                (key.prefix.clone(), first),
                (key.prefix.clone(), second),
            ])
            .await
            .unwrap();
        assert_eq!(last_used(key.prefix.clone()).await, Some(t5));
    }
    store.touch_api_keys(vec![]).await.unwrap();
}
