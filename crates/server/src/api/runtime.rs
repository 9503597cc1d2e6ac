//! Runtime routes (`/runtime/v1/…`): where workloads receive values.
//!
//! Only WORKSPACE_READ_SECRETS keys are served here, and that key type is
//! refused everywhere else. The long poll is a conditional GET: the client
//! sends the revision it holds as `If-None-Match: "<revision>"` and how long
//! it is willing to wait as `?wait=<seconds>` (at most 60); the answer is a
//! `200` with every value as soon as the team's revision differs, or a `304`
//! with the same `ETag` when nothing changed within the wait.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Caller, PathParams, QueryParams, Reader, UnmeteredCaller};
use super::views::Timestamp;
use super::waiters::{self, LongPollOrigin};
use super::AppState;
use crate::service::delivery::{DeliveredSecret, Delivery, Holds, Poll, HOLDS_HEADER, MAX_WAIT};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use zeroize::Zeroizing;

/// Every secret a workload key may read, at one revision of its team.
#[derive(Serialize, ToSchema)]
pub struct RuntimeSecretsView<'a> {
    /// The team's revision these values belong to; also the `ETag`.
    pub revision: i64,
    pub secrets: Vec<RuntimeSecretView<'a>>,
}

/// One secret with its value.
#[derive(Serialize, ToSchema)]
pub struct RuntimeSecretView<'a> {
    /// The spelling the secret was created with.
    pub name: &'a str,
    /// The name with every character other than letters and digits as `_`.
    pub canonical_name: &'a str,
    pub value: &'a str,
    pub version: i64,
    /// RFC 3339, UTC.
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
    /// Keyed MAC of the value and the secret's identity: equal while the
    /// value is unchanged, and useless for guessing the value.
    pub fingerprint: &'a str,
}

/// One secret by name (the shape webhook-style consumers read `$.value` from).
#[derive(Serialize, ToSchema)]
pub struct RuntimeOneSecretView<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub version: i64,
    pub fingerprint: &'a str,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct WaitQuery {
    /// With `If-None-Match`: seconds to wait for a change before answering
    /// 304 (0 to 60; default 0).
    wait: Option<u64>,
}

