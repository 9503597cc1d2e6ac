//! The PostgreSQL store, for several Tessera nodes sharing one database.
//!
//! Every call is bounded in time: when the database stops answering, requests
//! fail fast with `Unavailable` (HTTP 503) instead of hanging, and the pool
//! reconnects by itself when the database comes back.

mod batch;
mod identity;
mod listener;
mod migrations;

use super::{
    EventSink, KeyListing, NewOrganization, SealFn, SecretWrite, Snapshot, Store, StoreError,
    StoreResult, StoredSecret, TeamDeletion, UserQuery,
};
use crate::domain::access::{AllTeamsAccess, DeliveryAccess, KeyGrant, OrgAccess, TeamAccess};
use crate::domain::secret_name::SecretName;
use crate::domain::time::Micros;
use crate::domain::types::{
    ApiKeyRecord, KekRecord, ListedSecret, Membership, Organization, SecretRecord, Team, TeamRole,
    User,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

/// Longest any one store call may take before it is reported unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Retries of a transaction the database aborted for contention.
const MAX_RETRIES: u32 = 5;

/// A pooled connection idle for longer than this is pinged before it is
/// handed out, so connections the database closed while they sat idle (a
/// restart, a failover) are replaced instead of failing a request. A busy
/// pool reuses connections sooner than this and pays nothing.
const CHECK_IDLE_AFTER: Duration = Duration::from_millis(500);

/// How long a connection coming back to the pool has to show it is usable.
/// One abandoned by [`CALL_TIMEOUT`] on a database that went silent would
/// otherwise hang in the pool's release check forever, holding its slot.
const RELEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The channel on which nodes tell each other about changes (see
/// `listener.rs` for the payloads).
pub(crate) const EVENTS_CHANNEL: &str = "tessera_events";

/// Tells the other nodes, when `tx` commits, that keys, users or teams were
/// deleted.
pub(crate) async fn notify_identity_changed(
    tx: &mut sqlx::PgConnection,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, 'i')")
        .bind(EVENTS_CHANNEL)
        .execute(tx)
        .await
        .map(|_| ())
}

/// Moves a team's revision (and its secret count by `added`) inside `tx`,
/// and tells the other nodes when `tx` commits (PostgreSQL delivers
/// notifications only after the commit). `None` when adding would take the
/// team past `max_secrets`.
async fn bump_revision(
    tx: &mut sqlx::PgConnection,
    team_id: &str,
    added: i64,
    max_secrets: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "WITH t AS (
            UPDATE teams SET revision = revision + 1, secret_count = secret_count + $3
            WHERE id = $1 AND ($3 <= 0 OR secret_count + $3 <= $4)
            RETURNING id, revision
         ), n AS (SELECT pg_notify($2, 'r ' || t.id || ' ' || t.revision) FROM t)
         SELECT revision, (SELECT COUNT(*) FROM n) FROM t",
    )
    .bind(team_id)
    .bind(EVENTS_CHANNEL)
    .bind(added)
    .bind(max_secrets)
    .fetch_optional(tx)
    .await?;
    Ok(row.map(|(revision, _)| revision))
}

pub struct PostgresStore {
    pool: PgPool,
    /// Where the listener for other nodes' changes connects.
    listen_url: String,
    known: KnownVersions,
    batcher: batch::Batcher,
}

/// The last (id, version) this node wrote or saw for a secret, so the next
/// upsert of it can be one conditional `UPDATE` (one round trip, no explicit
/// transaction) instead of a locking transaction. Only a hint: when another
/// node changed the secret meanwhile, the `UPDATE` matches no row and the
/// locking path runs and refreshes the entry.
#[derive(Default)]
struct KnownVersions {
    map: std::sync::Mutex<std::collections::HashMap<(String, String), Known>>,
}

#[derive(Clone)]
struct Known {
    id: String,
    name: String,
    created_at: i64,
    version: i64,
}

/// Entries kept at most; a full map is simply emptied.
const MAX_KNOWN: usize = 200_000;

