//! The PostgreSQL store, for several Tessera nodes sharing one database.
//! Each aggregate's statements live in a file of their own.
//!
//! Every call is bounded in time ([`bounded`], which the one-statement
//! helpers `all`, `one`, `optional` and `execute` use): when the database
//! stops answering, requests fail fast with `Unavailable` (HTTP 503) instead
//! of hanging, and the pool reconnects by itself when the database comes back.

mod audit;
mod batch;
mod delivery_pages;
mod error;
mod held;
mod history;
mod identity;
mod keyring;
mod keys;
mod listener;
mod migrations;
mod revisions;
mod secrets;

use super::{EventSink, Store, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Connection;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

/// Longest any one store call may take before it is reported unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

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
async fn notify_identity_changed(tx: &mut sqlx::PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, 'i')")
        .bind(EVENTS_CHANNEL)
        .execute(tx)
        .await?;
    Ok(())
}

pub struct PostgresStore {
    pool: PgPool,
    /// Where the listener for other nodes' changes connects.
    listen_url: String,
    batcher: batch::Batcher,
    /// This node's audit chains, and the task that appends events of
    /// their own (runtime reads) in batches.
    audit: std::sync::Arc<audit::AuditChains>,
    appender: crate::event_batcher::EventBatcher,
    revisions: revisions::RevisionReader,
    /// The connection large page reads go through (see [`Self::all_sized`]).
    bulk: tokio::sync::Mutex<held::HeldConnection>,
}

/// Runs a store call within [`CALL_TIMEOUT`].
async fn bounded<T>(fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    metrics::counter!("tessera_store_calls_total", "backend" => "postgres").increment(1);
    within_call_timeout(fut).await
}

/// Waits at most [`CALL_TIMEOUT`] for `fut`. Callers of the queued tasks
/// (revision reads, batched updates) wait through this too: a statement
/// stuck on a silent database would otherwise hold every read queued behind
/// it for its own timeout and then theirs.
async fn within_call_timeout<T>(fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::unavailable(
            "the database did not answer in time",
        )),
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
type Decoded<T> = Result<T, sqlx::Error>;

/// A request to one of the store's own tasks, with where its answer goes.
type Asked<Q, A> = (Q, tokio::sync::oneshot::Sender<StoreResult<A>>);

/// Hands `request` to the task behind `queue` (the revision reader, the
/// update batcher) and waits for its answer, within [`CALL_TIMEOUT`].
async fn ask<Q, A>(
    queue: &tokio::sync::mpsc::Sender<Asked<Q, A>>,
    request: Q,
    task: &str,
) -> StoreResult<A> {
    within_call_timeout(async {
        let (done, answer) = tokio::sync::oneshot::channel();
        queue
            .send((request, done))
            .await
            .map_err(|_| StoreError::unavailable(format!("the {task} has stopped")))?;
        answer
            .await
            .map_err(|_| StoreError::internal(format!("the {task} dropped a request")))?
    })
    .await
}

/// Store calls of one statement, each within [`CALL_TIMEOUT`].
impl PostgresStore {
    /// Every row `query` returns, each read by `f`.
    async fn all<T>(
        &self,
        query: Query<'_>,
        f: impl FnMut(&PgRow) -> Decoded<T>,
    ) -> StoreResult<Vec<T>> {
        bounded(async {
            Ok(query
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(f)
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Like [`Self::all`] for a read of up to `rows` rows: a large one (a
    /// later page of a big listing; the service reads one at a time per
    /// node) goes through the one connection kept for them, which pays no
    /// release pings.
    async fn all_sized<T>(
        &self,
        rows: usize,
        query: Query<'_>,
        f: impl FnMut(&PgRow) -> Decoded<T>,
    ) -> StoreResult<Vec<T>> {
        if rows <= super::INLINE_ROWS {
            return self.all(query, f).await;
        }
        bounded(async {
            let mut held = self.bulk.lock().await;
            let rows = query.fetch_all(held.get().await?).await;
            held.done(rows.is_ok());
            Ok(rows?.iter().map(f).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The one row `query` returns, read by `f`; an error when there is none.
    async fn one<T>(
        &self,
        query: Query<'_>,
        f: impl FnOnce(&PgRow) -> Decoded<T>,
    ) -> StoreResult<T> {
        bounded(async { Ok(f(&query.fetch_one(&self.pool).await?)?) }).await
    }

    /// The row `query` returns, if any, read by `f`.
    async fn optional<T>(
        &self,
        query: Query<'_>,
        f: impl FnOnce(&PgRow) -> Decoded<T>,
    ) -> StoreResult<Option<T>> {
        bounded(async {
            Ok(query
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(f)
                .transpose()?)
        })
        .await
    }

    /// How many rows `query` changed.
    async fn execute(&self, query: Query<'_>) -> StoreResult<u64> {
        bounded(async { Ok(query.execute(&self.pool).await?.rows_affected()) }).await
    }
}

/// The connection options a URL names.
fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let mut opts = PgConnectOptions::from_str(url)?.application_name("tessera");
    // TLS only when the URL asks for it (`sslmode=require`, `verify-ca`,
    // `verify-full`). The libpq default, `prefer`, would try a TLS
    // handshake first on every connection; measured here, that kept a
    // node from recovering after its database went silent and came back.
    if !url.contains("sslmode=") {
        opts = opts.ssl_mode(sqlx::postgres::PgSslMode::Disable);
    }
    Ok(opts)
}

/// Reads what start-up checks, on one connection of its own, without
/// creating or migrating anything; `None` when the schema has no tables yet.
pub async fn peek(url: &str) -> anyhow::Result<Option<super::Peek>> {
    let opts = connect_options(url)?;
    let mut conn =
        within_call_timeout(async { Ok(sqlx::PgConnection::connect_with(&opts).await?) }).await?;
    let found: bool = sqlx::query_scalar(
        "SELECT to_regclass('keks') IS NOT NULL AND to_regclass('organizations') IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await?;
    if !found {
        return Ok(None);
    }
    let keks = sqlx::query_as::<_, (String, Vec<u8>)>(
        "SELECT kek_id, check_value FROM keks ORDER BY created_at",
    )
    .fetch_all(&mut conn)
    .await?;
    let organizations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(Some(super::Peek {
        keks,
        organizations,
    }))
}

impl PostgresStore {
    /// Connects with a pool of at most `max_connections` (the
    /// `--pg-max-connections` setting).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let opts = connect_options(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
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
        let audit = std::sync::Arc::new(audit::AuditChains::new());
        let store = Self {
            batcher: batch::Batcher::start(pool.clone(), audit.clone()),
            appender: audit::appender(pool.clone(), audit.clone()),
            audit,
            revisions: revisions::RevisionReader::start(pool.clone()),
            bulk: tokio::sync::Mutex::new(held::HeldConnection::new(pool.clone())),
            pool,
            listen_url,
        };
        // Nodes starting together may race on the first migration; the loser
        // fails on a catalog uniqueness check and simply tries again.
        let mut attempt = 0;
        loop {
            match migrations::run(&store.pool).await {
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
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn ping(&self) -> StoreResult<()> {
        bounded(async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    fn listen(&self, sink: EventSink) {
        listener::spawn(self.listen_url.clone(), sink);
    }
}
