//! The one place SQLite errors are classified, and the one place rows are
//! read (for the shared row mappers). Client-visible messages are ours;
//! SQLite's own text stays in the source, for the log.

use crate::error::{CONFLICT, GONE};
use crate::StoreError;
use rusqlite::ErrorCode;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let code = match &e {
            rusqlite::Error::SqliteFailure(err, _) => Some((err.code, err.extended_code)),
            _ => None,
        };
        match code {
            Some((ErrorCode::ConstraintViolation, ext))
                if ext == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                StoreError::NotFound(GONE.into())
            }
            Some((ErrorCode::ConstraintViolation, _)) => StoreError::Conflict(CONFLICT.into()),
            Some((ErrorCode::DiskFull, _)) => StoreError::with_source(StoreError::full_from, e),
            Some((ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked, _)) => {
                StoreError::unavailable_from(
                    "the database is locked by another process".into(),
                    Some(std::sync::Arc::new(e)),
                )
            }
            _ => StoreError::with_source(StoreError::internal_from, e),
        }
    }
}

impl crate::row::Row for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn col<T: crate::row::Value>(&self, i: usize) -> rusqlite::Result<T> {
        self.get(i)
    }

    fn unknown(i: usize, value: &str) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown enum value {value:?}").into(),
        )
    }
}
