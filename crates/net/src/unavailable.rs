//! The network layer's own answers (a connection beyond a cap, a handler
//! past its timeout, a forwarded request beyond its address's cap): a 503
//! with the body every route answers with, as `tessera_wire::error` decides
//! it. The network layer knows nothing of the router's own errors.

use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_wire::error::{ErrorBody, ErrorCode};

/// `503 UNAVAILABLE` saying `message`.
pub fn unavailable(message: impl Into<String>) -> Response {
    let code = ErrorCode::Unavailable;
    let body = ErrorBody::new(code, message.into(), None, None);
    (code.status(), Json(body)).into_response()
}
