//! The embedded SQLite store: one writer thread with group commit, a pool of
//! readers, WAL journal with `synchronous=FULL` (a commit is fsynced).

mod checkpointer;
mod identity;
mod migrations;
mod readers;
mod writer;

use super::{
    KeyListing, NewOrganization, SealFn, SecretWrite, Snapshot, Store, StoreError, StoreResult,
    StoredSecret, TeamDeletion, UserQuery,
};
use crate::domain::access::{AllTeamsAccess, DeliveryAccess, KeyGrant, OrgAccess, TeamAccess};
use crate::domain::secret_name::SecretName;
use crate::domain::time::Micros;
use crate::domain::types::{
    ApiKeyRecord, KekRecord, ListedSecret, Membership, Organization, SecretRecord, Team, TeamRole,
    User,
};
use async_trait::async_trait;
use readers::Readers;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::Arc;
use writer::Writer;

const READERS: usize = 4;

/// Large reads at once: half the cores (at least one), so they never take
/// every core from the runtime's workers.
fn bulk_readers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
/// After writes failed for lack of space, the store is ready again only with
/// at least this much free on the database's file system.
const RECOVERED_FREE_BYTES: u64 = 1 << 20;

pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    /// Whether writes fail; then readiness probes with a write.
    health: Arc<writer::Health>,
    /// The directory holding the database (for its free space).
    dir: std::path::PathBuf,
    _checkpointer: checkpointer::Checkpointer,
}

/// The one place SQLite errors are classified. Client-visible messages are
/// ours; SQLite's text goes only into log-only variants.
pub(crate) fn internal(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(err, _) = &e {
        match err.code {
            rusqlite::ErrorCode::ConstraintViolation => {
                return if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY {
                    StoreError::NotFound(super::GONE.into())
                } else {
                    StoreError::Conflict(super::CONFLICT.into())
                };
            }
            rusqlite::ErrorCode::DiskFull => return StoreError::StorageFull(e.to_string()),
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                return StoreError::Unavailable("the database is locked by another process".into())
            }
            _ => {}
        }
    }
    StoreError::Internal(e.to_string())
}

/// Settings of every connection. `secure_delete` makes SQLite overwrite
/// deleted content with zeros (freed cells inside a page and whole freed
/// pages), so a replaced or deleted ciphertext does not linger in free space
/// of the database file; see `checkpointer.rs` for the WAL.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Creates the database file readable and writable by its owner only (0600)
/// before SQLite opens it, and takes group and other access away from an
/// existing one and its `-wal` and `-shm` files. SQLite creates a new database
/// 0644 and gives the `-wal` and `-shm` files the database file's mode, so
/// this keeps all three private whatever the umask.
fn make_files_private(db: &Path) -> anyhow::Result<()> {
    if !db.exists() {
        crate::datadir::create_private_file(db)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        crate::datadir::restrict_file(Path::new(&name))?;
    }
    Ok(())
}

/// Proves at start that the store can be written: a read-only directory,
/// file or file system is refused here, with the cause, instead of starting
/// a server whose every write fails. Rewrites one row of `schema_migrations`
/// unchanged (a real page write, committed and synced), then checkpoints it
/// into the database file.
fn probe_writable(conn: &Connection) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE schema_migrations SET applied_at = applied_at
         WHERE version = (SELECT MAX(version) FROM schema_migrations)",
        [],
    )
    .map_err(|e| anyhow::anyhow!("writing to the database failed: {e}"))?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(|e| anyhow::anyhow!("writing to the database file failed: {e}"))?;
    Ok(())
}

fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    std::path::PathBuf::from(name)
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (version, sql) in migrations::MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, crate::domain::time::now_micros()],
            )?;
            tracing::info!(version, "applied SQLite migration");
        }
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                crate::datadir::create_private_dir(dir)?;
            }
        }
        let open_writer = || -> anyhow::Result<Connection> {
            make_files_private(path)?;
            let mut conn = Connection::open(path)?;
            configure(&conn)?;
            migrate(&mut conn)?;
            probe_writable(&conn)?;
            Ok(conn)
        };
        let write_conn = open_writer().map_err(|e| {
            anyhow::anyhow!(
                "cannot write the SQLite database {} (is its directory or file system read-only?): {e:#}",
                path.display()
            )
        })?;
        // The writer's syncer fsyncs this file (see writer.rs); it exists
        // from the moment WAL mode is set and stays while connections are
        // open (checkpoints truncate it, never remove it).
        let wal = std::fs::File::open(wal_path(path))
            .map_err(|e| anyhow::anyhow!("opening the SQLite WAL file: {e}"))?;
        let checkpoint_conn = Connection::open(path)?;
        configure(&checkpoint_conn)?;
        let read_only = || -> anyhow::Result<Connection> {
            let c = Connection::open(path)?;
            configure(&c)?;
            c.execute_batch("PRAGMA query_only = ON")?;
            Ok(c)
        };
        let readers = (0..READERS)
            .map(|_| read_only())
            .collect::<Result<_, _>>()?;
        let bulk = (0..bulk_readers())
            .map(|_| read_only())
            .collect::<Result<_, _>>()?;
        let health = Arc::new(writer::Health::default());
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => std::path::PathBuf::from("."),
        };
        Ok(Self {
            dir,
            writer: Writer::start(write_conn, wal, health.clone())?,
            readers: Readers::new(readers, bulk),
            health,
            _checkpointer: checkpointer::Checkpointer::start(checkpoint_conn)?,
        })
    }
}

pub(crate) const SECRET_COLUMNS: &str =
    "s.id, s.org_id, s.team_id, t.name, s.name, s.canonical_name, s.created_at, s.updated_at, s.version";

pub(crate) fn secret_row(r: &Row<'_>) -> rusqlite::Result<SecretRecord> {
    Ok(SecretRecord {
        id: r.get(0)?,
        org_id: r.get(1)?,
        team_id: r.get(2)?,
        team_name: r.get(3)?,
        name: r.get(4)?,
        canonical_name: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        version: r.get(8)?,
    })
}

pub(crate) const TEAM_COLUMNS: &str = "id, org_id, name, is_default, created_at";

pub(crate) fn team_row(r: &Row<'_>) -> rusqlite::Result<Team> {
    Ok(Team {
        id: r.get(0)?,
        org_id: r.get(1)?,
        name: r.get(2)?,
        is_default: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, org_id, email, name, role, created_at";

pub(crate) fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    identity::user_at(r, 0)
}

pub(crate) const KEY_COLUMNS: &str =
    "prefix, org_id, key_type, name, secret_hash, user_id, team_id, model_ids, created_by, created_at, last_used_at, secret_names";

pub(crate) fn key_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let key_type: String = r.get(2)?;
    Ok(ApiKeyRecord {
        prefix: r.get(0)?,
        org_id: r.get(1)?,
        key_type: key_type.parse().map_err(|_| bad_enum(2, &key_type))?,
        name: r.get(3)?,
        secret_hash: r.get(4)?,
        user_id: r.get(5)?,
        team_id: r.get(6)?,
        model_ids: json_list(r.get(7)?),
        created_by: r.get(8)?,
        created_at: r.get(9)?,
        last_used_at: r.get(10)?,
        secret_names: json_list(r.get(11)?),
    })
}

/// A JSON array of strings stored in a TEXT column.
pub(crate) fn json_list(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|s| serde_json::from_str(&s).ok())
}

pub(crate) fn to_json_list(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|m| serde_json::to_string(m).unwrap_or_default())
}

/// Refuses to add one more of something when `count_sql` (one `?1`
/// parameter) already counts `limit`. Race-free: only the writer writes.
pub(crate) fn within_quota(
    c: &Connection,
    count_sql: &str,
    param: &str,
    quota: &'static str,
    limit: i64,
) -> StoreResult<()> {
    let n: i64 = c
        .prepare_cached(count_sql)
        .map_err(internal)?
        .query_row([param], |r| r.get(0))
        .map_err(internal)?;
    if n >= limit {
        return Err(StoreError::QuotaExceeded { quota, limit });
    }
    Ok(())
}

pub(crate) fn listed_row(r: &Row<'_>) -> rusqlite::Result<ListedSecret> {
    Ok(ListedSecret {
        team_id: r.get(0)?,
        team_name: r.get(1)?,
        id: r.get(2)?,
        name: r.get(3)?,
        canonical_name: r.get(4)?,
        created_at: r.get(5)?,
        version: r.get(6)?,
    })
}

pub(crate) fn bad_enum(col: usize, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("unknown enum value {value:?}").into(),
    )
}

