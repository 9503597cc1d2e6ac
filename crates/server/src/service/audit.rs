//! Drafting audit events. The service knows who acted and what they did;
//! the request's id and client address come from the HTTP layer through a
//! task-local [`RequestContext`] (set around every handler by
//! `api::trace`), so use cases need no extra parameters for them. The store
//! links each event into a chain in the transaction of the change.

use super::{Service, ServiceResult};
use crate::audit::event::AuditEvent;
use crate::domain::access::{Principal, TeamGrant};
use crate::domain::audit_action::AuditAction;
use crate::domain::time::now_micros;

/// The request being served, as far as the audit log cares.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub client: Option<String>,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Runs `fut` with `ctx` as the current request.
pub async fn within<F: std::future::Future>(ctx: RequestContext, fut: F) -> F::Output {
    REQUEST.scope(ctx, fut).await
}

fn current() -> RequestContext {
    REQUEST.try_with(Clone::clone).unwrap_or_default()
}

/// What an event is about.
pub struct Target<'a> {
    pub id: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn named(name: &'a str) -> Self {
        Self {
            id: None,
            name: Some(name),
        }
    }

    pub fn of(id: &'a str, name: &'a str) -> Self {
        Self {
            id: Some(id),
            name: Some(name),
        }
    }
}

impl Service {
    /// An event of `p` doing `action` in `team` (see [`event`]).
    pub(crate) fn event(
        &self,
        p: &Principal,
        action: AuditAction,
        team: Option<&dyn TeamGrant>,
        target: Target<'_>,
        detail: Option<String>,
    ) -> AuditEvent {
        event(p, action, team, target, detail)
    }

    /// An event of the server itself (a scheduled job).
    pub(crate) fn system_event(&self, action: AuditAction) -> AuditEvent {
        system_event(action)
    }
}

/// An event of `p` doing `action` in `team` (successfully: the store
/// records it only with the change).
pub(crate) fn event(
    p: &Principal,
    action: AuditAction,
    team: Option<&dyn TeamGrant>,
    target: Target<'_>,
    detail: Option<String>,
) -> AuditEvent {
    let request = current();
    AuditEvent {
        chain: String::new(),
        seq: 0,
        time: now_micros(),
        actor_key: Some(p.key_prefix.clone()),
        actor_type: Some(p.key_type.to_string()),
        actor_user: p.user_id().map(str::to_owned).or(p.created_by.clone()),
        org_id: Some(p.org_id.clone()),
        team_id: team.map(|t| t.team_id().to_owned()),
        action: action.as_str().to_owned(),
        target_id: target.id.map(str::to_owned),
        target_name: target.name.map(str::to_owned),
        result: "ok".to_owned(),
        request_id: request.request_id,
        client: request.client,
        detail,
    }
}

/// An event of the server or an operator's local command (no API key).
pub(crate) fn system_event(action: AuditAction) -> AuditEvent {
    AuditEvent {
        chain: String::new(),
        seq: 0,
        time: now_micros(),
        actor_key: None,
        actor_type: Some("SYSTEM".to_owned()),
        actor_user: None,
        org_id: None,
        team_id: None,
        action: action.as_str().to_owned(),
        target_id: None,
        target_name: None,
        result: "ok".to_owned(),
        request_id: None,
        client: None,
        detail: None,
    }
}

impl Service {
    /// Records failed authentications, already summed up per client
    /// address and interval: `(client, failures, reasons)`.
    pub async fn record_auth_failures(
        &self,
        summaries: Vec<(Option<String>, u64, String)>,
    ) -> ServiceResult<()> {
        if !self.limits.audit_log {
            return Ok(());
        }
        let events = summaries
            .into_iter()
            .map(|(client, failures, reasons)| {
                let mut e = system_event(AuditAction::AuthFailed);
                e.actor_type = None;
                e.result = "denied".to_owned();
                e.client = Some(client.unwrap_or_else(|| "other".to_owned()));
                e.detail = Some(
                    serde_json::json!({ "failures": failures, "reasons": reasons }).to_string(),
                );
                e
            })
            .collect();
        Ok(self.store.append_audit(events).await?)
    }
}
