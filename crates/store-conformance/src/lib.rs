//! The store's conformance suite as a kit any engine runs: every store
//! method's documented contract, checked through the `Store` trait object on
//! a fresh store per case, so that engines cannot drift apart unnoticed.
//! Error variants are compared exactly: that is where engines diverge.
//!
//! An engine runs it by implementing [`Engine`] (a fresh, migrated store per
//! case, or `None` when the engine is not available here) and invoking
//! [`engine_tests!`] inside a module of its test crate: one `#[tokio::test]`
//! per case, named `<that module>::<aggregate>::<case>`. The test crate needs
//! `tokio` (with its `macros` and multi-thread runtime).
//!
//! Grants come from the real authorization layer (`domain::access`): its
//! `authorize_*` functions are public and decide on a `Principal`, whose
//! fields are public, so the kit builds the principal an organization's
//! admin (or a delivery key) would have and asks for grants the way the
//! service does. Nothing is added to the library for the tests.
//!
//! This is test code: a failed expectation panics, which fails the case.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a case fails loudly where it cannot go on"
)]

pub mod audit;
pub mod events;
pub mod history;
pub mod identity;
pub mod keyring;
pub mod keys;
pub mod races;
pub mod secrets;
pub mod value_bytes;

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tessera_core::audit::chain::ChainKey;
use tessera_core::domain::access::{
    self, AllTeamsAccess, DeleteTeam, DeliveryAccess, KeyGrant, KeyRevocation, KeyTarget,
    OrgAccess, OrgAction, Principal, ReadTeam, TeamAccess, WriteSecrets,
};
use tessera_core::domain::ids::new_id;
use tessera_core::domain::types::{
    ApiKeyRecord, KeyType, Membership, OrgRole, Organization, Team, TeamRole, User,
};
use tessera_store::{
    DynStore, NewApiKey, NewOrganization, NewTeam, NewUser, SealedWrite, SecretWrite, Store,
    StoreError,
};

/// A storage engine under test.
pub trait Engine {
    /// What must outlive the case (a temporary directory, a private
    /// schema); dropped after the case's body.
    type Guard;

