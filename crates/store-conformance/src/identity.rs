//! The identity aggregate: organizations, teams, users and memberships.

use super::{
    assert_err, conflict, create_secret, new_key, new_organization, new_team, new_user, not_found,
    quota, Org,
};
use tessera_core::domain::access::{KeyHandover, KeyTarget};
use tessera_core::domain::names::email_key;
use tessera_core::domain::types::{KeyType, Membership, TeamRole};
use tessera_store::{AuthorityOutcome, DynStore, TeamDeletion, UserQuery};

const TEAM_NAME_TAKEN: &str = "the organization already has a team with this name";
const EMAIL_TAKEN: &str = "a user with this email already exists";

/// `create_organization` creates the organization with its default team,
/// admin user (an admin of the default team) and key, all at once; a taken
/// name is `Conflict` and leaves nothing behind.
pub async fn organization_bootstrap(store: DynStore) {
    assert_eq!(store.organization_count().await.unwrap(), 0);
    let acme = Org::create(&*store, "acme").await;
    assert_eq!(store.organization_count().await.unwrap(), 1);
    assert_eq!(store.organization(&acme.grant()).await.unwrap(), acme.org);
    assert_eq!(
        store.default_team(&acme.org.id).await.unwrap(),
        acme.default_team
    );
    assert_eq!(
        store.find_team(&acme.default_team.id).await.unwrap(),
        Some(acme.default_team.clone())
    );
    assert_eq!(
        store.principal_user(&acme.admin.id).await.unwrap(),
        Some(acme.admin.clone())
    );
    assert_eq!(
        store.memberships(&acme.admin.id).await.unwrap(),
        vec![Membership {
            team_id: acme.default_team.id.clone(),
            role: TeamRole::Admin
        }]
    );
    assert_eq!(
        store.find_api_key(&acme.admin_key.prefix).await.unwrap(),
        Some(acme.admin_key.clone())
    );

    let again = new_organization("acme");
    assert_err(
        store
            .create_organization(again.clone(), crate::event("x"))
            .await,
        conflict("an organization named \"acme\" already exists"),
    );
    assert_eq!(store.organization_count().await.unwrap(), 1);
    assert_eq!(store.find_team(&again.default_team.id).await.unwrap(), None);
    assert_eq!(store.principal_user(&again.admin.id).await.unwrap(), None);
    assert_eq!(
        store.find_api_key(&again.admin_key.prefix).await.unwrap(),
        None
    );
}

/// Lookups of what does not exist answer `None`, not an error.
pub async fn lookups_of_unknown_ids_are_none(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    assert_eq!(store.find_team("nope").await.unwrap(), None);
    assert_eq!(store.principal_user("nope").await.unwrap(), None);
    assert!(store.memberships("nope").await.unwrap().is_empty());
    assert_eq!(store.find_user(&acme.grant(), "nope").await.unwrap(), None);
    assert_eq!(store.find_api_key("nope").await.unwrap(), None);
    assert_eq!(
        store.org_api_key(&acme.grant(), "nope").await.unwrap(),
        None
    );
}

/// Team names are unique per organization (`Conflict`), `max_teams` is a
/// quota (`QuotaExceeded`), listings put the default team first and then
/// order by name, and a rename to a taken name is `Conflict`.
pub async fn teams_names_quota_order_rename(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let other = Org::create(&*store, "other").await;
    let alpha = store
        .create_team(&acme.grant(), new_team("alpha"), 10, crate::event("x"))
        .await
        .unwrap();
    assert_eq!(
        (alpha.org_id.as_str(), alpha.name.as_str(), alpha.is_default),
        (acme.org.id.as_str(), "alpha", false)
    );
    assert_eq!(
        store.find_team(&alpha.id).await.unwrap(),
        Some(alpha.clone())
    );
    assert_err(
        store
            .create_team(&acme.grant(), new_team("alpha"), 10, crate::event("x"))
            .await,
        conflict(TEAM_NAME_TAKEN),
    );
    // Another organization's names do not collide.
    other.new_team(&*store, "alpha").await;

    // Byte order of names: upper case before lower case.
    for name in ["zeta", "Beta", "alpha_2"] {
        acme.new_team(&*store, name).await;
    }
    let names: Vec<_> = store
        .list_teams(&acme.grant())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["default", "Beta", "alpha", "alpha_2", "zeta"]);

    // Five teams now: a quota of five refuses a sixth, six allows it.
    assert_err(
        store
            .create_team(&acme.grant(), new_team("sixth"), 5, crate::event("x"))
            .await,
        quota("teams per organization", 5),
    );
    store
        .create_team(&acme.grant(), new_team("sixth"), 6, crate::event("x"))
        .await
        .unwrap();

    store
        .rename_team(&acme.team(&alpha), "omega", crate::event("x"))
        .await
        .unwrap();
    assert_eq!(
        store.find_team(&alpha.id).await.unwrap().unwrap().name,
        "omega"
    );
    assert_err(
        store
            .rename_team(&acme.team(&alpha), "zeta", crate::event("x"))
            .await,
        conflict(TEAM_NAME_TAKEN),
    );
    // The old name is free again.
    acme.new_team(&*store, "alpha").await;
}