impl KnownVersions {
    fn get(&self, team_id: &str, canonical: &str) -> Option<Known> {
        let map = self.map.lock().ok()?;
        map.get(&(team_id.to_owned(), canonical.to_owned()))
            .cloned()
    }

    fn put(&self, r: &SecretRecord) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_KNOWN {
                map.clear();
            }
            map.insert(
                (r.team_id.clone(), r.canonical_name.clone()),
                Known {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    created_at: r.created_at,
                    version: r.version,
                },
            );
        }
    }

    fn forget(&self, team_id: &str, canonical: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&(team_id.to_owned(), canonical.to_owned()));
        }
    }

    fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}

/// Pool size: `TESSERA_PG_MAX_CONNECTIONS`, default 32 per node.
fn max_connections() -> u32 {
    std::env::var("TESSERA_PG_MAX_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(32)
}

/// The one place PostgreSQL errors are classified. Client-visible messages
/// are ours; the database's text goes only into log-only variants.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                "23505" => return StoreError::Conflict(super::CONFLICT.into()),
                // A referenced row (team, user) was deleted meanwhile,
                // possibly by another node.
                "23503" => return StoreError::NotFound(super::GONE.into()),
                "53100" => return StoreError::StorageFull(db.message().to_owned()),
                _ => {}
            }
            // Connection exceptions, shutdown, statement timeout, missing
            // database, too many connections: transient. So are a lock wait
            // cut short by `lock_timeout`, a deadlock victim and a
            // serialization failure (what CockroachDB and YugabyteDB answer
            // to contention): the transaction was rolled back and a retry
            // may succeed.
            if code.starts_with("08")
                || code.starts_with("57")
                || code == "3D000"
                || code == "53300"
                || code == "55P03"
                || code == "40001"
                || code == "40P01"
            {
                return StoreError::Unavailable(db.message().to_owned());
            }
            StoreError::Internal(db.message().to_owned())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

pub(crate) async fn bounded<T>(
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> StoreResult<T> {
    metrics::counter!("tessera_store_calls_total", "backend" => "postgres").increment(1);
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(StoreError::Unavailable(
            "the database did not answer in time".into(),
        )),
    }
}

impl PostgresStore {
    /// The fast path of an upsert: a conditional update, applied only if the
    /// secret still has the id and version this node last saw, and sent
    /// together with concurrent ones in one statement (see `batch.rs`).
    /// `None` when it did not apply (changed, deleted or re-created elsewhere).
    async fn update_known(
        &self,
        team: &TeamAccess,
        name: &SecretName,
        known: &Known,
        now: Micros,
        seal: &SealFn,
    ) -> Option<SecretWrite> {
        let version = known.version + 1;
        let ciphertext = seal(&known.id, version);
        let applied = self
            .batcher
            .update(batch::FastUpdate {
                team_id: team.team_id().to_owned(),
                canonical_name: name.canonical().to_owned(),
                id: known.id.clone(),
                old_version: known.version,
                updated_at: now,
                kek_id: crate::crypto::envelope::kek_id_of(&ciphertext),
                ciphertext,
            })
            .await;
        applied.map(|revision| SecretWrite {
            record: SecretRecord {
                id: known.id.clone(),
                org_id: team.org_id().to_owned(),
                team_id: team.team_id().to_owned(),
                team_name: team.team_name().to_owned(),
                name: known.name.clone(),
                canonical_name: name.canonical().to_owned(),
                created_at: known.created_at,
                updated_at: now,
                version,
            },
            revision,
        })
    }