    /// A fresh, migrated store of this engine for the case `test` (its
    /// full test name), or `None` when the engine cannot run here; the
    /// engine then says why (naming `test`), as its test crate's skip rule
    /// wants.
    fn fresh(test: &'static str) -> impl Future<Output = Option<(Self::Guard, DynStore)>>;
}

/// Runs one case on a fresh store of `E`. Writes are refused until the
/// audit log can record them, so the store is given an audit key first.
pub async fn run<E, F, Fut>(test: &'static str, case: F)
where
    E: Engine,
    F: FnOnce(DynStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some((guard, store)) = E::fresh(test).await else {
        return;
    };
    store.install_audit_key(Some(Arc::new(ChainKey::generate())));
    case(store).await;
    drop(guard);
}

/// Declares every case of the kit as a test on the engine `$engine` (a type
/// implementing [`Engine`]), in submodules named after the aggregates:
/// `mod sqlite { tessera_store_conformance::engine_tests!(super::Sqlite); }`
/// gives `sqlite::secrets::create_then_update` and the rest.
#[macro_export]
macro_rules! engine_tests {
    ($engine:ty) => {
        type __ConformanceEngine = $engine;
        $crate::__with_cases!(__tests);
    };
}

/// Every case, by aggregate: the one list both [`engine_tests!`] and
/// [`CASES`] are made from, so that no case can be left out of a run.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($then:ident) => {
        $crate::$then! {
            audit: [writes_abandoned_mid_commit_leave_the_chain_usable, appended_events_read_back_in_order, pruning_keeps_the_latest_anchor, an_organizations_events_newest_first],
            events: [ping_and_backend, listen_hears_revisions],
            history: [updates_keep_previous_versions, destroy_previous_clears_earlier_ciphertexts, destroy_one_version, deleted_secrets_round_trip, purges_remove_secrets_and_versions, consumers_record_the_latest_version, consumers_are_capped_per_key, the_oldest_deleted_secrets_make_room, team_deletion_removes_history],
            identity: [organization_bootstrap, lookups_of_unknown_ids_are_none, teams_names_quota_order_rename, delete_team_with_and_without_cascade, users_emails_quota_directory, memberships_set_change_remove, delete_user_and_its_keys],
            keyring: [first_kek_is_recorded_once, first_kek_race_keeps_one, wrapped_key_first_stands, wrapped_key_race_one_wins],
            keys: [insert_and_find, names_unique_per_scope, quota_per_scope, insert_refused_when_referents_are_gone, list_order_and_details, delete_key, touch_records_latest_use],
            races: [creates_of_one_name_one_wins, updates_of_one_secret_all_apply, deletes_of_one_secret_one_wins, secret_quota_holds_under_race, identity_names_unique_under_race, identity_quotas_hold_under_race, additions_racing_team_deletion, keys_racing_creator_deletion, snapshots_are_of_one_instant],
            secrets: [create_then_update, stale_expectations_change_nothing, quota_counts_new_secrets_per_team, delete_moves_revision, revisions_strictly_increase, team_pages_in_name_order, org_pages_across_teams, teams_with_secrets_by_id, snapshot_matches_revision, deleted_team_is_not_found],
            value_bytes: [over_a_lowered_quota_only_growth_is_refused, concurrent_growth_stays_within_the_quota],
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __tests {
    ($($module:ident: [$($case:ident),* $(,)?],)*) => {
        $(
            mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        $crate::run::<super::__ConformanceEngine, _, _>(
                            concat!(module_path!(), "::", stringify!($case)),
                            $crate::$module::$case,
                        )
                        .await;
                    }
                )*
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __names {
    ($($module:ident: [$($case:ident),* $(,)?],)*) => {
        &[$($(concat!(stringify!($module), "::", stringify!($case)),)*)*]
    };
}

/// The name (`aggregate::case`) of every case [`engine_tests!`] declares.
pub const CASES: &[&str] = __with_cases!(__names);

/// Strictly increasing timestamps, so orderings by creation time are
/// decided by the data and not by the clock's resolution.
pub fn tick() -> i64 {
    static NOW: AtomicI64 = AtomicI64::new(1_700_000_000_000_000);
    NOW.fetch_add(1_000, Ordering::Relaxed)
}

/// An organization as bootstrap creates it, with its admin's principal.
pub struct Org {
    pub org: Organization,
    pub default_team: Team,
    pub admin: User,
    pub admin_key: ApiKeyRecord,
}

impl Org {
    /// Creates an organization named `name` (with its default team, admin
    /// user and the admin's personal key).
    pub async fn create(store: &dyn Store, name: &str) -> Self {
        let new = new_organization(name);
        store
            .create_organization(new.clone(), crate::event("x"))
            .await
            .unwrap();
        Self {
            org: new.org,
            default_team: new.default_team,
            admin: new.admin,
            admin_key: new.admin_key,
        }
    }

    /// The caller the admin's personal key authenticates as.
    pub fn admin_principal(&self) -> Principal {
        Principal {
            org_id: self.org.id.clone(),
            key_prefix: self.admin_key.prefix.clone(),
            key_type: KeyType::Personal,
            user: Some(self.admin.clone()),
            memberships: vec![Membership {
                team_id: self.default_team.id.clone(),
                role: TeamRole::Admin,
            }],
            bound_team_id: None,
            created_by: None,
            secret_names: None,
        }
    }

    pub fn grant(&self) -> OrgAccess {
        access::authorize_org(&self.admin_principal(), OrgAction::AdministerOrg).unwrap()
    }

    pub fn all_teams(&self) -> AllTeamsAccess {
        access::authorize_all_teams(&self.admin_principal()).unwrap()
    }

    /// The org admin's grant on `team`: the strongest, standing for every
    /// secret, history and administration action.
    pub fn team(&self, team: &Team) -> TeamAccess<DeleteTeam> {
        access::authorize_team(&self.admin_principal(), team).unwrap()
    }

    /// The org admin's grant to see `team` and its members.
    pub fn team_reader(&self, team: &Team) -> TeamAccess<ReadTeam> {
        access::authorize_team(&self.admin_principal(), team).unwrap()
    }

    pub fn default_access(&self) -> TeamAccess<DeleteTeam> {
        self.team(&self.default_team)
    }

    /// What a WORKSPACE_READ_SECRETS key of `team` may read.
    pub fn delivery(&self, team: &Team) -> DeliveryAccess {
        let p = Principal {
            org_id: self.org.id.clone(),
            key_prefix: new_id(),
            key_type: KeyType::WorkspaceReadSecrets,
            user: None,
            memberships: vec![],
            bound_team_id: Some(team.id.clone()),
            created_by: Some(self.admin.id.clone()),
            secret_names: None,
        };
        access::delivery_access(&p, team).unwrap()
    }

    pub fn key_grant(&self, key_type: KeyType, target: KeyTarget<'_>) -> KeyGrant {
        access::authorize_new_key(&self.admin_principal(), key_type, target).unwrap()
    }

    pub fn revocation(&self, key: &ApiKeyRecord) -> KeyRevocation {
        access::authorize_revocation(&self.admin_principal(), key).unwrap()
    }

    pub async fn new_team(&self, store: &dyn Store, name: &str) -> Team {
        store
            .create_team(&self.grant(), new_team(name), 1_000, crate::event("x"))
            .await
            .unwrap()
    }

    /// A new WORKSPACE_INVOKE key of the default team.
    pub async fn new_invoke_key(&self, store: &dyn Store) -> ApiKeyRecord {
        let grant = self.key_grant(
            KeyType::WorkspaceInvoke,
            KeyTarget::Team(&self.default_team),
        );
        store
            .insert_api_key(
                &grant,
                new_key(KeyType::WorkspaceInvoke, None, None),
                10,
                crate::event("x"),
            )
            .await
            .unwrap()
    }

    pub async fn new_user(&self, store: &dyn Store, email: &str) -> User {
        store
            .create_user(
                &self.grant(),
                new_user(Some(email)),
                1_000,
                crate::event("x"),
            )
            .await
            .unwrap()
    }
}

/// A new organization's rows, created now (a made-up key hash).
pub fn new_organization(name: &str) -> NewOrganization {
    NewOrganization::build(name, tick(), &new_id(), vec![7; 32])
}

pub fn new_team(name: &str) -> NewTeam {
    NewTeam {
        id: new_id(),
        name: name.to_owned(),
        created_at: tick(),
    }
}

pub fn new_user(email: Option<&str>) -> NewUser {
    NewUser {
        id: new_id(),
        email: email.map(str::to_owned),
        name: Some("someone".to_owned()),
        role: OrgRole::Member,
        created_at: tick(),
    }
}

pub fn new_key(key_type: KeyType, name: Option<&str>, created_by: Option<&str>) -> NewApiKey {
    NewApiKey {
        prefix: new_id(),
        key_type,
        name: name.map(str::to_owned),
        secret_hash: vec![1; 32],
        model_ids: None,
        secret_names: None,
        created_by: created_by.map(str::to_owned),
        created_at: tick(),
    }
}

/// A sealed write as the service makes one, for the secret `secret_id`
/// that the caller found (`exists`) or is creating. The ciphertext is
/// arbitrary bytes (the store never opens it), distinct per write.
pub fn sealed(name: &str, secret_id: &str, exists: bool) -> SealedWrite {
    let version_id = new_id();
    SealedWrite {
        canonical_name: name.replace(['-', '.'], "_"),
        name: name.to_owned(),
        secret_id: secret_id.to_owned(),
        exists,
        ciphertext: format!("sealed:{version_id}").into_bytes(),
        version_id,
        kek_id: "kek-1".to_owned(),
        now: tick(),
        max_team_bytes: i64::MAX,
        history: Default::default(),
        audit: event("secret.write"),
    }
}

/// An audit event as the service drafts one (the store links it).
pub fn event(action: &str) -> tessera_core::audit::event::AuditEvent {
    tessera_core::audit::event::AuditEvent {
        chain: String::new(),
        seq: 0,
        time: tick(),
        actor_key: Some("actor001".into()),
        actor_type: Some("PERSONAL".into()),
        actor_user: None,
        org_id: None,
        team_id: None,
        action: action.into(),
        target_id: None,
        target_name: None,
        result: "ok".into(),
        request_id: None,
        client: None,
        detail: None,
    }
}

/// A deletion as the service makes it by default: kept among the deleted
/// secrets.
pub fn deleted() -> tessera_store::Deletion {
    tessera_store::Deletion {
        at: tick(),
        by: Some("deleter1".into()),
        keep: true,
        max_kept: 1_000,
        audit: event("secret.delete"),
    }
}

/// Creates a new secret (no quota to speak of).
pub async fn create_secret(
    store: &dyn Store,
    team: &TeamAccess<WriteSecrets>,
    name: &str,
) -> SecretWrite {
    store
        .upsert_secret(team, sealed(name, &new_id(), false), 1_000)
        .await
        .unwrap()
}

/// Writes a new version of an existing secret.
pub async fn update_secret(
    store: &dyn Store,
    team: &TeamAccess<WriteSecrets>,
    name: &str,
) -> SecretWrite {
    let canonical = name.replace(['-', '.'], "_");
    let id = store.secret_id(team, &canonical).await.unwrap().unwrap();
    store
        .upsert_secret(team, sealed(name, &id, true), 1_000)
        .await
        .unwrap()
}

/// Asserts that `result` failed with exactly `expected` (variant and, for
/// quotas, the quota and its limit). Messages of `Conflict` and `NotFound`
/// are compared too: clients see them.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(result: Result<T, StoreError>, expected: StoreError) {
    let got = result.expect_err("expected an error");
    let same = match (&got, &expected) {
        (StoreError::Conflict(a), StoreError::Conflict(b))
        | (StoreError::NotFound(a), StoreError::NotFound(b)) => a == b,
        (
            StoreError::QuotaExceeded { quota, limit },
            StoreError::QuotaExceeded { quota: q, limit: l },
        ) => quota == q && limit == l,
        (StoreError::Stale, StoreError::Stale) => true,
        _ => false,
    };
    assert!(same, "expected {expected:?}, got {got:?}");
}

pub fn conflict(message: &str) -> StoreError {
    StoreError::Conflict(message.to_owned())
}

pub fn not_found(message: &str) -> StoreError {
    StoreError::NotFound(message.to_owned())
}

pub fn quota(quota: &'static str, limit: i64) -> StoreError {
    StoreError::QuotaExceeded { quota, limit }
}
