//! Secret routes: thin handlers over the secrets service.

use super::error::{ApiResult, ErrorBody};
use super::extract::{Body as JsonBody, Caller, PathParams};
use super::views::{SecretTombstoneView, SecretView, SecretsView, UpsertSecretRequest};
use super::AppState;
use crate::domain::types::ListedSecret;
use crate::service::secrets::SecretPages;
use crate::service::TeamRef;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use std::sync::Arc;

/// Appends a page of entries to `out`, each preceded by a comma except the
/// listing's very first.
fn write_entries(out: &mut Vec<u8>, page: &[ListedSecret], first: &mut bool) {
    for s in page {
        if !std::mem::take(first) {
            out.push(b',');
        }
        // Serializing strings into memory cannot fail.
        let _ = serde_json::to_writer(&mut *out, &SecretView::from(s));
    }
}

const OPEN: &[u8] = br#"{"secrets":["#;
const CLOSE: &[u8] = b"]}";

/// A listing as `{"secrets": [...]}`. One that fits in its first page is
/// answered at once; a larger one is streamed page by page, so the server
/// holds one page per request whatever the listing's size. (A store error
/// after the first page can only cut the stream short; it is logged.)
async fn listing(mut pages: SecretPages) -> ApiResult<Response> {
    let first_page = pages.next().await?.unwrap_or_default();
    let mut first = true;
    let mut head = Vec::with_capacity(OPEN.len() + first_page.len() * 160 + CLOSE.len());
    head.extend_from_slice(OPEN);
    write_entries(&mut head, &first_page, &mut first);
    if pages.is_done() {
        head.extend_from_slice(CLOSE);
        return Ok(json_response(Body::from(head)));
    }
    let rest = futures_util::stream::unfold(Some((pages, first)), |state| async move {
        let (mut pages, mut first) = state?;
        match pages.next().await {
            Ok(Some(page)) => {
                let mut chunk = Vec::with_capacity(page.len() * 160);
                write_entries(&mut chunk, &page, &mut first);
                Some((Ok(Bytes::from(chunk)), Some((pages, first))))
            }
            Ok(None) => Some((Ok(Bytes::from_static(CLOSE)), None)),
            Err(e) => {
                tracing::error!(error = %e, "a streamed listing failed; cutting it short");
                Some((Err(std::io::Error::other("listing failed")), None))
            }
        }
    });
    let body = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from(head)) })
        .chain(rest);
    Ok(json_response(Body::from_stream(body)))
}

fn json_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn upsert(
    state: &AppState,
    caller: &Caller,
    team: TeamRef<'_>,
    body: UpsertSecretRequest,
) -> ApiResult<Response> {
    let record = state
        .service
        .upsert_secret(&caller.0, team, &body.name, body.value)
        .await?;
    Ok(Json(SecretView::from(&record)).into_response())
}

/// List every secret the caller can reach, across teams (metadata only).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses((status = 200, body = SecretsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_secrets(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Response> {
    listing(state.service.list_all_secrets(&caller.0).await?).await
}

/// Create or update a secret in the caller's team (a team-bound key's team,
/// otherwise the organization's default team).
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", request_body = UpsertSecretRequest,
    responses((status = 200, body = SecretView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upsert_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<UpsertSecretRequest>,
) -> ApiResult<Response> {
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
    let pages = state
        .service
        .list_team_secrets(&caller.0, TeamRef::Id(&team_id))
        .await?;
    listing(pages).await
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
    JsonBody(body): JsonBody<UpsertSecretRequest>,
) -> ApiResult<Response> {
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