/// Every value the key may read. With `If-None-Match` (the `ETag` of a
/// previous answer) and `wait`, a long poll: answers as soon as the team
/// changes, or 304 after the wait.
#[utoipa::path(get, path = "/runtime/v1/secrets", tag = "runtime", params(WaitQuery,
        ("If-None-Match" = Option<String>, Header, description = "The ETag the client holds, e.g. \"17\""),
        ("X-Tessera-Holds" = Option<String>, Header, description = "What the client holds, for the consumers view: `none`, or the ETag of an answer it applied in full. Without it, what is sent counts as held")),
    responses((status = 200, body = RuntimeSecretsView, headers(("ETag" = String))),
              (status = 304, description = "Unchanged within the wait", headers(("ETag" = String))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn fetch_secrets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UnmeteredCaller(caller): UnmeteredCaller,
    origin: LongPollOrigin,
    Reader(mut ctx): Reader,
    QueryParams(q): QueryParams<WaitQuery>,
) -> ApiResult<Response> {
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    if wait > MAX_WAIT {
        return Err(ApiError::invalid(format!(
            "wait must be between 0 and {} seconds",
            MAX_WAIT.as_secs()
        )));
    }
    let held = held_revision(&headers)?;
    ctx.holds = holds(&headers)?;
    let service = &state.service;
    let delivery = match held {
        None => {
            state.throttles.check_key(&caller)?;
            Arc::new(service.deliver(&caller, &ctx).await?)
        }
        Some(held) => {
            // A long poll spends a token only when it answers at once.
            let _waiting = if wait.is_zero() {
                state.throttles.check_key(&caller)?;
                None
            } else {
                let slot = state
                    .waiters
                    .enter(&caller.key_prefix, origin.client, origin.cap)
                    .map_err(waiters::too_many)?;
                Some(slot)
            };
            let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
            let spend = || {
                if wait.is_zero() {
                    Ok(())
                } else {
                    state.throttles.take_key_token(&caller)
                }
            };
            match service
                .deliver_when_changed(authorization, caller.clone(), held, wait, &ctx, spend)
                .await?
            {
                Poll::Changed(d) => d,
                Poll::Unchanged { revision } => return Ok(not_modified(revision)),
                Poll::RateLimited { retry_after } => {
                    return Err(state.throttles.key_limited(&caller, retry_after))
                }
            }
        }
    };
    Ok(scope_response(state, &delivery))
}

/// One value by any spelling of its name.
#[utoipa::path(get, path = "/runtime/v1/secrets/{secret_name}", tag = "runtime",
    params(("secret_name" = String, Path, description = "Any spelling with the same canonical form")),
    responses((status = 200, body = RuntimeOneSecretView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn fetch_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Reader(ctx): Reader,
    PathParams(name): PathParams<String>,
) -> ApiResult<Response> {
    let s = state.service.deliver_one(&caller.0, &name, &ctx).await?;
    let view = RuntimeOneSecretView {
        name: &s.name,
        value: s.value.expose(),
        version: s.version,
        fingerprint: &s.fingerprint,
    };
    Ok(private_json(&view, s.value.len() + 256, None))
}

/// The revision in `If-None-Match`: `"17"` (or weak, `W/"17"`).
fn held_revision(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(v) = headers.get(IF_NONE_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid(
            "If-None-Match must be the ETag of an earlier answer, like \"17\" (one value, no lists or *)",
        )
    };
    revision_in(v, bad).map(Some)
}

/// What the client says it holds ([`HOLDS_HEADER`]): `none` or an ETag.
fn holds(headers: &HeaderMap) -> ApiResult<Option<Holds>> {
    let Some(v) = headers.get(HOLDS_HEADER) else {
        return Ok(None);
    };
    if v.as_bytes().eq_ignore_ascii_case(b"none") {
        return Ok(Some(Holds::Nothing));
    }
    let bad = || {
        ApiError::invalid(format!(
            "{HOLDS_HEADER} must be `none` or the ETag of an answer the client applied, like \"17\""
        ))
    };
    revision_in(v, bad).map(|r| Some(Holds::Revision(r)))
}

/// The revision in one ETag.
fn revision_in(v: &HeaderValue, bad: impl Fn() -> ApiError) -> ApiResult<i64> {
    let text = v.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(&bad)?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    inner.parse().map_err(|_| bad())
}

fn etag(revision: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn not_modified(revision: i64) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    let h = resp.headers_mut();
    h.insert(ETAG, etag(revision));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The answer for a delivery, rendered once however many waiters share it
/// (the buffer is wiped when the last of them has been sent); a large
/// scope's, streamed (`runtime_stream.rs`).
fn scope_response(state: Arc<AppState>, d: &Delivery) -> Response {
    if let Some(cursor) = d.stream.as_ref().and_then(|s| s.take()) {
        let body = super::runtime_stream::body(state, cursor, d.revision);
        let mut resp = private_response(Bytes::new(), Some(d.revision));
        *resp.body_mut() = body;
        return resp;
    }
    let body = d.rendered.get_or_init(|| render_scope(d)).clone();
    private_response(body, Some(d.revision))
}

fn render_scope(d: &Delivery) -> Bytes {
    // Each entry's keys, version, time and fingerprint take under 176 bytes
    // besides its names and value; growing the buffer would copy (and wipe)
    // everything written so far.
    let capacity = d
        .secrets
        .iter()
        .map(|s| s.value.len() + s.name.len() + s.canonical_name.len() + 176)
        .sum::<usize>()
        + 64;
    let view = RuntimeSecretsView {
        revision: d.revision,
        secrets: d.secrets.iter().map(item).collect(),
    };
    wiped_json(&view, capacity)
}

pub(super) fn item(s: &DeliveredSecret) -> RuntimeSecretView<'_> {
    RuntimeSecretView {
        name: &s.name,
        canonical_name: &s.canonical_name,
        value: s.value.expose(),
        version: s.version,
        updated_at: Timestamp(s.updated_at),
        fingerprint: &s.fingerprint,
    }
}

/// JSON holding values, built in a buffer that is wiped when it grows and
/// when the last response using it has been sent.
fn wiped_json<T: Serialize>(value: &T, capacity: usize) -> Bytes {
    let mut buf = WipingBuf(Zeroizing::new(Vec::with_capacity(capacity)));
    // Serializing strings and integers into memory cannot fail.
    let _ = serde_json::to_writer(&mut buf, value);
    Bytes::from_owner(buf.0)
}

/// A JSON body holding values (see [`wiped_json`]), never cached by anyone.
fn private_json<T: Serialize>(value: &T, capacity: usize, revision: Option<i64>) -> Response {
    private_response(wiped_json(value, capacity), revision)
}

fn private_response(body: Bytes, revision: Option<i64>) -> Response {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(r) = revision {
        h.insert(ETAG, etag(r));
    }
    resp
}

/// A growable buffer that wipes the storage it leaves behind.
pub(super) struct WipingBuf(pub(super) Zeroizing<Vec<u8>>);

impl std::io::Write for WipingBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let needed = self.0.len() + data.len();
        if needed > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(2 * self.0.capacity())));
            bigger.extend_from_slice(&self.0);
            // The old storage is wiped as it is dropped here.
            self.0 = bigger;
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_parse_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(held_revision(&h).unwrap(), None);
        for (v, want) in [
            ("\"17\"", Some(17)),
            ("W/\"3\"", Some(3)),
            (" \"0\" ", Some(0)),
        ] {
            h.insert(IF_NONE_MATCH, HeaderValue::from_static(v));
            assert_eq!(held_revision(&h).unwrap(), want, "{v}");
        }
        for v in ["*", "17", "\"\"", "\"-1\"", "\"1\", \"2\"", "\"x\""] {
            h.insert(IF_NONE_MATCH, HeaderValue::from_static(v));
            assert!(held_revision(&h).is_err(), "{v}");
        }
    }

    #[test]
    fn holds_is_none_or_one_etag() {
        let mut h = HeaderMap::new();
        assert_eq!(holds(&h).unwrap(), None);
        for (v, want) in [("none", Holds::Nothing), ("\"5\"", Holds::Revision(5))] {
            h.insert(HOLDS_HEADER, HeaderValue::from_static(v));
            assert_eq!(holds(&h).unwrap(), Some(want), "{v}");
        }
        for v in ["", "5", "all", "\"5\", \"6\""] {
            h.insert(HOLDS_HEADER, HeaderValue::from_static(v));
            assert!(holds(&h).is_err(), "{v}");
        }
    }

    /// What the server writes is what the workload client reads
    /// (`tessera_wire::runtime`): the borrowed views here and the wire's
    /// owned types must not drift apart.
    #[test]
    fn the_runtime_body_reads_back_as_the_wire_type() {
        let view = RuntimeSecretsView {
            revision: 7,
            secrets: vec![RuntimeSecretView {
                name: "HF-token",
                canonical_name: "HF_token",
                value: "v\u{e9}\"1",
                version: 3,
                updated_at: Timestamp(1_700_000_000_000_000),
                fingerprint: "fp",
            }],
        };
        let json = serde_json::to_vec(&view).unwrap();
        let read: tessera_wire::runtime::SecretsBody<tessera_wire::runtime::SecretItem<String>> =
            serde_json::from_slice(&json).unwrap();
        assert_eq!(read.revision, 7);
        let s = &read.secrets[0];
        assert_eq!(
            (
                s.name.as_str(),
                s.canonical_name.as_str(),
                s.value.as_str(),
                s.version
            ),
            ("HF-token", "HF_token", "v\u{e9}\"1", 3)
        );
    }

    #[test]
    fn the_buffer_keeps_what_was_written_across_growth() {
        let mut b = WipingBuf(Zeroizing::new(Vec::with_capacity(2)));
        std::io::Write::write_all(&mut b, b"hello, ").unwrap();
        std::io::Write::write_all(&mut b, b"world").unwrap();
        assert_eq!(b.0.as_slice(), b"hello, world");
    }
}
