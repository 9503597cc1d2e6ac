//! API key routes.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::views::{
    ApiKeyInfoView, ApiKeyTombstoneView, ApiKeysView, CreateApiKeyRequest, NewApiKeyView,
};
use super::AppState;
use crate::domain::types::KeyType;
use crate::service::keys::{KeyFilter, NewKey};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

fn key_type_error() -> String {
    let all: Vec<&str> = KeyType::ALL.iter().map(|t| t.as_str()).collect();
    format!("expected one of {}", all.join(", "))
}

pub(crate) fn parse_key_type(raw: &str) -> ApiResult<KeyType> {
    raw.parse().map_err(|_| {
        ApiError::invalid(format!(
            "unknown API key type {raw:?}; {}",
            key_type_error()
        ))
    })
}

fn new_key_from(body: CreateApiKeyRequest) -> ApiResult<NewKey> {
    let key_type = match body.r#type {
        Some(t) => parse_key_type(&t)?,
        None => return Err(ApiError::invalid("missing required field `type`")),
    };
    if body.team_id.as_deref() == Some("") {
        return Err(ApiError::invalid("field `team_id` must not be empty"));
    }
    Ok(NewKey {
        name: body.name,
        key_type,
        model_ids: body.model_ids,
        team_id: body.team_id,
        secret_names: body.secret_names,
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct KeyQuery {
    /// Only keys of this type.
    r#type: Option<String>,
    /// Only keys created by the caller's user.
    created_by_me: Option<bool>,
}

/// List the API keys the caller may manage (metadata only). Org admins see
/// every key of the organization, including members' personal keys.
#[utoipa::path(get, path = "/v1/api_keys", tag = "api_keys", params(KeyQuery),
    responses((status = 200, body = ApiKeysView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn list_api_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(q): QueryParams<KeyQuery>,
) -> ApiResult<Json<ApiKeysView>> {
    let filter = KeyFilter {
        key_type: q.r#type.as_deref().map(parse_key_type).transpose()?,
        created_by_me: q.created_by_me.unwrap_or(false),
    };
    let keys = state
        .service
        .keys()
        .list_api_keys(&caller.0, filter)
        .await?;
    Ok(Json(ApiKeysView {
        keys: keys.into_iter().map(ApiKeyInfoView::from).collect(),
    }))
}

/// Create an API key. The key is in the response and nowhere else.
#[utoipa::path(post, path = "/v1/api_keys", tag = "api_keys", request_body = CreateApiKeyRequest,
    responses((status = 200, body = NewApiKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_api_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateApiKeyRequest>,
) -> ApiResult<Json<NewApiKeyView>> {
    let token = state
        .service
        .keys()
        .create_api_key(&caller.0, None, new_key_from(body)?)
        .await?;
    Ok(Json(NewApiKeyView {
        api_key: token.token().to_owned(),
    }))
}

/// Create a key bound to the given team.
#[utoipa::path(post, path = "/v1/teams/{team_id}/api_keys", tag = "api_keys", params(("team_id" = String, Path)),
    request_body = CreateApiKeyRequest,
    responses((status = 200, body = NewApiKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_team_api_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
    Body(body): Body<CreateApiKeyRequest>,
) -> ApiResult<Json<NewApiKeyView>> {
    let token = state
        .service
        .keys()
        .create_api_key(&caller.0, Some(&team_id), new_key_from(body)?)
        .await?;
    Ok(Json(NewApiKeyView {
        api_key: token.token().to_owned(),
    }))
}

/// Revoke a key by its prefix. It stops working at once on this node and
/// within half a second on every other node.
#[utoipa::path(delete, path = "/v1/api_keys/{api_key_prefix}", tag = "api_keys", params(("api_key_prefix" = String, Path)),
    responses((status = 200, body = ApiKeyTombstoneView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn delete_api_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(prefix): PathParams<String>,
) -> ApiResult<Json<ApiKeyTombstoneView>> {
    let prefix = state
        .service
        .keys()
        .revoke_api_key(&caller.0, &prefix)
        .await?;
    Ok(Json(ApiKeyTombstoneView { prefix }))
}