/// `delete_team` refuses while the team holds secrets unless asked to
/// cascade; it deletes the team's memberships and team-bound keys (and
/// secrets when cascading); a team already gone is `NotFound`.
pub async fn delete_team_with_and_without_cascade(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let team = acme.new_team(&*store, "doomed").await;
    let grant = acme.team(&team);
    create_secret(&*store, &grant, "A").await;
    create_secret(&*store, &grant, "B").await;
    let user = acme.new_user(&*store, "u@example.com").await;
    store
        .set_member(
            &grant,
            &user.id,
            TeamRole::Member,
            KeyHandover::Refuse,
            crate::event("x"),
        )
        .await
        .unwrap();
    let key = store
        .insert_api_key(
            &acme.key_grant(KeyType::WorkspaceManageAll, KeyTarget::Team(&team)),
            new_key(
                KeyType::WorkspaceManageAll,
                Some("ci"),
                Some(&acme.admin.id),
            ),
            10,
            crate::event("x"),
        )
        .await
        .unwrap();

    assert_eq!(
        store
            .delete_team(&grant, false, crate::event("x"))
            .await
            .unwrap(),
        TeamDeletion::HasSecrets(2)
    );
    assert!(store.find_team(&team.id).await.unwrap().is_some());
    assert!(store.latest_secret(&grant, "A").await.unwrap().is_some());

    assert_eq!(
        store
            .delete_team(&grant, true, crate::event("x"))
            .await
            .unwrap(),
        TeamDeletion::Deleted { secrets: 2 }
    );
    assert_eq!(store.find_team(&team.id).await.unwrap(), None);
    assert_eq!(store.latest_secret(&grant, "A").await.unwrap(), None);
    assert_eq!(store.find_api_key(&key.prefix).await.unwrap(), None);
    assert_eq!(
        store.memberships(&user.id).await.unwrap(),
        vec![Membership {
            team_id: acme.default_team.id.clone(),
            role: TeamRole::Member
        }]
    );
    assert!(store
        .teams_with_secrets(&acme.grant())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .delete_team(&grant, true, crate::event("x"))
            .await
            .unwrap(),
        TeamDeletion::NotFound
    );

    // A team without secrets goes without cascading.
    let empty = acme.new_team(&*store, "empty").await;
    assert_eq!(
        store
            .delete_team(&acme.team(&empty), false, crate::event("x"))
            .await
            .unwrap(),
        TeamDeletion::Deleted { secrets: 0 }
    );
    // The name is free again.
    acme.new_team(&*store, "doomed").await;
}

