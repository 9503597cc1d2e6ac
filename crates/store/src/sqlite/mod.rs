//! The embedded SQLite store: one writer thread with group commit (see
//! `writer.rs`), a pool of readers that never wait for it, and a
//! checkpointer. Each aggregate's statements live in a file of their own.

mod audit;
mod checkpointer;
mod delivery_pages;
mod error;
mod history;
mod identity;
mod keyring;
mod keys;
mod migrations;
mod readers;
mod secrets;
mod writer;

use super::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use readers::Readers;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
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
    /// Appends read events in batches, through the writer.
    reads: super::event_batcher::EventBatcher,
    /// The audit chain key, shared with the writer thread.
    audit: Arc<super::audit::AuditKey>,
    readers: Arc<Readers>,
    /// Whether writes fail; then readiness probes with a write.
    health: Arc<writer::Health>,
    /// The directory holding the database (for its free space).
    dir: PathBuf,
    _checkpointer: checkpointer::Checkpointer,
}

/// Refuses to add one more of something when `count_sql` (one `?1`
/// parameter) already counts `limit`. Race-free: only the writer writes.
fn within_quota(
    c: &Connection,
    count_sql: &str,
    param: &str,
    quota: &'static str,
    limit: i64,
) -> StoreResult<()> {
    let n = c
        .prepare_cached(count_sql)?
        .query_row([param], |r| r.get(0))?;
    super::identity::check_quota(n, quota, limit)
}

/// Settings of every connection. `secure_delete` makes SQLite overwrite
/// deleted content with zeros (freed cells inside a page and whole freed
/// pages), so a replaced or deleted ciphertext does not linger in free space
/// of the database file; see `checkpointer.rs` for the WAL. Every connection
/// opens at `synchronous = FULL`, so the migrations and the start-up write
/// probe, which commit on the writer's connection before the writer starts,
/// are synced at their commit; [`Writer::start`] then switches that
/// connection to `NORMAL` and its syncer fsyncs the WAL before answering
/// anyone (see `writer.rs`). The readers never write, and the checkpointer
/// only checkpoints, which WAL mode syncs at `NORMAL` as at `FULL`.
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
        tessera_core::datadir::create_private_file(db)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        tessera_core::datadir::restrict_file(&with_suffix(db, suffix))?;
    }
    Ok(())
}

/// Reads what start-up checks from the database at `path` without changing
/// any file: read-only, and `immutable` when there is no `-wal` file (then
/// the database file holds everything, and SQLite creates no `-shm` or
/// `-wal` for the read); `None` when there is no database yet.
pub fn peek(path: &Path) -> anyhow::Result<Option<super::Peek>> {
    use rusqlite::OpenFlags;
    if !path.exists() {
        return Ok(None);
    }
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    if !with_suffix(path, "-wal").exists() {
        uri.push_str("&immutable=1");
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&uri, flags)?;
    let tables: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('keks', 'organizations')",
        [],
        |r| r.get(0),
    )?;
    if tables < 2 {
        return Ok(None);
    }
    let keks = conn
        .prepare("SELECT kek_id, check_value FROM keks ORDER BY created_at")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let organizations = conn.query_row("SELECT COUNT(*) FROM organizations", [], |r| r.get(0))?;
    Ok(Some(super::Peek {
        keks,
        organizations,
    }))
}

/// The database's `-wal` or `-shm` file.
fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// A real page write that changes nothing: one row of `schema_migrations`
/// rewritten unchanged.
const PROBE_WRITE: &str = "UPDATE schema_migrations SET applied_at = applied_at
     WHERE version = (SELECT MAX(version) FROM schema_migrations)";

/// Proves at start that the store can be written: a read-only directory,
/// file or file system is refused here, with the cause, instead of starting
/// a server whose every write fails. Commits [`PROBE_WRITE`] (synced), then
/// checkpoints it into the database file.
fn probe_writable(conn: &Connection) -> anyhow::Result<()> {
    conn.execute(PROBE_WRITE, [])
        .map_err(|e| anyhow::anyhow!("writing to the database failed: {e}"))?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(|e| anyhow::anyhow!("writing to the database file failed: {e}"))?;
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            tessera_core::datadir::create_private_dir(&dir)?;
        }
        let connect = || -> anyhow::Result<Connection> {
            let conn = Connection::open(path)?;
            configure(&conn)?;
            Ok(conn)
        };
        let open_writer = || -> anyhow::Result<Connection> {
            make_files_private(path)?;
            let mut conn = connect()?;
            migrations::run(&mut conn)?;
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
        let wal = std::fs::File::open(with_suffix(path, "-wal"))
            .map_err(|e| anyhow::anyhow!("opening the SQLite WAL file: {e}"))?;
        let checkpoint_conn = connect()?;
        let read_only = || -> anyhow::Result<Connection> {
            let c = connect()?;
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
        let audit = Arc::new(super::audit::AuditKey::default());
        let writer = Writer::start(write_conn, wal, health.clone(), audit.clone())?;
        let appender = writer.clone();
        // One task: the one writer commits one batch at a time anyway.
        let reads = super::event_batcher::EventBatcher::start(1, move |events| {
            let writer = appender.clone();
            async move { writer.append_audit(events).await }
        });
        Ok(Self {
            dir,
            writer,
            reads,
            audit,
            readers: Readers::new(readers, bulk),
            health,
            _checkpointer: checkpointer::Checkpointer::start(checkpoint_conn)?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn ping(&self) -> StoreResult<()> {
        self.readers
            .read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await?;
        if let Some(failing) = self.health.failing() {
            if let StoreError::StorageFull { .. } = failing {
                // Small writes may still fit on a full disk: ready again only
                // with some room to spare.
                let free = fs4::available_space(&self.dir).unwrap_or(0);
                if free < RECOVERED_FREE_BYTES {
                    return Err(StoreError::full_from(
                        format!("{free} bytes free in {}", self.dir.display()),
                        None,
                    ));
                }
            }
            // Ready again once a write commits and is synced.
            self.writer.execute(PROBE_WRITE, ()).await?;
            self.health.clear();
        }
        Ok(())
    }
}
