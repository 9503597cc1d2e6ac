//! The organization's audit log (extension): org admins page through its
//! events, newest first, with filters. A thin handler over
//! `service/audit_log.rs`; events never hold a value or a key secret.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Caller, QueryParams};
use super::views::Timestamp;
use super::AppState;
use crate::audit::chain::StoredEvent;
use crate::domain::audit_action::AuditAction;
use crate::domain::time::Micros;
use crate::store::AuditFilter;
use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Events per page unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditEventsQuery {
    /// Only events of this actor: an API key's prefix or a user's id.
    actor: Option<String>,
    /// Only events of this action (one of [`AuditAction::ALL`]; any other
    /// name is refused with 400, since no event could match it).
    #[param(schema_with = action_schema)]
    action: Option<String>,
    /// Only events about this target: an id or a name.
    target: Option<String>,
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    until: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// One event: who did what to which object, when, from where.
#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    #[schema(value_type = String)]
    pub time: Timestamp,
    /// The event's place in the log: its chain and seq.
    pub chain: String,
    pub seq: u64,
    /// The prefix of the API key that acted (never the key itself).
    pub actor_key_prefix: Option<String>,
    pub actor_key_type: Option<String>,
    pub actor_user_id: Option<String>,
    pub team_id: Option<String>,
    /// What was done: one of [`AuditAction::ALL`].
    #[schema(schema_with = action_schema)]
    pub action: String,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    /// `ok` or `denied`.
    pub result: String,
    /// The `X-Request-Id` of the request that did it.
    pub request_id: Option<String>,
    /// The client's address.
    pub client: Option<String>,
    /// Details (e.g. the version written), as JSON text.
    pub detail: Option<String>,
    /// The event's chain MAC, hex: what `tessera audit verify` checks.
    pub mac: String,
}

impl From<StoredEvent> for AuditEventView {
    fn from(s: StoredEvent) -> Self {
        let e = s.event;
        Self {
            time: Timestamp(e.time),
            chain: e.chain,
            seq: e.seq,
            actor_key_prefix: e.actor_key,
            actor_key_type: e.actor_type,
            actor_user_id: e.actor_user,
            team_id: e.team_id,
            action: e.action,
            target_id: e.target_id,
            target_name: e.target_name,
            result: e.result,
            request_id: e.request_id,
            client: e.client,
            detail: e.detail,
            mac: hex::encode(s.mac),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventsView {
    pub events: Vec<AuditEventView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Page through the organization's audit log, newest first (org admins).
#[utoipa::path(get, path = "/v1/audit_events", tag = "extensions",
    params(AuditEventsQuery),
    responses((status = 200, body = AuditEventsView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_audit_events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(q): QueryParams<AuditEventsQuery>,
) -> ApiResult<Json<AuditEventsView>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let filter = AuditFilter {
        actor: q.actor.filter(|s| !s.is_empty()),
        action: q
            .action
            .filter(|s| !s.is_empty())
            .map(|a| known_action(&a).map(|_| a))
            .transpose()?,
        target: q.target.filter(|s| !s.is_empty()),
        since: q.since.as_deref().map(|t| time("since", t)).transpose()?,
        until: q.until.as_deref().map(|t| time("until", t)).transpose()?,
        after: q.cursor.as_deref().map(decode_cursor).transpose()?,
    };
    let page = state
        .service
        .audit_log()
        .audit_page(&caller.0, &filter, limit)
        .await?;
    Ok(Json(AuditEventsView {
        events: page.events.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(|c| encode_cursor(&c)),
    }))
}

/// The `action` schema of `/openapi.json`: the names the log records, taken
/// from the list the code records them with.
fn action_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some("An audit action: what was done."))
        .enum_values(Some(AuditAction::ALL.iter().map(|a| a.as_str())))
        .examples([AuditAction::SecretWrite.as_str()])
        .build()
}

fn known_action(name: &str) -> Result<AuditAction, ApiError> {
    AuditAction::from_name(name).ok_or_else(|| {
        ApiError::invalid(format!(
            "action {name:?} is not an audit action; the actions are: {}",
            AuditAction::names()
        ))
    })
}

fn time(field: &str, text: &str) -> Result<Micros, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|_| {
            ApiError::invalid(format!(
                "{field} must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"
            ))
        })
}

/// The cursor: where a page ended, `time:seq:chain`, in URL-safe base64.
fn encode_cursor((time, chain, seq): &(Micros, String, u64)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{time}:{seq}:{chain}"))
}

fn decode_cursor(text: &str) -> Result<(Micros, String, u64), ApiError> {
    let bad = || ApiError::invalid("cursor is not a next_cursor this server returned");
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some(time), Some(seq), Some(chain)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    Ok((
        time.parse().map_err(|_| bad())?,
        chain.to_owned(),
        // Seqs are stored as signed 64-bit integers.
        seq.parse::<i64>()
            .ok()
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(bad)?,
    ))
}
