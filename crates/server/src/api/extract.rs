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
use std::sync::Arc;

/// The authenticated caller.
pub struct Caller(pub Arc<Principal>);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let principal = authenticate(parts, state).await?;
        state.throttles.check_key(&principal)?;
        Ok(Caller(principal))
    }
}

/// The authenticated caller, whose request rate the handler checks itself
/// (the runtime scope route: a long poll that waits spends nothing).
pub struct UnmeteredCaller(pub Arc<Principal>);

impl FromRequestParts<Arc<AppState>> for UnmeteredCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        authenticate(parts, state).await.map(UnmeteredCaller)
    }
}

async fn authenticate(parts: &Parts, state: &Arc<AppState>) -> Result<Arc<Principal>, ApiError> {
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
    match state.service.identity().authenticate_detailed(header).await {
        Ok(principal) => {
            super::trace::record_caller(&principal.key_prefix);
            Ok(principal)
        }
        Err(AuthError::Refused(reason)) => Err(state.throttles.auth_failed(client, reason)),
        Err(AuthError::Service(e)) => Err(e.into()),
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

/// Who is reading on a delivery route: the client's address, the agent
/// instance it names in the `X-Tessera-Agent` header and the kind of
/// consumer it says it is in `X-Tessera-Consumer-Kind` (400 when either is
/// malformed).
pub struct Reader(pub crate::service::delivery::ReadContext);

impl<S: Send + Sync> FromRequestParts<S> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use crate::domain::consumer_kind::ConsumerKind;
        use crate::service::consumers::{
            valid_instance, INSTANCE_HEADER, KIND_HEADER, MAX_INSTANCE_CHARS,
        };
        let Ok(ClientAddress(client)) = ClientAddress::from_request_parts(parts, state).await;
        let instance = match parts.headers.get(INSTANCE_HEADER) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(id) if valid_instance(id) => Some(id.to_owned()),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "the {INSTANCE_HEADER} header must be 1 to {MAX_INSTANCE_CHARS} visible ASCII characters"
                    )))
                }
            },
        };
        let kind = match parts.headers.get(KIND_HEADER) {
            None => ConsumerKind::Unspecified,
            Some(v) => match v.to_str().ok().and_then(ConsumerKind::parse) {
                Some(k) if ConsumerKind::DECLARED.contains(&k) => k,
                _ => {
                    let allowed: Vec<&str> =
                        ConsumerKind::DECLARED.iter().map(|k| k.as_str()).collect();
                    return Err(ApiError::invalid(format!(
                        "the {KIND_HEADER} header must be one of {}",
                        allowed.join(", ")
                    )));
                }
            },
        };
        Ok(Reader(crate::service::delivery::ReadContext {
            client,
            instance,
            kind,
            holds: None,
        }))
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

/// A JSON object body of type `T`, parsed whatever the `Content-Type` says
/// (Baseten's documented curl examples send none). Unknown fields are
/// ignored; `null` in an optional field means absent. Errors name the field
/// (with its path, e.g. `secret_names[2]`) and what it must be, and never
/// echo what was sent.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
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
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => Err(ApiError::invalid(
                "request body is empty; expected a JSON object",
            )),
            // serde would also read a struct from an array, field by field.
            Some(b'{') => {
                let mut de = serde_json::Deserializer::from_slice(&bytes);
                let value =
                    serde_path_to_error::deserialize(&mut de).map_err(|e| body_error(&e))?;
                de.end().map_err(|e| {
                    ApiError::invalid(format!("request body is not valid JSON: {e}"))
                })?;
                Ok(Body(value))
            }
            Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                Err(ApiError::invalid("request body must be a JSON object"))
            }
            Some(_) => Err(ApiError::invalid(
                "request body is not valid JSON: expected a JSON object",
            )),
        }
    }
}

/// A client-facing message for a body that failed to parse. serde_json's
/// messages for wrong types quote the value sent ("invalid type: string
/// \"…\", expected …"), so only the expectation is kept.
fn body_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let inner = e.inner();
    let text = inner.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    if !matches!(inner.classify(), Category::Data) {
        // Syntax errors give a position, never the input text.
        return ApiError::invalid(format!("request body is not valid JSON: {inner}"));
    }
    let path = e.path().to_string();
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|f| f.strip_suffix('`'))
    {
        let field = match path.as_str() {
            "." => field.to_owned(),
            parent => format!("{parent}.{field}"),
        };
        return ApiError::invalid(format!("missing required field `{field}`"));
    }
    let expected = text
        .split_once(", expected ")
        .map_or("of another type", |(_, x)| x);
    match path.split_once('[') {
        Some((list, index)) => ApiError::invalid(format!(
            "field `{list}` must be an array of strings; item {} is not {expected}",
            index.trim_end_matches(']')
        )),
        None => ApiError::invalid(format!("field `{path}` must be {expected}")),
    }
}
