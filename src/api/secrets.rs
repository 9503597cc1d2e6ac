//! Secret routes: thin handlers over the secrets service.

use super::error::{ApiResult, ErrorBody};
use super::extract::{Caller, JsonObject, PathParams};
use super::views::{SecretTombstoneView, SecretView, SecretsView, Timestamp, UpsertSecretRequest};
use super::AppState;
use crate::domain::secret_value::SecretValue;
use crate::service::secrets::TeamSecrets;
use crate::service::TeamRef;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use std::sync::Arc;

/// A listing in the shape of [`SecretsView`], serialized straight from the
/// store's records rather than through a view object (four strings) per
/// secret.
#[derive(Serialize)]
struct Listing<'a> {
    secrets: Entries<'a>,
}

struct Entries<'a>(&'a [TeamSecrets]);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let count = self.0.iter().map(|t| t.secrets.len()).sum();
        let mut seq = serializer.serialize_seq(Some(count))?;
        for team in self.0 {
            for s in &team.secrets {
                seq.serialize_element(&Entry {
                    id: &s.id,
                    created_at: Timestamp(s.created_at),
                    name: &s.name,
                    team_name: &team.team_name,
                })?;
            }
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    id: &'a str,
    created_at: Timestamp,
    name: &'a str,
    team_name: &'a str,
}

fn listing(teams: &[TeamSecrets]) -> Response {
    Json(Listing {
        secrets: Entries(teams),
    })
    .into_response()
}

async fn upsert(
    state: &AppState,
    caller: &Caller,
    team: TeamRef<'_>,
    mut body: JsonObject,
) -> ApiResult<Json<SecretView>> {
    let name = body.take_string("name")?;
    let value = SecretValue::new(body.take_string("value")?);
    let record = state
        .service
        .upsert_secret(&caller.0, team, &name, value)
        .await?;
    Ok(Json(record.into()))
}

/// List every secret the caller can reach, across teams (metadata only).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses((status = 200, body = SecretsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_secrets(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Response> {
    let teams = state.service.list_all_secrets(&caller.0).await?;
    Ok(listing(&teams))
}

/// Create or update a secret in the caller's team (a team-bound key's team,
/// otherwise the organization's default team).
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", request_body = UpsertSecretRequest,
    responses((status = 200, body = SecretView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upsert_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: JsonObject,
) -> ApiResult<Json<SecretView>> {
    upsert(&state, &caller, TeamRef::Implicit, body).await
}

/// Delete a secret of the caller's team by any spelling of its name.
#[utoipa::path(delete, path = "/v1/secrets/{secret_name}", tag = "secrets",
    params(("secret_name" = String, Path, description = "Any spelling with the same canonical form")),
    responses((status = 200, body = SecretTombstoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> ApiResult<Json<SecretTombstoneView>> {
    let deleted = state
        .service
        .delete_secret(&caller.0, TeamRef::Implicit, &name)
        .await?;
    Ok(Json(SecretTombstoneView { name: deleted.name }))
}

/// List a team's secrets (metadata only).
#[utoipa::path(get, path = "/v1/teams/{team_id}/secrets", tag = "secrets",
    params(("team_id" = String, Path)),
    responses((status = 200, body = SecretsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_team_secrets(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
) -> ApiResult<Response> {
    let team = state
        .service
        .list_team_secrets(&caller.0, TeamRef::Id(&team_id))
        .await?;
    Ok(listing(std::slice::from_ref(&team)))
}

/// Create or update a secret in the given team.
#[utoipa::path(post, path = "/v1/teams/{team_id}/secrets", tag = "secrets",
    params(("team_id" = String, Path)), request_body = UpsertSecretRequest,
    responses((status = 200, body = SecretView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upsert_team_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
    body: JsonObject,
) -> ApiResult<Json<SecretView>> {
    upsert(&state, &caller, TeamRef::Id(&team_id), body).await
}

/// Delete a secret of the given team by any spelling of its name.
#[utoipa::path(delete, path = "/v1/teams/{team_id}/secrets/{secret_name}", tag = "secrets",
    params(("team_id" = String, Path), ("secret_name" = String, Path)),
    responses((status = 200, body = SecretTombstoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_team_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, name)): PathParams<(String, String)>,
) -> ApiResult<Json<SecretTombstoneView>> {
    let deleted = state
        .service
        .delete_secret(&caller.0, TeamRef::Id(&team_id), &name)
        .await?;
    Ok(Json(SecretTombstoneView { name: deleted.name }))
}
