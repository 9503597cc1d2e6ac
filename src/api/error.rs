//! The one place an error's status, code and body are decided.
//!
//! Every error is `{"code": "...", "message": "..."}` with a stable code. A
//! 500 never says what went wrong inside; the detail goes to the log. Two
//! callers outside the router write what this module decides: `net/`
//! answers connections beyond its caps and handlers past their timeout with
//! an [`ApiError`], and `net/error_head.rs` puts [`unparsable_request_body`]
//! in place of the empty body of hyper's own answers to requests it cannot
//! parse (it only frames those bytes). No other file builds an error body
//! (`tests/docs` checks that).

use crate::service::ServiceError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    QuotaExceeded,
    PayloadTooLarge,
    RateLimited,
    Internal,
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Conflict => "CONFLICT",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::RateLimited => "RATE_LIMITED",
            Self::Internal => "INTERNAL_ERROR",
            Self::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict | Self::QuotaExceeded => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

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

/// A key a refused change concerns: what identifies it, never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConcernedKeyView {
    pub prefix: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub name: Option<String>,
    pub team_id: Option<String>,
}

/// The error body every route returns.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable upper-case error code, e.g. `INVALID_REQUEST`.
    pub code: &'static str,
    /// What was wrong, for a human.
    pub message: String,
    /// Rate limiting only: the same as `message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rate limiting only: seconds to wait before retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// A change refused because API keys would outlive the authority of
    /// the person who answers for them (409): those keys.
    #[serde(skip_serializing_if = "Option::is_none")]
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
        let rate_limited = self.code == ErrorCode::RateLimited;
        ErrorBody {
            code: self.code.as_str(),
            error: rate_limited.then(|| self.message.clone()),
            retry_after: if rate_limited {
                self.retry_after.or(Some(1))
            } else {
                None
            },
            message: self.message,
            keys: self.keys,
        }
    }
}

/// The body for hyper's own answer to a request it could not parse, by the
/// status hyper chose (400, 414 or 431; `None` for any other). The code is
/// `INVALID_REQUEST` for all three: the status says which limit was hit.
pub fn unparsable_request_body(status: u16) -> Option<String> {
    let message = match status {
        400 => {
            "malformed HTTP request: the request line, a header or the message framing could not be parsed"
        }
        414 => "request URI too long",
        431 => {
            "request headers too large (at most 100 headers and 80 KiB for the request line and headers together)"
        }
        _ => return None,
    };
    serde_json::to_string(&ApiError::invalid(message).into_body()).ok()
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
