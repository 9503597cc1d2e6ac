//! The one place PostgreSQL errors are classified, and the one place rows
//! are read (for the shared row mappers). Client-visible messages are ours;
//! the database's text stays in the source, for the log.

use crate::error::{CONFLICT, GONE};
use crate::StoreError;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                match code.as_str() {
                    "23505" => return StoreError::Conflict(CONFLICT.into()),
                    // A referenced row (team, user) was deleted meanwhile,
                    // possibly by another node.
                    "23503" => return StoreError::NotFound(GONE.into()),
                    "53100" => return StoreError::with_source(StoreError::full_from, e),
                    _ => {}
                }
                // Connection exceptions, shutdown, statement timeout, missing
                // database, too many connections: transient. So are a lock
                // wait cut short by `lock_timeout`, a deadlock victim and a
                // serialization failure (what CockroachDB and YugabyteDB
                // answer to contention): the transaction was rolled back and
                // a retry may succeed.
                if code.starts_with("08")
                    || code.starts_with("57")
                    || matches!(
                        code.as_str(),
                        "3D000" | "53300" | "55P03" | "40001" | "40P01"
                    )
                {
                    return StoreError::with_source(StoreError::unavailable_from, e);
                }
                StoreError::with_source(StoreError::internal_from, e)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::with_source(StoreError::unavailable_from, e),
            _ => StoreError::with_source(StoreError::internal_from, e),
        }
    }
}

/// Whether the database aborted a transaction for contention (a retry may
/// succeed).
pub fn is_contention(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

impl crate::row::Row for sqlx::postgres::PgRow {
    type Error = sqlx::Error;

    fn col<T: crate::row::Value>(&self, i: usize) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, i)
    }

    fn unknown(i: usize, value: &str) -> sqlx::Error {
        sqlx::Error::ColumnDecode {
            index: i.to_string(),
            source: format!("unknown enum value {value:?}").into(),
        }
    }
}