/// Users: emails unique per organization by their email key (case does not
/// matter; no email never collides), `max_users` is a quota, `find_user`
/// sees the grant's organization only, and the directory is ordered by id
/// and paged after an id, optionally filtered by email key.
pub async fn users_emails_quota_directory(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let other = Org::create(&*store, "other").await;
    let ann = store
        .create_user(
            &acme.grant(),
            new_user(Some("Ann@Example.com")),
            10,
            crate::event("x"),
        )
        .await
        .unwrap();
    assert_eq!(ann.org_id, acme.org.id);
    assert_eq!(ann.email.as_deref(), Some("Ann@Example.com"));
    assert_eq!(
        store.find_user(&acme.grant(), &ann.id).await.unwrap(),
        Some(ann.clone())
    );
    assert_eq!(
        store.find_user(&other.grant(), &ann.id).await.unwrap(),
        None
    );
    // A new user is a member of the default team.
    assert_eq!(
        store.memberships(&ann.id).await.unwrap(),
        vec![Membership {
            team_id: acme.default_team.id.clone(),
            role: TeamRole::Member
        }]
    );
    assert_err(
        store
            .create_user(
                &acme.grant(),
                new_user(Some("ann@example.COM")),
                10,
                crate::event("x"),
            )
            .await,
        conflict(EMAIL_TAKEN),
    );
    other.new_user(&*store, "ann@example.com").await;
    for _ in 0..2 {
        store
            .create_user(&acme.grant(), new_user(None), 10, crate::event("x"))
            .await
            .unwrap();
    }
    let bob = acme.new_user(&*store, "bob@example.com").await;

    // admin, ann, two without email, bob: five.
    assert_err(
        store
            .create_user(&acme.grant(), new_user(None), 5, crate::event("x"))
            .await,
        quota("users per organization", 5),
    );

    let all = store
        .list_users(
            &acme.grant(),
            UserQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ordered by id");
    assert!(all.iter().all(|u| u.org_id == acme.org.id));
    // Pages of two, each after the last id seen, give the same list.
    let mut paged = vec![];
    let mut after = None;
    loop {
        let page = store
            .list_users(
                &acme.grant(),
                UserQuery {
                    after: after.clone(),
                    limit: 2,
                    email_key: None,
                },
            )
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let by_email = store
        .list_users(
            &acme.grant(),
            UserQuery {
                after: None,
                limit: 100,
                email_key: Some(email_key("BOB@example.com")),
            },
        )
        .await
        .unwrap();
    assert_eq!(by_email, vec![bob]);
}

/// `set_member` adds a user of the team's organization or changes its role
/// (`NotFound` for anyone else, or when the team is gone); `remove_member`
/// says whether there was a membership; members are listed by user id.
pub async fn memberships_set_change_remove(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let other = Org::create(&*store, "other").await;
    let team = acme.new_team(&*store, "t").await;
    let grant = acme.team(&team);
    let u1 = acme.new_user(&*store, "one@example.com").await;
    let u2 = acme.new_user(&*store, "two@example.com").await;
    let outsider = other.new_user(&*store, "out@example.com").await;

    store
        .set_member(
            &grant,
            &u1.id,
            TeamRole::Member,
            KeyHandover::Refuse,
            crate::event("x"),
        )
        .await
        .unwrap();
    store
        .set_member(
            &grant,
            &u2.id,
            TeamRole::Member,
            KeyHandover::Refuse,
            crate::event("x"),
        )
        .await
        .unwrap();
    store
        .set_member(
            &grant,
            &u1.id,
            TeamRole::Admin,
            KeyHandover::Refuse,
            crate::event("x"),
        )
        .await
        .unwrap();
    let mut expected = vec![
        (u1.clone(), TeamRole::Admin),
        (u2.clone(), TeamRole::Member),
    ];
    expected.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    assert_eq!(
        store.list_members(&acme.team_reader(&team)).await.unwrap(),
        expected
    );
    let mut of_u1 = store.memberships(&u1.id).await.unwrap();
    of_u1.sort_by(|a, b| a.team_id.cmp(&b.team_id));
    let mut want = vec![
        Membership {
            team_id: acme.default_team.id.clone(),
            role: TeamRole::Member,
        },
        Membership {
            team_id: team.id.clone(),
            role: TeamRole::Admin,
        },
    ];
    want.sort_by(|a, b| a.team_id.cmp(&b.team_id));
    assert_eq!(of_u1, want);

    for unknown in ["nope", outsider.id.as_str()] {
        let outcome = store
            .set_member(
                &grant,
                unknown,
                TeamRole::Member,
                KeyHandover::Refuse,
                crate::event("x"),
            )
            .await
            .unwrap();
        assert_eq!(outcome, AuthorityOutcome::NotFound);
    }
    let remove = |user: String| {
        let (store, grant) = (store.clone(), grant.clone());
        async move {
            store
                .remove_member(&grant, &user, KeyHandover::Refuse, crate::event("x"))
                .await
                .unwrap()
        }
    };
    assert!(matches!(
        remove(u2.id.clone()).await,
        AuthorityOutcome::Done { .. }
    ));
    assert_eq!(remove(u2.id.clone()).await, AuthorityOutcome::NotFound);
    assert_eq!(remove("nope".into()).await, AuthorityOutcome::NotFound);
    assert_eq!(
        store.list_members(&acme.team_reader(&team)).await.unwrap(),
        vec![(u1.clone(), TeamRole::Admin)]
    );

    store
        .delete_team(&grant, false, crate::event("x"))
        .await
        .unwrap();
    assert_err(
        store
            .set_member(
                &grant,
                &u2.id,
                TeamRole::Member,
                KeyHandover::Refuse,
                crate::event("x"),
            )
            .await,
        not_found("team not found"),
    );
}

/// `delete_user` deletes the user with its personal keys (whoever minted
/// them), its memberships and the workspace keys it created; personal keys
/// it minted for other users stay. Another organization's grant deletes
/// nothing.
pub async fn delete_user_and_its_keys(store: DynStore) {
    let acme = Org::create(&*store, "acme").await;
    let other = Org::create(&*store, "other").await;
    let user = acme.new_user(&*store, "u@example.com").await;
    let team = acme.new_team(&*store, "t").await;
    store
        .set_member(
            &acme.team(&team),
            &user.id,
            TeamRole::Admin,
            KeyHandover::Refuse,
            crate::event("x"),
        )
        .await
        .unwrap();
    let personal = KeyTarget::Personal { owner: &user };
    let for_admin = KeyTarget::Personal { owner: &acme.admin };
    let insert = |target, key_type, creator: &str| {
        let (store, grant, key) = (
            store.clone(),
            acme.key_grant(key_type, target),
            new_key(key_type, None, Some(creator)),
        );
        async move {
            store
                .insert_api_key(&grant, key, 100, crate::event("x"))
                .await
                .unwrap()
        }
    };
    let own = insert(personal, KeyType::Personal, &user.id).await;
    let minted_by_admin = insert(personal, KeyType::Personal, &acme.admin.id).await;
    let workspace = insert(
        KeyTarget::Team(&team),
        KeyType::WorkspaceManageAll,
        &user.id,
    )
    .await;
    let minted_for_admin = insert(for_admin, KeyType::Personal, &user.id).await;
    let admins_workspace = insert(
        KeyTarget::Team(&team),
        KeyType::WorkspaceInvoke,
        &acme.admin.id,
    )
    .await;

    let delete = |org: tessera_core::domain::access::OrgAccess, keys: KeyHandover| {
        let (store, user) = (store.clone(), user.id.clone());
        async move {
            store
                .delete_user(&org, &user, keys, crate::event("x"))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        delete(other.grant(), KeyHandover::Revoke).await,
        AuthorityOutcome::NotFound
    );
    assert!(store.principal_user(&user.id).await.unwrap().is_some());

    // The workspace key it created would outlive it: refused, nothing
    // changes, until the request says to revoke it.
    assert_eq!(
        delete(acme.grant(), KeyHandover::Refuse).await,
        AuthorityOutcome::KeysConcerned(vec![workspace.clone()])
    );
    assert!(store.principal_user(&user.id).await.unwrap().is_some());
    assert!(store.find_api_key(&own.prefix).await.unwrap().is_some());
    assert_eq!(
        delete(acme.grant(), KeyHandover::Revoke).await,
        AuthorityOutcome::Done {
            revoked: vec![workspace.clone()],
            handed_over: Vec::new(),
            successor: None
        }
    );
    assert_eq!(store.principal_user(&user.id).await.unwrap(), None);
    assert_eq!(
        store.find_user(&acme.grant(), &user.id).await.unwrap(),
        None
    );
    assert!(store.memberships(&user.id).await.unwrap().is_empty());
    assert!(store
        .list_members(&acme.team_reader(&team))
        .await
        .unwrap()
        .is_empty());
    for gone in [&own, &minted_by_admin, &workspace] {
        assert_eq!(store.find_api_key(&gone.prefix).await.unwrap(), None);
    }
    for kept in [&minted_for_admin, &admins_workspace] {
        assert_eq!(
            store.find_api_key(&kept.prefix).await.unwrap(),
            Some(kept.clone())
        );
    }
    assert_eq!(
        delete(acme.grant(), KeyHandover::Revoke).await,
        AuthorityOutcome::NotFound
    );
    // The email is free again.
    acme.new_user(&*store, "u@example.com").await;
}
