//! Request extractors whose rejections are our JSON errors.

use super::error::{ApiError, ErrorCode};
use super::AppState;
use crate::domain::access::Principal;
use crate::net::ClientAddr;
use crate::service::auth::{AuthError, AuthFailure};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{header::AUTHORIZATION, request::Parts, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The authenticated caller.
pub struct Caller(pub Arc<Principal>);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let header = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(s) => Some(s),
                Err(_) => {
                    return Err(state
                        .throttles
                        .auth_failed(client, AuthFailure::MalformedHeader))
                }
            },
        };
        match state.service.authenticate_detailed(header).await {
            Ok(principal) => {
                super::trace::record_caller(&principal.key_prefix);
                state.throttles.check_key(&principal)?;
                Ok(Caller(principal))
            }
            Err(AuthError::Refused(reason)) => Err(state.throttles.auth_failed(client, reason)),
            Err(AuthError::Service(e)) => Err(e.into()),
        }
    }
}

/// The client's address, when the server knows it (for the record of
/// reads): the peer, or the forwarded address behind a trusted proxy.
pub struct ClientAddress(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ClientAddr>()
                .map(|c| c.0.to_string()),
        ))
    }
}

/// Path parameters, percent-decoded.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParams(t))
            .map_err(|e| ApiError::invalid(format!("invalid path parameter: {}", e.body_text())))
    }
}

/// Query parameters.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryParams(t))
            .map_err(|e| ApiError::invalid(format!("invalid query string: {}", e.body_text())))
    }
}

/// A JSON object body, parsed whatever the `Content-Type` says (Baseten's
/// documented curl examples send none). Fields are read with the typed
/// accessors below, whose errors name the field but never echo its value.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "request body exceeds the limit of {} bytes",
                        super::MAX_BODY_BYTES
                    ),
                )
            } else {
                ApiError::invalid("could not read the request body")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "request body is empty; expected a JSON object",
            ));
        }
        // serde_json's syntax errors give a position, never the input text.
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}")))?;
        match value {
            Value::Object(map) => Ok(JsonObject(map)),
            _ => Err(ApiError::invalid("request body must be a JSON object")),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl JsonObject {
    /// A required string field.
    pub fn take_string(&mut self, field: &str) -> Result<String, ApiError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Err(ApiError::invalid(format!(
                "missing required field `{field}`"
            ))),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(ApiError::invalid(format!(
                "field `{field}` must be a string, not {}",
                type_name(&other)
            ))),
        }
    }

    /// An optional string field (absent or null: `None`).
    pub fn take_opt_string(&mut self, field: &str) -> Result<Option<String>, ApiError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::invalid(format!(
                "field `{field}` must be a string or null, not {}",
                type_name(&other)
            ))),
        }
    }

    /// An optional array of strings (absent or null: `None`).
    pub fn take_opt_string_list(&mut self, field: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(ApiError::invalid(format!(
                        "field `{field}` must be an array of strings (found {})",
                        type_name(&other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(ApiError::invalid(format!(
                "field `{field}` must be an array of strings or null, not {}",
                type_name(&other)
            ))),
        }
    }

    /// An optional boolean (absent or null: `None`).
    pub fn take_opt_bool(&mut self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(ApiError::invalid(format!(
                "field `{field}` must be a boolean, not {}",
                type_name(&other)
            ))),
        }
    }
}
