//! Where a failure becomes an error answer: which code each service error
//! gets, and the `Retry-After` header of a 429.
//!
//! Every error is `{"code": "...", "message": "..."}` with a stable code. A
//! 500 never says what went wrong inside; the detail goes to the log. The
//! body itself and its codes are decided in `tessera_wire::error` (the
//! network layer answers with the same body without knowing this module).

use crate::service::ServiceError;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
pub use tessera_wire::error::{unparsable_request_body, ConcernedKeyView, ErrorBody, ErrorCode};

/// What clients hear while the disk holding the data is full.
pub const STORAGE_FULL: &str =
    "the disk holding the data is full; writes fail until space is freed";

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
    /// The keys a refused change concerns (409).
    pub keys: Option<Vec<ConcernedKeyView>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            keys: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => Self::new(ErrorCode::InvalidRequest, m),
            ServiceError::Unauthorized(m) => Self::new(ErrorCode::Unauthorized, m),
            ServiceError::Forbidden(m) => Self::new(ErrorCode::Forbidden, m),
            ServiceError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            ServiceError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            ServiceError::QuotaExceeded(m) => Self::new(ErrorCode::QuotaExceeded, m),
            ServiceError::KeysConcerned { message, keys } => Self {
                keys: Some(
                    keys.into_iter()
                        .map(|k| ConcernedKeyView {
                            prefix: k.prefix,
                            key_type: k.key_type,
                            name: k.name,
                            team_id: k.team_id,
                        })
                        .collect(),
                ),
                ..Self::new(ErrorCode::Conflict, message)
            },
            ServiceError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable; retry shortly",
                )
            }
            ServiceError::StorageFull(detail) => {
                tracing::error!(%detail, "a write failed: the disk is full");
                Self::new(ErrorCode::Unavailable, STORAGE_FULL)
            }
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Self::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl ApiError {
    fn into_body(self) -> ErrorBody {
        ErrorBody::new(self.code, self.message, self.retry_after, self.keys)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = self.into_body();
        let retry_after = body.retry_after;
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
