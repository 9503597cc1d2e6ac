//! The error body every route answers with, and its stable codes: decided
//! here only. The server's `api::error` maps its failures onto these; the
//! network layer (`tessera-net`) answers connections beyond its caps,
//! handlers past their timeout and requests hyper cannot parse with the same
//! body, without knowing the router. No other file builds an error body
//! (`tests/docs` checks that).

use http::StatusCode;
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

impl ErrorBody {
    /// The body for `code`: a rate-limited answer repeats its message as
    /// `error` and always says how long to wait (1 s unless told).
    pub fn new(
        code: ErrorCode,
        message: String,
        retry_after: Option<u64>,
        keys: Option<Vec<ConcernedKeyView>>,
    ) -> Self {
        let rate_limited = code == ErrorCode::RateLimited;
        ErrorBody {
            code: code.as_str(),
            error: rate_limited.then(|| message.clone()),
            retry_after: if rate_limited {
                retry_after.or(Some(1))
            } else {
                None
            },
            message,
            keys,
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
    serde_json::to_string(&ErrorBody::new(
        ErrorCode::InvalidRequest,
        message.to_owned(),
        None,
        None,
    ))
    .ok()
}

/// An error body as a client reads it (the admin CLI, the workload, the
/// tests): the fields of [`ErrorBody`], owned. Concerned keys are left as
/// JSON for the commands that explain them in their own terms.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ErrorReply {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub retry_after: Option<u64>,
}
