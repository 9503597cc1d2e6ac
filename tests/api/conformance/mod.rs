//! One conformance suite below HTTP: every store method's documented
//! contract, checked through the `Store` trait object on both engines (a
//! fresh SQLite file and a fresh PostgreSQL schema per test), so the
//! engines cannot drift apart unnoticed. Error variants are compared
//! exactly: that is where engines diverge.
//!
//! Grants come from the real authorization layer (`domain::access`): its
//! `authorize_*` functions are public and decide on a `Principal`, whose
//! fields are public, so the suite builds the principal an organization's
//! admin (or a delivery key) would have and asks for grants the way the
//! service does. Nothing is added to the library for the tests.

mod audit;
mod events;
mod history;
mod identity;
mod keyring;
mod keys;
mod races;
mod secrets;
mod value_bytes;

use std::sync::atomic::{AtomicI64, Ordering};
use tessera::domain::access::{
    self, AllTeamsAccess, DeleteTeam, DeliveryAccess, KeyGrant, KeyRevocation, KeyTarget,
    OrgAccess, OrgAction, Principal, ReadTeam, TeamAccess, WriteSecrets,
};
use tessera::domain::ids::new_id;
use tessera::domain::types::{
    ApiKeyRecord, KeyType, Membership, OrgRole, Organization, Team, TeamRole, User,
};
use tessera::service::bootstrap;
use tessera::store::{
    DynStore, NewApiKey, NewOrganization, NewTeam, NewUser, SealedWrite, SecretWrite, Store,
    StoreError,
};

/// Declares each listed `async fn name(store: DynStore)` as a test on both
/// engines: `…::sqlite::name` and `…::postgres::name` (announced as skipped
/// when no PostgreSQL is configured). The storage outlives the body.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_storage, store) =
                        $crate::conformance::open($crate::common::Backend::Sqlite).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::conformance::open($crate::common::Backend::Postgres).await {
                        Some((_storage, store)) => super::$name(store).await,
                        None => $crate::common::announce_skip(
                            concat!(module_path!(), "::", stringify!($name)),
                            "TESSERA_TEST_DATABASE_URL is not set",
                        ),
                    }
                }
            )*
        }
    };
}

/// A fresh, migrated store; `None` when the engine is not configured.
pub async fn open(backend: crate::common::Backend) -> Option<(crate::common::Storage, DynStore)> {
    let storage = crate::common::Storage::new(backend).await?;
    let store = tessera::store::open(&storage.database_url())
        .await
        .expect("open store");
    // Writes are refused until the audit log can record them.
    store.install_audit_key(Some(std::sync::Arc::new(
        tessera::audit::chain::ChainKey::generate(),
    )));
    Some((storage, store))
}

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
            .create_organization(new.clone(), crate::conformance::event("x"))
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
            .create_team(
                &self.grant(),
                new_team(name),
                1_000,
                crate::conformance::event("x"),
            )
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
                crate::conformance::event("x"),
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
                crate::conformance::event("x"),
            )
            .await
            .unwrap()
    }
}

pub fn new_organization(name: &str) -> NewOrganization {
    bootstrap::new_organization(name, tick(), &new_id(), vec![7; 32])
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
pub fn event(action: &str) -> tessera::audit::event::AuditEvent {
    tessera::audit::event::AuditEvent {
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
pub fn deleted() -> tessera::store::Deletion {
    tessera::store::Deletion {
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
