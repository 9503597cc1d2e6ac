//! Persistence, cut by aggregate: [`KeyringStore`] (master-key records and
//! keys wrapped by it), [`IdentityStore`] (organizations, teams, users,
//! memberships), [`KeyStore`] (API keys) and [`SecretStore`] (secrets and
//! their delivery). [`Store`] is all four, as the service holds it; SQLite
//! (the embedded default) and PostgreSQL implement each aggregate in a file
//! of its own beside the other engine's. What both engines share lives with
//! the aggregate's trait: column lists and row mappers (rows are read through
//! `row::Row`), messages, quota decisions, records built from a request; an
//! engine's file holds its SQL and driver calls. Each engine's trait methods
//! run in a debug-level span named after the method, which also logs the
//! error of a failing call.
//!
//! Data methods take an authorization grant from [`tessera_core::domain::access`]
//! (which has no public constructor), and the grant names what it covers:
//! the store takes the organization, team or user from it, never from a
//! second argument. The store never sees a value: the service seals before
//! it writes and opens after it reads.
//!
//! Orders of text ("by id", "in canonical-name order") are byte order on
//! SQLite, and the database's collation order on PostgreSQL: the same when
//! the database was created with a bytewise collation (`C`, `C.UTF-8`), as
//! `docs/operations-postgres.md` asks. Cursors compare with the same
//! collation as the ordering, so pages are complete either way. The
//! conformance kit (`crates/store-conformance`, run by `tests/api/conformance.rs`)
//! checks every contract here on both engines.

pub mod postgres;
pub mod sqlite;

mod audit;
pub mod delivery_pages;
mod error;
mod event_batcher;
mod history;
mod identity;
mod keyring;
mod keys;
mod row;
mod secrets;
#[cfg(test)]
mod shipped_steps;

pub use audit::{purge_detail, AuditFilter, AuditStore, PurgeReason};
pub use delivery_pages::{DeliveryPage, DeliveryPageStore};
pub use error::{StoreError, StoreResult};
pub use history::{
    Actor, Consumer, ConsumerCap, ConsumerSeen, DeletedSecret, Deletion, Destroyed, HistoryStore,
    SecretHistory, StoredVersion, VersionRecord, WriteHistory, DEFAULT_KEEP_VERSIONS,
};
pub use identity::{
    AuthorityOutcome, IdentityStore, NewOrganization, NewTeam, NewUser, TeamDeletion, UserQuery,
    DEFAULT_TEAM_NAME,
};
pub use keyring::KeyringStore;
pub use keys::{KeyListing, KeyStore, NewApiKey, AUTHORITY_GONE};
pub use secrets::{SealedWrite, SecretStore, SecretWrite, Snapshot, StoredSecret};

use async_trait::async_trait;
use std::sync::Arc;

/// Reads of at most this many rows may run on the calling runtime worker (a
/// 100-secret listing takes tens of microseconds on SQLite); stores run
/// larger ones where they cannot hold up other requests.
pub const INLINE_ROWS: usize = 256;

/// What another node changed, as heard by [`Store::listen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A team's revision moved (a secret was written or deleted).
    Revision { team_id: String, revision: i64 },
    /// Keys, users or teams were deleted: cached principals may be stale.
    IdentityChanged,
    /// Events may have been missed (the listening connection was lost and
    /// is listening again): re-read what matters.
    Resync,
}

/// Where [`Store::listen`] delivers events.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<StoreEvent>;

/// Every aggregate, as the service holds the store.
#[async_trait]
pub trait Store:
    KeyringStore
    + IdentityStore
    + KeyStore
    + SecretStore
    + DeliveryPageStore
    + HistoryStore
    + AuditStore
    + Send
    + Sync
    + 'static
{
    /// The backend's name, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Cheap round trip proving the database answers. After a write failed
    /// for lack of space, also proves that writes succeed again.
    async fn ping(&self) -> StoreResult<()>;

    /// Delivers other nodes' changes to `sink` until the store is dropped.
    /// Stores that cannot be shared by several processes have nothing to say.
    fn listen(&self, sink: EventSink) {
        drop(sink);
    }
}

pub type DynStore = Arc<dyn Store>;

/// Each engine's schema steps, in order: the `.sql` files of these names in
/// the engine's own `migrations/` folder (paths resolve from the file that
/// invokes this), embedded in the binary. Append only: never edit a shipped
/// step.
macro_rules! schema_steps {
    () => {
        &[
            (1, include_str!("migrations/0001_initial.sql")),
            (2, include_str!("migrations/0002_delivery.sql")),
            (3, include_str!("migrations/0003_quotas.sql")),
            (4, include_str!("migrations/0004_email_keys.sql")),
            (5, include_str!("migrations/0005_version_ids.sql")),
            (6, include_str!("migrations/0006_team_counters.sql")),
            (7, include_str!("migrations/0007_history.sql")),
            (8, include_str!("migrations/0008_audit.sql")),
            (9, include_str!("migrations/0009_audit_anchors.sql")),
            (10, include_str!("migrations/0010_team_value_bytes.sql")),
            (12, include_str!("migrations/0012_revoked_keys.sql")),
            (13, include_str!("migrations/0013_consumer_kinds.sql")),
        ]
    };
}
pub(crate) use schema_steps;

/// A JSON array of strings stored in a TEXT column (both engines).
pub(crate) fn json_list(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|s| serde_json::from_str(&s).ok())
}

pub(crate) fn to_json_list(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref().and_then(|m| serde_json::to_string(m).ok())
}

/// The database file a `sqlite://` URL names.
pub fn sqlite_path(database_url: &str) -> Option<std::path::PathBuf> {
    let path = database_url.strip_prefix("sqlite://")?;
    Some(path.split('?').next().unwrap_or(path).into())
}

/// What start-up decides on before it changes anything: the master keys a
/// store records (id, check value) and how many organizations it holds.
#[derive(Debug, Clone, Default)]
pub struct Peek {
    pub keks: Vec<(String, Vec<u8>)>,
    pub organizations: i64,
}

/// Reads [`Peek`] from the store a database URL names without creating,
/// migrating or writing anything (start-up's checks, `cli::preflight`);
/// `None` when nothing is there yet (no database file, no tables).
pub async fn peek(database_url: &str) -> anyhow::Result<Option<Peek>> {
    if let Some(path) = sqlite_path(database_url) {
        sqlite::peek(&path)
    } else {
        postgres::peek(database_url).await
    }
}

/// How a store is opened, beyond its URL: settings from the configuration
/// (`serve`'s flags), never read from the environment here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    /// Most connections one node's PostgreSQL pool opens.
    pub pg_max_connections: u32,
}

/// The default [`OpenOptions::pg_max_connections`].
pub const DEFAULT_PG_MAX_CONNECTIONS: u32 = 32;

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            pg_max_connections: DEFAULT_PG_MAX_CONNECTIONS,
        }
    }
}

/// Opens the store a database URL names with the default options, running
/// migrations.
pub async fn open(database_url: &str) -> anyhow::Result<DynStore> {
    open_with(database_url, &OpenOptions::default()).await
}

/// Opens the store a database URL names, running migrations.
pub async fn open_with(database_url: &str, options: &OpenOptions) -> anyhow::Result<DynStore> {
    if let Some(path) = sqlite_path(database_url) {
        Ok(Arc::new(sqlite::SqliteStore::open(&path)?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PostgresStore::connect(database_url, options.pg_max_connections).await?,
        ))
    } else {
        anyhow::bail!("unsupported database URL scheme (expected sqlite:// or postgres://)")
    }
}