    /// One attempt at an upsert, in one transaction that locks the row.
    async fn upsert_once(
        &self,
        team: &TeamAccess,
        name: &SecretName,
        new_id: &str,
        now: Micros,
        seal: &SealFn,
        max_secrets: i64,
    ) -> Result<StoreResult<SecretWrite>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // An existing secret is locked and updated in place. Going through
        // INSERT … ON CONFLICT for it too would let concurrent upserts of one
        // name deadlock on the speculative inserts into the table's two
        // unique indexes (seen under the 50-writer race test).
        let existing = sqlx::query(
            "SELECT id, name, created_at, version FROM secrets
             WHERE team_id = $1 AND canonical_name = $2 FOR UPDATE",
        )
        .bind(team.team_id())
        .bind(name.canonical())
        .fetch_optional(&mut *tx)
        .await?;
        let (id, stored_name, created_at, version, inserted) = match existing {
            Some(row) => (
                row.try_get::<String, _>("id")?,
                row.try_get::<String, _>("name")?,
                row.try_get::<i64, _>("created_at")?,
                row.try_get::<i64, _>("version")? + 1,
                false,
            ),
            None => {
                // ON CONFLICT covers a creation racing this one: then the
                // row lock is taken here and the version bumped.
                let row = sqlx::query(
                    "INSERT INTO secrets (id, org_id, team_id, canonical_name, name, created_at, updated_at, version, kek_id, ciphertext)
                     VALUES ($1, $2, $3, $4, $5, $6, $6, 1, '', '\\x'::bytea)
                     ON CONFLICT (team_id, canonical_name)
                     DO UPDATE SET version = secrets.version + 1
                     RETURNING id, name, created_at, version, (xmax = 0) AS inserted",
                )
                .bind(new_id)
                .bind(team.org_id())
                .bind(team.team_id())
                .bind(name.canonical())
                .bind(name.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                (
                    row.try_get("id")?,
                    row.try_get("name")?,
                    row.try_get("created_at")?,
                    row.try_get("version")?,
                    row.try_get("inserted")?,
                )
            }
        };
        let ciphertext = seal(&id, version);
        let kek_id = crate::crypto::envelope::kek_id_of(&ciphertext);
        // Same transaction, same locked row: bind the value to the id and
        // version just decided.
        sqlx::query(
            "UPDATE secrets SET version = $3, updated_at = $4, kek_id = $5, ciphertext = $6
             WHERE team_id = $1 AND canonical_name = $2",
        )
        .bind(team.team_id())
        .bind(name.canonical())
        .bind(version)
        .bind(now)
        .bind(kek_id)
        .bind(ciphertext)
        .execute(&mut *tx)
        .await?;
        // Last, so the team's row is locked only for the commit. A new secret
        // counts against the team's quota; over it, nothing is committed.
        let Some(revision) =
            bump_revision(&mut tx, team.team_id(), i64::from(inserted), max_secrets).await?
        else {
            return Ok(Err(StoreError::QuotaExceeded {
                quota: "secrets per team",
                limit: max_secrets,
            }));
        };
        tx.commit().await?;
        Ok(Ok(SecretWrite {
            record: SecretRecord {
                id,
                org_id: team.org_id().to_owned(),
                team_id: team.team_id().to_owned(),
                team_name: team.team_name().to_owned(),
                name: stored_name,
                canonical_name: name.canonical().to_owned(),
                created_at,
                updated_at: now,
                version,
            },
            revision,
        }))
    }

    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut opts = PgConnectOptions::from_str(url)?.application_name("tessera");
        // TLS only when the URL asks for it (`sslmode=require`, `verify-ca`,
        // `verify-full`). The libpq default, `prefer`, would try a TLS
        // handshake first on every connection; measured here, that kept a
        // node from recovering after its database went silent and came back.
        if !url.contains("sslmode=") {
            opts = opts.ssl_mode(sqlx::postgres::PgSslMode::Disable);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections())
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(60))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    // Bounded by the acquire timeout; an error discards the
                    // connection and the pool opens a fresh one.
                    if meta.idle_for >= CHECK_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_release(|conn, _| {
                Box::pin(async move {
                    match tokio::time::timeout(RELEASE_CHECK_TIMEOUT, conn.ping()).await {
                        Ok(result) => result.map(|()| true),
                        Err(_) => {
                            tracing::warn!("a database connection stopped answering; closing it");
                            // An error makes the pool drop it without a goodbye.
                            Err(sqlx::Error::PoolTimedOut)
                        }
                    }
                })
            })
            .connect_with(opts)
            .await?;
        let listen_url = if url.contains("sslmode=") {
            url.to_owned()
        } else {
            format!(
                "{url}{}sslmode=disable",
                if url.contains('?') { '&' } else { '?' }
            )
        };
        let store = Self {
            batcher: batch::Batcher::start(pool.clone()),
            pool,
            listen_url,
            known: KnownVersions::default(),
        };
        // Nodes starting together may race on the first migration; the loser
        // fails on a catalog uniqueness check and simply tries again.
        let mut attempt = 0;
        loop {
            match store.migrate().await {
                Ok(()) => return Ok(store),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "migration attempt failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        // Look first: `CREATE TABLE IF NOT EXISTS` on an existing table makes
        // PostgreSQL send a NOTICE ("already exists, skipping") that sqlx logs
        // at info on every start. The statement stays for nodes that race on
        // a new database.
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                            WHERE table_schema = current_schema() AND table_name = 'schema_migrations')",
        )
        .fetch_one(&mut *conn)
        .await?;
        if !exists {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
        }
        for (version, sql) in migrations::MIGRATIONS {
            let mut tx = conn.begin().await?;
            let done: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
            )
            .bind(version)
            .fetch_one(&mut *tx)
            .await?;
            if !done {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                // A concurrent node applying the same step loses on this
                // primary key and rolls back; it then sees the step as done.
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(crate::domain::time::now_micros())
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(version, "applied PostgreSQL migration");
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

pub(crate) const SECRET_COLUMNS: &str =
    "s.id, s.org_id, s.team_id, t.name AS team_name, s.name, s.canonical_name, s.created_at, s.updated_at, s.version";

pub(crate) fn secret_row(r: &PgRow) -> Result<SecretRecord, sqlx::Error> {
    Ok(SecretRecord {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        team_id: r.try_get("team_id")?,
        team_name: r.try_get("team_name")?,
        name: r.try_get("name")?,
        canonical_name: r.try_get("canonical_name")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

pub(crate) const TEAM_COLUMNS: &str = "id, org_id, name, is_default, created_at";

fn listed_row(r: &PgRow) -> Result<ListedSecret, sqlx::Error> {
    Ok(ListedSecret {
        team_id: r.try_get("team_id")?,
        team_name: r.try_get("team_name")?,
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        canonical_name: r.try_get("canonical_name")?,
        created_at: r.try_get("created_at")?,
        version: r.try_get("version")?,
    })
}

pub(crate) fn team_row(r: &PgRow) -> Result<Team, sqlx::Error> {
    Ok(Team {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        name: r.try_get("name")?,
        is_default: r.try_get("is_default")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, org_id, email, name, role, created_at";

pub(crate) fn decode_enum<T: FromStr>(col: &str, value: String) -> Result<T, sqlx::Error> {
    value.parse().map_err(|_| sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: format!("unknown enum value {value:?}").into(),
    })
}

pub(crate) fn user_row(r: &PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        role: decode_enum("role", r.try_get("role")?)?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) const KEY_COLUMNS: &str =
    "prefix, org_id, key_type, name, secret_hash, user_id, team_id, model_ids, created_by, created_at, last_used_at, secret_names";

fn json_list(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|s| serde_json::from_str(&s).ok())
}

fn to_json_list(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|m| serde_json::to_string(m).unwrap_or_default())
}

pub(crate) fn key_row(r: &PgRow) -> Result<ApiKeyRecord, sqlx::Error> {
    Ok(ApiKeyRecord {
        prefix: r.try_get("prefix")?,
        org_id: r.try_get("org_id")?,
        key_type: decode_enum("key_type", r.try_get("key_type")?)?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        user_id: r.try_get("user_id")?,
        team_id: r.try_get("team_id")?,
        model_ids: json_list(r.try_get("model_ids")?),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        secret_names: json_list(r.try_get("secret_names")?),
    })
}

pub(crate) async fn insert_key(
    conn: &mut sqlx::PgConnection,
    k: &ApiKeyRecord,
    name_scope: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO api_keys ({KEY_COLUMNS}, name_scope) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&k.prefix)
    .bind(&k.org_id)
    .bind(k.key_type.as_str())
    .bind(&k.name)
    .bind(&k.secret_hash)
    .bind(&k.user_id)
    .bind(&k.team_id)
    .bind(to_json_list(&k.model_ids))
    .bind(&k.created_by)
    .bind(k.created_at)
    .bind(k.last_used_at)
    .bind(to_json_list(&k.secret_names))
    .bind(name_scope)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        bounded(sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map(|_| ())
    }

    async fn keks(&self) -> StoreResult<Vec<KekRecord>> {
        let rows = bounded(
            sqlx::query("SELECT kek_id, check_value, created_at FROM keks ORDER BY created_at")
                .fetch_all(&self.pool),
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KekRecord {
                    kek_id: r.try_get("kek_id")?,
                    check_value: r.try_get("check_value")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn record_first_kek(&self, kek: KekRecord) -> StoreResult<()> {
        // Nodes starting together on a new database all try to record their
        // master key; the unique slot lets exactly one row stand.
        bounded(
            sqlx::query(
                "INSERT INTO keks (kek_id, check_value, created_at, primary_slot) VALUES ($1, $2, $3, 1)
                 ON CONFLICT DO NOTHING",
            )
            .bind(kek.kek_id)
            .bind(kek.check_value)
            .bind(kek.created_at)
            .execute(&self.pool),
        )
        .await
        .map(|_| ())
    }

    async fn wrapped_key(&self, purpose: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        bounded(
            sqlx::query_as("SELECT kek_id, wrapped FROM wrapped_keys WHERE purpose = $1")
                .bind(purpose)
                .fetch_optional(&self.pool),
        )
        .await
    }

    async fn insert_wrapped_key(
        &self,
        purpose: &str,
        kek_id: &str,
        wrapped: Vec<u8>,
        now: Micros,
    ) -> StoreResult<()> {
        bounded(
            sqlx::query(
                "INSERT INTO wrapped_keys (purpose, kek_id, wrapped, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(purpose)
            .bind(kek_id)
            .bind(wrapped)
            .bind(now)
            .execute(&self.pool),
        )
        .await
        .map(|_| ())
    }

    async fn organization_count(&self) -> StoreResult<i64> {
        bounded(sqlx::query_scalar("SELECT COUNT(*) FROM organizations").fetch_one(&self.pool))
            .await
    }

    async fn create_organization(&self, new: NewOrganization) -> StoreResult<()> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE name = $1)")
                    .bind(&new.org.name)
                    .fetch_one(&mut *tx)
                    .await?;
            if exists {
                return Ok(Err(StoreError::Conflict(format!(
                    "an organization named {:?} already exists",
                    new.org.name
                ))));
            }
            sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&new.org.id)
                .bind(&new.org.name)
                .bind(new.org.created_at)
                .execute(&mut *tx)
                .await?;
            let t = &new.default_team;
            identity::insert_team(&mut tx, t).await?;
            let u = &new.admin;
            identity::insert_user(&mut tx, u).await?;
            sqlx::query(
                "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'ADMIN')",
            )
            .bind(&t.id)
            .bind(&u.id)
            .execute(&mut *tx)
            .await?;
            insert_key(&mut tx, &new.admin_key, &format!("user:{}", u.id)).await?;
            tx.commit().await?;
            Ok(Ok(()))
        })
        .await
        .map_err(|e| match e {
            // Another node created the same organization at the same moment.
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "an organization named {:?} already exists",
                new.org.name
            )),
            other => other,
        })?
    }

    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = bounded(
            sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1"
            ))
            .bind(prefix)
            .fetch_optional(&self.pool),
        )
        .await?;
        row.as_ref().map(key_row).transpose().map_err(map_err)
    }

    async fn find_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let row = bounded(
            sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(user_id)
                .fetch_optional(&self.pool),
        )
        .await?;
        row.as_ref().map(user_row).transpose().map_err(map_err)
    }

    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        let rows = bounded(
            sqlx::query("SELECT team_id, role FROM team_members WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool),
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Membership {
                    team_id: r.try_get("team_id")?,
                    role: decode_enum("role", r.try_get("role")?)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn find_team(&self, team_id: &str) -> StoreResult<Option<Team>> {
        let row = bounded(
            sqlx::query(&format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1"))
                .bind(team_id)
                .fetch_optional(&self.pool),
        )
        .await?;
        row.as_ref().map(team_row).transpose().map_err(map_err)
    }

    async fn default_team(&self, org_id: &str) -> StoreResult<Team> {
        let row = bounded(
            sqlx::query(&format!(
                "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 AND is_default"
            ))
            .bind(org_id)
            .fetch_one(&self.pool),
        )
        .await?;
        team_row(&row).map_err(map_err)
    }

    async fn organization(&self, org: &OrgAccess) -> StoreResult<Organization> {
        let row = bounded(
            sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
                .bind(org.org_id())
                .fetch_one(&self.pool),
        )
        .await?;
        (|| {
            Ok(Organization {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
            })
        })()
        .map_err(map_err)
    }

    async fn list_teams(&self, org: &OrgAccess) -> StoreResult<Vec<Team>> {
        let rows = bounded(
            sqlx::query(&format!(
                "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 ORDER BY is_default DESC, name"
            ))
            .bind(org.org_id())
            .fetch_all(&self.pool),
        )
        .await?;
        rows.iter()
            .map(team_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn create_team(&self, org: &OrgAccess, team: Team, max_teams: i64) -> StoreResult<()> {
        debug_assert_eq!(org.org_id(), team.org_id);
        identity::create_team(&self.pool, &team, max_teams).await
    }

    async fn rename_team(&self, team: &TeamAccess, name: &str) -> StoreResult<()> {
        identity::rename_team(&self.pool, team.team_id(), name).await
    }

    async fn delete_team(&self, team: &TeamAccess, cascade: bool) -> StoreResult<TeamDeletion> {
        self.known.clear();
        identity::delete_team(&self.pool, team.team_id(), cascade).await
    }

    async fn list_users(&self, org: &OrgAccess, query: UserQuery) -> StoreResult<Vec<User>> {
        identity::list_users(&self.pool, org.org_id(), &query).await
    }

    async fn create_user(
        &self,
        org: &OrgAccess,
        user: User,
        default_team_id: &str,
        max_users: i64,
    ) -> StoreResult<()> {
        debug_assert_eq!(org.org_id(), user.org_id);
        identity::create_user(&self.pool, &user, default_team_id, max_users).await
    }

    async fn delete_user(&self, org: &OrgAccess, user_id: &str) -> StoreResult<bool> {
        identity::delete_user(&self.pool, org.org_id(), user_id).await
    }

    async fn list_members(&self, team: &TeamAccess) -> StoreResult<Vec<(User, TeamRole)>> {
        identity::list_members(&self.pool, team.team_id()).await
    }

    async fn set_member(
        &self,
        team: &TeamAccess,
        user_id: &str,
        role: TeamRole,
    ) -> StoreResult<()> {
        identity::set_member(&self.pool, team.team_id(), user_id, role).await
    }

    async fn remove_member(&self, team: &TeamAccess, user_id: &str) -> StoreResult<bool> {
        identity::remove_member(&self.pool, team.team_id(), user_id).await
    }

    async fn insert_api_key(
        &self,
        grant: &KeyGrant,
        key: ApiKeyRecord,
        max_keys: i64,
    ) -> StoreResult<()> {
        debug_assert_eq!(grant.org_id(), key.org_id);
        identity::insert_api_key(&self.pool, &key, grant.name_scope(), max_keys).await
    }

    async fn list_api_keys(&self, org: &OrgAccess) -> StoreResult<Vec<KeyListing>> {
        identity::list_keys(&self.pool, org.org_id()).await
    }

    async fn delete_api_key(&self, grant: &KeyGrant, prefix: &str) -> StoreResult<bool> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let deleted = sqlx::query("DELETE FROM api_keys WHERE org_id = $1 AND prefix = $2")
                .bind(grant.org_id())
                .bind(prefix)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if deleted {
                // Other nodes end this key's long polls at once.
                notify_identity_changed(&mut tx).await?;
            }
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }

    async fn touch_api_keys(&self, uses: Vec<(String, Micros)>) -> StoreResult<()> {
        let (prefixes, times): (Vec<String>, Vec<i64>) = uses.into_iter().unzip();
        bounded(
            sqlx::query(
                "UPDATE api_keys AS k SET last_used_at = GREATEST(COALESCE(k.last_used_at, 0), u.at)
                 FROM (SELECT unnest($1::text[]) AS prefix, unnest($2::bigint[]) AS at) AS u
                 WHERE k.prefix = u.prefix",
            )
            .bind(prefixes)
            .bind(times)
            .execute(&self.pool),
        )
        .await
        .map(|_| ())
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
        let write = bounded(async {
            if let Some(known) = self.known.get(team.team_id(), name.canonical()) {
                if let Some(r) = self.update_known(team, name, &known, now, &seal).await {
                    return Ok(Ok(r));
                }
            }
            // Distributed engines (CockroachDB, YugabyteDB) answer contention
            // with serialization failures; the whole transaction is retried,
            // sealing again for the id and version of that attempt.
            let mut attempt = 0;
            loop {
                match self
                    .upsert_once(team, name, &new_id, now, &seal, max_secrets)
                    .await
                {
                    Err(sqlx::Error::Database(db))
                        if attempt < MAX_RETRIES
                            && matches!(db.code().as_deref(), Some("40001" | "40P01")) =>
                    {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|e| match e {
            // The team was deleted meanwhile (its foreign key).
            StoreError::NotFound(_) => StoreError::NotFound("team not found".into()),
            other => other,
        })??;
        self.known.put(&write.record);
        Ok(write)
    }

    async fn team_secrets_page(
        &self,
        team: &TeamAccess,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>> {
        let rows = bounded(
            sqlx::query(
                "SELECT team_id, '' AS team_name, id, name, canonical_name, created_at, version FROM secrets
                 WHERE team_id = $1 AND canonical_name > $2
                 ORDER BY canonical_name LIMIT $3",
            )
            .bind(team.team_id())
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.pool),
        )
        .await?;
        rows.iter()
            .map(|r| {
                listed_row(r).map(|mut s| {
                    s.team_name = team.team_name().to_owned();
                    s
                })
            })
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn org_secrets_page(
        &self,
        org: &AllTeamsAccess,
        after: (&str, &str),
        limit: usize,
    ) -> StoreResult<Vec<ListedSecret>> {
        let rows = bounded(
            sqlx::query(
                "SELECT s.team_id, t.name AS team_name, s.id, s.name, s.canonical_name, s.created_at, s.version
                 FROM secrets s JOIN teams t ON t.id = s.team_id
                 WHERE s.org_id = $1 AND (s.team_id, s.canonical_name) > ($2, $3)
                 ORDER BY s.team_id, s.canonical_name LIMIT $4",
            )
            .bind(org.org_id())
            .bind(after.0)
            .bind(after.1)
            .bind(limit as i64)
            .fetch_all(&self.pool),
        )
        .await?;
        rows.iter()
            .map(listed_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn teams_with_secrets(&self, org: &OrgAccess) -> StoreResult<Vec<Team>> {
        let rows = bounded(
            sqlx::query(&format!(
                "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 AND secret_count > 0 ORDER BY id"
            ))
            .bind(org.org_id())
            .fetch_all(&self.pool),
        )
        .await?;
        rows.iter()
            .map(team_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn delete_secret(
        &self,
        team: &TeamAccess,
        canonical_name: &str,
    ) -> StoreResult<Option<SecretWrite>> {
        self.known.forget(team.team_id(), canonical_name);
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(&format!(
                "SELECT {SECRET_COLUMNS} FROM secrets s JOIN teams t ON t.id = s.team_id
                 WHERE s.team_id = $1 AND s.canonical_name = $2 FOR UPDATE OF s"
            ))
            .bind(team.team_id())
            .bind(canonical_name)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let record = secret_row(&row)?;
            sqlx::query("DELETE FROM secrets WHERE id = $1")
                .bind(&record.id)
                .execute(&mut *tx)
                .await?;
            let revision = bump_revision(&mut tx, team.team_id(), -1, 0)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            tx.commit().await?;
            Ok(Some(SecretWrite { record, revision }))
        })
        .await
    }

    async fn latest_secret(
        &self,
        team: &TeamAccess,
        canonical_name: &str,
    ) -> StoreResult<Option<StoredSecret>> {
        let row = bounded(
            sqlx::query(&format!(
                "SELECT {SECRET_COLUMNS}, s.ciphertext FROM secrets s
                 JOIN teams t ON t.id = s.team_id
                 WHERE s.team_id = $1 AND s.canonical_name = $2"
            ))
            .bind(team.team_id())
            .bind(canonical_name)
            .fetch_optional(&self.pool),
        )
        .await?;
        row.map(|r| {
            Ok(StoredSecret {
                record: secret_row(&r)?,
                ciphertext: r.try_get("ciphertext")?,
            })
        })
        .transpose()
        .map_err(map_err)
    }

    async fn team_revision(&self, team: &DeliveryAccess) -> StoreResult<i64> {
        bounded(
            sqlx::query_scalar("SELECT revision FROM teams WHERE id = $1")
                .bind(team.team().team_id())
                .fetch_one(&self.pool),
        )
        .await
    }

    async fn snapshot(&self, team: &DeliveryAccess) -> StoreResult<Snapshot> {
        let access = team.team();
        // One statement, one snapshot: the revision and the rows agree.
        let rows = bounded(
            sqlx::query(
                "SELECT t.revision, s.id, s.name, s.canonical_name, s.created_at, s.updated_at,
                        s.version, s.ciphertext
                 FROM teams t LEFT JOIN secrets s ON s.team_id = t.id
                 WHERE t.id = $1 ORDER BY s.canonical_name",
            )
            .bind(access.team_id())
            .fetch_all(&self.pool),
        )
        .await?;
        let mut revision = 0;
        let mut secrets = Vec::with_capacity(rows.len());
        for r in &rows {
            revision = r.try_get("revision").map_err(map_err)?;
            let Some(id) = r.try_get::<Option<String>, _>("id").map_err(map_err)? else {
                continue;
            };
            secrets.push(
                (|| {
                    Ok(StoredSecret {
                        record: SecretRecord {
                            id,
                            org_id: access.org_id().to_owned(),
                            team_id: access.team_id().to_owned(),
                            team_name: access.team_name().to_owned(),
                            name: r.try_get("name")?,
                            canonical_name: r.try_get("canonical_name")?,
                            created_at: r.try_get("created_at")?,
                            updated_at: r.try_get("updated_at")?,
                            version: r.try_get("version")?,
                        },
                        ciphertext: r.try_get("ciphertext")?,
                    })
                })()
                .map_err(map_err)?,
            );
        }
        if rows.is_empty() {
            return Err(StoreError::NotFound("team not found".into()));
        }
        Ok(Snapshot { revision, secrets })
    }

    async fn team_revisions(&self, team_ids: Vec<String>) -> StoreResult<Vec<(String, i64)>> {
        bounded(
            sqlx::query_as("SELECT id, revision FROM teams WHERE id = ANY($1)")
                .bind(team_ids)
                .fetch_all(&self.pool),
        )
        .await
    }

    fn listen(&self, sink: EventSink) {
        listener::spawn(self.listen_url.clone(), sink);
    }
}
