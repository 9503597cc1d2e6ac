//! The ceiling target: what the HTTP stack and JSON alone cost on this
//! machine. It parses the same upsert body Tessera parses and answers a
//! secret's metadata; its list serializes a fixed list of metadata entries
//! per request. It stores nothing, so no real server can be faster.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// Team id whose list has 10,000 entries; every other team lists 100.
pub const BIG_TEAM: &str = "team-10k";
pub const SMALL_TEAM: &str = "team-100";

#[derive(Deserialize)]
struct Upsert {
    name: String,
    // Parsed (and so validated as a string) like Tessera does, then dropped.
    #[expect(dead_code, reason = "read only to validate it")]
    value: String,
}

#[derive(Serialize)]
struct SecretMeta {
    id: String,
    created_at: String,
    name: String,
    team_name: String,
}

#[derive(Serialize)]
struct Secrets<'a> {
    secrets: &'a [SecretMeta],
}

struct Lists {
    small: Vec<SecretMeta>,
    big: Vec<SecretMeta>,
}

const CREATED_AT: &str = "2026-01-01T00:00:00Z";

fn entries(team: &str, n: usize) -> Vec<SecretMeta> {
    (0..n)
        .map(|i| SecretMeta {
            id: format!("sec_{i:020}"),
            created_at: CREATED_AT.into(),
            name: crate::workloads::secret_name(i),
            team_name: team.into(),
        })
        .collect()
}

pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let lists = Arc::new(Lists {
        small: entries(SMALL_TEAM, 100),
        big: entries(BIG_TEAM, 10_000),
    });
    let app = Router::new()
        .route("/readyz", get(|| async { "ready" }))
        .route("/v1/secrets", get(list_default).post(upsert_default))
        .route("/v1/teams/{team_id}/secrets", get(list).post(upsert))
        .with_state(lists);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upsert(Path(team): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    answer_upsert(&team, &headers, &body)
}

async fn upsert_default(headers: HeaderMap, body: Bytes) -> Response {
    answer_upsert("default", &headers, &body)
}

fn answer_upsert(team: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    // The same checks a real server starts with: a credential is present and
    // the body is the expected JSON.
    if !headers.contains_key(header::AUTHORIZATION) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match serde_json::from_slice::<Upsert>(body) {
        Ok(req) => json(&SecretMeta {
            id: "sec_00000000000000000000".into(),
            created_at: CREATED_AT.into(),
            name: req.name,
            team_name: team.into(),
        }),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn list(State(lists): State<Arc<Lists>>, Path(team): Path<String>) -> Response {
    let secrets = if team == BIG_TEAM {
        &lists.big
    } else {
        &lists.small
    };
    json(&Secrets { secrets })
}

async fn list_default(State(lists): State<Arc<Lists>>) -> Response {
    json(&Secrets {
        secrets: &lists.small,
    })
}

fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