pub(crate) fn insert_key(
    conn: &Connection,
    k: &ApiKeyRecord,
    name_scope: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO api_keys ({KEY_COLUMNS}, name_scope) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        k.prefix,
        k.org_id,
        k.key_type.as_str(),
        k.name,
        k.secret_hash,
        k.user_id,
        k.team_id,
        to_json_list(&k.model_ids),
        k.created_by,
        k.created_at,
        k.last_used_at,
        to_json_list(&k.secret_names),
        name_scope,
    ])?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.readers
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(internal))
            .await?;
        if let Some(failing) = self.health.failing() {
            if let StoreError::StorageFull(_) = failing {
                // Small writes may still fit on a full disk: ready again only
                // with some room to spare.
                let free = fs4::available_space(&self.dir).unwrap_or(0);
                if free < RECOVERED_FREE_BYTES {
                    return Err(StoreError::StorageFull(format!(
                        "{free} bytes free in {}",
                        self.dir.display()
                    )));
                }
            }
            // Ready again once a write commits and is synced.
            self.writer
                .write_single_statement(|c| {
                    c.execute(
                        "UPDATE schema_migrations SET applied_at = applied_at
                         WHERE version = (SELECT MAX(version) FROM schema_migrations)",
                        [],
                    )
                    .map(|_| ())
                    .map_err(internal)
                })
                .await?;
            self.health.clear();
        }
        Ok(())
    }

    async fn keks(&self) -> StoreResult<Vec<KekRecord>> {
        self.readers
            .read(|c| {
                let mut st = c
                    .prepare_cached(
                        "SELECT kek_id, check_value, created_at FROM keks ORDER BY created_at",
                    )
                    .map_err(internal)?;
                let rows = st
                    .query_map([], |r| {
                        Ok(KekRecord {
                            kek_id: r.get(0)?,
                            check_value: r.get(1)?,
                            created_at: r.get(2)?,
                        })
                    })
                    .map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)
            })
            .await
    }

    async fn record_first_kek(&self, kek: KekRecord) -> StoreResult<()> {
        self.writer
            .write(move |c| {
                c.execute(
                    "INSERT INTO keks (kek_id, check_value, created_at, primary_slot) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT DO NOTHING",
                    params![kek.kek_id, kek.check_value, kek.created_at],
                )
                .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn wrapped_key(&self, purpose: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        let purpose = purpose.to_owned();
        self.readers
            .read(move |c| {
                c.prepare_cached("SELECT kek_id, wrapped FROM wrapped_keys WHERE purpose = ?1")
                    .map_err(internal)?
                    .query_row([purpose], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(internal)
            })
            .await
    }

    async fn insert_wrapped_key(
        &self,
        purpose: &str,
        kek_id: &str,
        wrapped: Vec<u8>,
        now: Micros,
    ) -> StoreResult<()> {
        let (purpose, kek_id) = (purpose.to_owned(), kek_id.to_owned());
        self.writer
            .write_single_statement(move |c| {
                c.execute(
                    "INSERT INTO wrapped_keys (purpose, kek_id, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![purpose, kek_id, wrapped, now],
                )
                .map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn organization_count(&self) -> StoreResult<i64> {
        self.readers
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM organizations", [], |r| r.get(0))
                    .map_err(internal)
            })
            .await
    }

    async fn create_organization(&self, new: NewOrganization) -> StoreResult<()> {
        self.writer
            .write(move |c| {
                let exists: bool = c
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM organizations WHERE name = ?1)",
                        [&new.org.name],
                        |r| r.get(0),
                    )
                    .map_err(internal)?;
                if exists {
                    return Err(StoreError::Conflict(format!(
                        "an organization named {:?} already exists",
                        new.org.name
                    )));
                }
                c.execute(
                    "INSERT INTO organizations (id, name, created_at) VALUES (?1, ?2, ?3)",
                    params![new.org.id, new.org.name, new.org.created_at],
                )
                .map_err(internal)?;
                let t = &new.default_team;
                identity::create_team(c, t)?;
                let u = &new.admin;
                identity::insert_user(c, u)?;
                identity::set_member(c, &t.id, &u.id, crate::domain::types::TeamRole::Admin)?;
                insert_key(c, &new.admin_key, &format!("user:{}", u.id)).map_err(internal)?;
                Ok(())
            })
            .await
    }

    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let prefix = prefix.to_owned();
        self.readers
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?1"
                ))
                .map_err(internal)?
                .query_row([prefix], key_row)
                .optional()
                .map_err(internal)
            })
            .await
    }

    async fn find_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let id = user_id.to_owned();
        self.readers
            .read(move |c| {
                c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
                    .map_err(internal)?
                    .query_row([id], user_row)
                    .optional()
                    .map_err(internal)
            })
            .await
    }

    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        let id = user_id.to_owned();
        self.readers
            .read(move |c| {
                let mut st = c
                    .prepare_cached("SELECT team_id, role FROM team_members WHERE user_id = ?1")
                    .map_err(internal)?;
                let rows = st
                    .query_map([id], |r| {
                        let role: String = r.get(1)?;
                        Ok(Membership {
                            team_id: r.get(0)?,
                            role: role.parse().map_err(|_| bad_enum(1, &role))?,
                        })
                    })
                    .map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)
            })
            .await
    }

    async fn find_team(&self, team_id: &str) -> StoreResult<Option<Team>> {
        let id = team_id.to_owned();
        self.readers
            .read(move |c| {
                c.prepare_cached(&format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = ?1"))
                    .map_err(internal)?
                    .query_row([id], team_row)
                    .optional()
                    .map_err(internal)
            })
            .await
    }

    async fn default_team(&self, org_id: &str) -> StoreResult<Team> {
        let id = org_id.to_owned();
        self.readers
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = ?1 AND is_default = 1"
                ))
                .map_err(internal)?
                .query_row([id], team_row)
                .map_err(internal)
            })
            .await
    }

    async fn organization(&self, org: &OrgAccess) -> StoreResult<Organization> {
        let id = org.org_id().to_owned();
        self.readers
            .read(move |c| {
                c.prepare_cached("SELECT id, name, created_at FROM organizations WHERE id = ?1")
                    .map_err(internal)?
                    .query_row([id], |r| {
                        Ok(Organization {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            created_at: r.get(2)?,
                        })
                    })
                    .map_err(internal)
            })
            .await
    }

    async fn list_teams(&self, org: &OrgAccess) -> StoreResult<Vec<Team>> {
        let id = org.org_id().to_owned();
        self.readers
            .read(move |c| {
                let mut st = c
                    .prepare_cached(&format!(
                        "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = ?1 ORDER BY is_default DESC, name"
                    ))
                    .map_err(internal)?;
                let rows = st.query_map([id], team_row).map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)
            })
            .await
    }

    async fn create_team(&self, org: &OrgAccess, team: Team, max_teams: i64) -> StoreResult<()> {
        debug_assert_eq!(org.org_id(), team.org_id);
        self.writer
            .write(move |c| {
                within_quota(
                    c,
                    "SELECT COUNT(*) FROM teams WHERE org_id = ?1",
                    &team.org_id,
                    "teams per organization",
                    max_teams,
                )?;
                identity::create_team(c, &team)
            })
            .await
    }

    async fn rename_team(&self, team: &TeamAccess, name: &str) -> StoreResult<()> {
        let (id, name) = (team.team_id().to_owned(), name.to_owned());
        self.writer
            .write(move |c| identity::rename_team(c, &id, &name))
            .await
    }

    async fn delete_team(&self, team: &TeamAccess, cascade: bool) -> StoreResult<TeamDeletion> {
        let id = team.team_id().to_owned();
        self.writer
            .write(move |c| identity::delete_team(c, &id, cascade))
            .await
    }

    async fn list_users(&self, org: &OrgAccess, query: UserQuery) -> StoreResult<Vec<User>> {
        let org_id = org.org_id().to_owned();
        self.readers
            .read(move |c| identity::list_users(c, &org_id, &query))
            .await
    }

    async fn create_user(
        &self,
        org: &OrgAccess,
        user: User,
        default_team_id: &str,
        max_users: i64,
    ) -> StoreResult<()> {
        debug_assert_eq!(org.org_id(), user.org_id);
        let team_id = default_team_id.to_owned();
        self.writer
            .write(move |c| {
                within_quota(
                    c,
                    "SELECT COUNT(*) FROM users WHERE org_id = ?1",
                    &user.org_id,
                    "users per organization",
                    max_users,
                )?;
                identity::create_user(c, &user, &team_id)
            })
            .await
    }

    async fn delete_user(&self, org: &OrgAccess, user_id: &str) -> StoreResult<bool> {
        let (org_id, user_id) = (org.org_id().to_owned(), user_id.to_owned());
        self.writer
            .write(move |c| identity::delete_user(c, &org_id, &user_id))
            .await
    }

    async fn list_members(&self, team: &TeamAccess) -> StoreResult<Vec<(User, TeamRole)>> {
        let id = team.team_id().to_owned();
        self.readers
            .read(move |c| identity::list_members(c, &id))
            .await
    }

    async fn set_member(
        &self,
        team: &TeamAccess,
        user_id: &str,
        role: TeamRole,
    ) -> StoreResult<()> {
        let (team_id, user_id) = (team.team_id().to_owned(), user_id.to_owned());
        self.writer
            .write(move |c| identity::set_member(c, &team_id, &user_id, role))
            .await
    }

    async fn remove_member(&self, team: &TeamAccess, user_id: &str) -> StoreResult<bool> {
        let (team_id, user_id) = (team.team_id().to_owned(), user_id.to_owned());
        self.writer
            .write(move |c| identity::remove_member(c, &team_id, &user_id))
            .await
    }

    async fn insert_api_key(
        &self,
        grant: &KeyGrant,
        key: ApiKeyRecord,
        max_keys: i64,
    ) -> StoreResult<()> {
        debug_assert_eq!(grant.org_id(), key.org_id);
        let scope = grant.name_scope().to_owned();
        let quota = super::key_quota_name(&scope);
        self.writer
            .write(move |c| {
                within_quota(
                    c,
                    "SELECT COUNT(*) FROM api_keys WHERE name_scope = ?1",
                    &scope,
                    quota,
                    max_keys,
                )?;
                identity::insert_api_key(c, &key, &scope)
            })
            .await
    }

    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>> {
        let org_id = org.org_id().to_owned();
        self.readers
            .read(move |c| identity::list_keys(c, &org_id))
            .await
    }

    async fn delete_api_key(&self, grant: &KeyGrant, prefix: &str) -> StoreResult<bool> {
        let (org_id, prefix) = (grant.org_id().to_owned(), prefix.to_owned());
        self.writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM api_keys WHERE org_id = ?1 AND prefix = ?2")
                    .map_err(internal)?
                    .execute(params![org_id, prefix])
                    .map(|n| n > 0)
                    .map_err(internal)
            })
            .await
    }

    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()> {
        self.writer
            .write(move |c| {
                let mut st = c
                    .prepare_cached(
                        "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2) WHERE prefix = ?1",
                    )
                    .map_err(internal)?;
                for (prefix, at) in &uses {
                    st.execute(params![prefix, at]).map_err(internal)?;
                }
                Ok(())
            })
            .await
    }

    async fn upsert_secret(
        &self,
        team: &TeamAccess,
        name: &SecretName,
        new_id: String,
        now: Micros,
        seal: SealFn,
        max_secrets: i64,
    ) -> StoreResult<SecretWrite> {
        let org_id = team.org_id().to_owned();
        let team_id = team.team_id().to_owned();
        let team_name = team.team_name().to_owned();
        let spelling = name.as_str().to_owned();
        let canonical = name.canonical().to_owned();
        let (record, revision) = self
            .writer
            .write_team_change(team_id.clone(), move |c| {
                // The writer is the only one writing, so what this read finds
                // is still true when the upsert below runs.
                let existing: Option<(String, String, i64, i64)> = c
                    .prepare_cached(
                        "SELECT id, name, created_at, version FROM secrets
                         WHERE team_id = ?1 AND canonical_name = ?2",
                    )
                    .map_err(internal)?
                    .query_row(params![team_id, canonical], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .optional()
                    .map_err(internal)?;
                let is_new = existing.is_none();
                let (id, name, created_at, version) = match existing {
                    Some((id, name, created_at, version)) => (id, name, created_at, version + 1),
                    None => (new_id, spelling, now, 1),
                };
                let ciphertext = seal(&id, version);
                let kek_id = crate::crypto::envelope::kek_id_of(&ciphertext);
                let upsert = |c: &Connection| {
                    c.prepare_cached(
                        "INSERT INTO secrets (team_id, canonical_name, id, org_id, name, created_at, updated_at, version, kek_id, ciphertext)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (team_id, canonical_name) DO UPDATE SET
                             updated_at = excluded.updated_at, version = excluded.version,
                             kek_id = excluded.kek_id, ciphertext = excluded.ciphertext",
                    )
                    .map_err(internal)?
                    .execute(params![team_id, canonical, id, org_id, name, created_at, now, version, kek_id, ciphertext])
                    // It fails on the team's foreign key when the team was
                    // deleted meanwhile.
                    .map_err(|e| match internal(e) {
                        StoreError::NotFound(_) => StoreError::NotFound("team not found".into()),
                        other => other,
                    })
                };
                if is_new {
                    // A new secret is counted against the team's quota: two
                    // modifying statements, so they share a savepoint.
                    writer::in_savepoint(c, |c| {
                        let counted = c
                            .prepare_cached(
                                "UPDATE teams SET secret_count = secret_count + 1
                                 WHERE id = ?1 AND secret_count < ?2",
                            )
                            .map_err(internal)?
                            .execute(params![team_id, max_secrets])
                            .map_err(internal)?;
                        if counted == 0 {
                            let team_exists: bool = c
                                .prepare_cached("SELECT EXISTS (SELECT 1 FROM teams WHERE id = ?1)")
                                .map_err(internal)?
                                .query_row([&team_id], |r| r.get(0))
                                .map_err(internal)?;
                            if !team_exists {
                                return Err(StoreError::NotFound("team not found".into()));
                            }
                            return Err(StoreError::QuotaExceeded {
                                quota: "secrets per team",
                                limit: max_secrets,
                            });
                        }
                        upsert(c)
                    })?;
                } else {
                    // An update: the one modifying statement of this job.
                    upsert(c)?;
                }
                let updated_at = now;
                Ok(SecretRecord {
                    id,
                    org_id,
                    team_id,
                    team_name,
                    name,
                    canonical_name: canonical,
                    created_at,
                    updated_at,
                    version,
                })
            })
            .await?;
        Ok(SecretWrite { record, revision })
    }

    async fn team_secrets_page(
        &self,
        team: &TeamAccess,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>> {
        let (team_id, team_name, after) = (
            team.team_id().to_owned(),
            team.team_name().to_owned(),
            after.to_owned(),
        );
        self.readers
            .read_sized(limit, move |c| {
                let mut st = c
                    .prepare_cached(
                        "SELECT team_id, '', id, name, canonical_name, created_at, version FROM secrets
                         WHERE team_id = ?1 AND canonical_name > ?2
                         ORDER BY canonical_name LIMIT ?3",
                    )
                    .map_err(internal)?;
                let rows = st
                    .query_map(params![team_id, after, limit as i64], |r| {
                        listed_row(r).map(|mut s| {
                            s.team_name.clone_from(&team_name);
                            s
                        })
                    })
                    .map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)
            })
            .await
    }

    async fn org_secrets_page(
        &self,
        org: &AllTeamsAccess,
        after: (&str, &str),
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>> {
        let (org_id, after_team, after_name) = (
            org.org_id().to_owned(),
            after.0.to_owned(),
            after.1.to_owned(),
        );
        self.readers
            .read_sized(limit, move |c| {
                let mut st = c
                    .prepare_cached(
                        "SELECT s.team_id, t.name, s.id, s.name, s.canonical_name, s.created_at, s.version
                         FROM secrets s JOIN teams t ON t.id = s.team_id
                         WHERE s.org_id = ?1 AND (s.team_id, s.canonical_name) > (?2, ?3)
                         ORDER BY s.team_id, s.canonical_name LIMIT ?4",
                    )
                    .map_err(internal)?;
                let rows = st
                    .query_map(params![org_id, after_team, after_name, limit as i64], listed_row)
                    .map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)
            })
            .await
    }

    async fn teams_with_secrets(&self, org: &OrgAccess) -> StoreResult<Vec<Team>> {
        let id = org.org_id().to_owned();
        self.readers
            .read(move |c| {
                let mut st = c
                    .prepare_cached(&format!(
                        "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = ?1 AND secret_count > 0 ORDER BY id"
                    ))
                    .map_err(internal)?;
                let rows = st.query_map([id], team_row).map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)
            })
            .await
    }

    async fn delete_secret(
        &self,
        team: &TeamAccess,
        canonical_name: &str,
    ) -> StoreResult<Option<SecretWrite>> {
        let team_id = team.team_id().to_owned();
        let canonical = canonical_name.to_owned();
        // Changes only when the secret exists; a job that found nothing
        // still moves the revision, which costs waiters one unchanged answer
        // and nothing else.
        let (found, revision) = self
            .writer
            .write_team_change(team_id.clone(), move |c| {
                let found = c
                    .prepare_cached(&format!(
                        "SELECT {SECRET_COLUMNS} FROM secrets s JOIN teams t ON t.id = s.team_id
                         WHERE s.team_id = ?1 AND s.canonical_name = ?2"
                    ))
                    .map_err(internal)?
                    .query_row(params![team_id, canonical], secret_row)
                    .optional()
                    .map_err(internal)?;
                if let Some(s) = &found {
                    writer::in_savepoint(c, |c| {
                        c.prepare_cached(
                            "DELETE FROM secrets WHERE team_id = ?1 AND canonical_name = ?2",
                        )
                        .map_err(internal)?
                        .execute(params![s.team_id, s.canonical_name])
                        .map_err(internal)?;
                        c.prepare_cached(
                            "UPDATE teams SET secret_count = secret_count - 1 WHERE id = ?1",
                        )
                        .map_err(internal)?
                        .execute([&s.team_id])
                        .map_err(internal)
                    })?;
                }
                Ok(found)
            })
            .await?;
        Ok(found.map(|record| SecretWrite { record, revision }))
    }

    async fn latest_secret(
        &self,
        team: &TeamAccess,
        canonical_name: &str,
    ) -> StoreResult<Option<StoredSecret>> {
        let team_id = team.team_id().to_owned();
        let canonical = canonical_name.to_owned();
        self.readers
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {SECRET_COLUMNS}, s.ciphertext FROM secrets s
                     JOIN teams t ON t.id = s.team_id
                     WHERE s.team_id = ?1 AND s.canonical_name = ?2"
                ))
                .map_err(internal)?
                .query_row(params![team_id, canonical], |r| {
                    Ok(StoredSecret {
                        record: secret_row(r)?,
                        ciphertext: r.get(9)?,
                    })
                })
                .optional()
                .map_err(internal)
            })
            .await
    }

    async fn team_revision(&self, team: &DeliveryAccess) -> StoreResult<i64> {
        let team_id = team.team().team_id().to_owned();
        self.readers
            .read(move |c| {
                c.prepare_cached("SELECT revision FROM teams WHERE id = ?1")
                    .map_err(internal)?
                    .query_row([team_id], |r| r.get(0))
                    .map_err(internal)
            })
            .await
    }

    async fn snapshot(&self, team: &DeliveryAccess) -> StoreResult<Snapshot> {
        let access = team.team().clone();
        self.readers
            .read(move |c| {
                // One read transaction: the revision and the rows are of
                // the same instant.
                let tx = c.unchecked_transaction().map_err(internal)?;
                let revision: i64 = tx
                    .prepare_cached("SELECT revision FROM teams WHERE id = ?1")
                    .map_err(internal)?
                    .query_row([access.team_id()], |r| r.get(0))
                    .map_err(internal)?;
                let mut st = tx
                    .prepare_cached(
                        "SELECT id, name, canonical_name, created_at, updated_at, version, ciphertext
                         FROM secrets WHERE team_id = ?1 ORDER BY canonical_name",
                    )
                    .map_err(internal)?;
                let rows = st
                    .query_map([access.team_id()], |r| {
                        Ok(StoredSecret {
                            record: SecretRecord {
                                id: r.get(0)?,
                                org_id: access.org_id().to_owned(),
                                team_id: access.team_id().to_owned(),
                                team_name: access.team_name().to_owned(),
                                name: r.get(1)?,
                                canonical_name: r.get(2)?,
                                created_at: r.get(3)?,
                                updated_at: r.get(4)?,
                                version: r.get(5)?,
                            },
                            ciphertext: r.get(6)?,
                        })
                    })
                    .map_err(internal)?;
                let secrets = rows.collect::<Result<_, _>>().map_err(internal)?;
                drop(st);
                tx.finish().map_err(internal)?;
                Ok(Snapshot { revision, secrets })
            })
            .await
    }

    async fn team_revisions(&self, team_ids: Vec<String>) -> StoreResult<Vec<(String, i64)>> {
        self.readers
            .read(move |c| {
                let mut st = c
                    .prepare_cached("SELECT id, revision FROM teams WHERE id = ?1")
                    .map_err(internal)?;
                let mut out = Vec::with_capacity(team_ids.len());
                for id in &team_ids {
                    if let Some(row) = st
                        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                        .map_err(internal)?
                    {
                        out.push(row);
                    }
                }
                Ok(out)
            })
            .await
    }
}
