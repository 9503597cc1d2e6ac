//! What a use case answers when it refuses or fails; mapped to HTTP in one
//! place (`api::error`).

use crate::domain::access::Denied;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QuotaExceeded(String),
    /// A change refused for the keys it would leave without an answerer
    /// (409, with the keys listed).
    #[error("{message}")]
    KeysConcerned {
        message: String,
        keys: Vec<ConcernedKey>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// The disk holding the data is full. Details go to the log only.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// Details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// A key named in [`ServiceError::KeysConcerned`]: what identifies it, never
/// its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcernedKey {
    pub prefix: String,
    pub key_type: String,
    pub name: Option<String>,
    pub team_id: Option<String>,
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ServiceError::Conflict(m),
            StoreError::NotFound(m) => ServiceError::NotFound(m),
            e @ StoreError::QuotaExceeded { .. } => ServiceError::QuotaExceeded(e.to_string()),
            // Retried where it can happen; seen here, the write lost a race
            // too many times.
            StoreError::Stale => {
                ServiceError::Conflict("the secret changed concurrently; retry".into())
            }
            // The detail (with the driver's error) is for the log only.
            e @ StoreError::StorageFull { .. } => ServiceError::StorageFull(log_detail(&e)),
            e @ StoreError::Unavailable { .. } => ServiceError::Unavailable(log_detail(&e)),
            e @ StoreError::Internal { .. } => ServiceError::Internal(log_detail(&e)),
        }
    }
}

/// An error with its chain of sources, for the log.
fn log_detail(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<Denied> for ServiceError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NotFound(what) => ServiceError::NotFound(format!("{what} not found")),
            Denied::Forbidden(m) => ServiceError::Forbidden(m),
        }
    }
}
