//! The store's one error type. Each engine converts its driver's errors
//! into it in one place (`From<rusqlite::Error>`, `From<sqlx::Error>`),
//! keeping the driver error as the source for the log; messages a client
//! may see (`Conflict`, `NotFound`) are always Tessera's words, never the
//! database's text.

use std::sync::Arc;

pub type StoreResult<T> = Result<T, StoreError>;

/// A driver error kept for the log (shared, so the error stays `Clone`).
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated; the message says which.
    #[error("{0}")]
    Conflict(String),
    /// A record the call refers to (a team, a user) is gone: a concurrent
    /// request deleted it. The message says what is missing.
    #[error("{0}")]
    NotFound(String),
    /// Creating this would exceed a quota.
    #[error("{quota} quota exceeded (limit {limit})")]
    QuotaExceeded { quota: &'static str, limit: i64 },
    /// What the caller expected of a secret's identity no longer holds (it
    /// was created, deleted or re-created meanwhile): read it again and retry.
    #[error("the secret changed identity meanwhile")]
    Stale,
    /// The disk holding the data is full; writes fail until space is freed.
    #[error("storage full: {message}")]
    StorageFull {
        message: String,
        #[source]
        source: Option<Source>,
    },
    /// The database cannot be reached right now.
    #[error("database unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Source>,
    },
    /// Anything else. For the log, never for a client.
    #[error("database error: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Source>,
    },
}

/// Our words for a uniqueness violation a store method did not name more
/// precisely.
pub(crate) const CONFLICT: &str = "the request conflicts with an existing record";
/// Our words for a foreign-key violation a store method did not name more
/// precisely: what the write refers to was deleted meanwhile.
pub(crate) const GONE: &str = "the team or user this request refers to no longer exists";

impl StoreError {
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
            source: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: fn(String, Option<Source>) -> Self,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        kind(e.to_string(), Some(Arc::new(e)))
    }

    pub(crate) fn internal_from(message: String, source: Option<Source>) -> Self {
        Self::Internal { message, source }
    }

    pub(crate) fn unavailable_from(message: String, source: Option<Source>) -> Self {
        Self::Unavailable { message, source }
    }

    pub(crate) fn full_from(message: String, source: Option<Source>) -> Self {
        Self::StorageFull { message, source }
    }

    /// A uniqueness violation said in our words.
    pub(crate) fn conflict_as(self, message: &str) -> Self {
        match self {
            Self::Conflict(_) => Self::Conflict(message.to_owned()),
            other => other,
        }
    }

    /// A vanished reference said in our words.
    pub(crate) fn gone_as(self, message: &str) -> Self {
        match self {
            Self::NotFound(_) => Self::NotFound(message.to_owned()),
            other => other,
        }
    }
}
