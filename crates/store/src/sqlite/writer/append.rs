//! The audit append: a batch's events linked into the writer's chain and
//! inserted in its transaction, just before the commit.

use super::*;

/// Why the batch failed when its events could not be recorded (the
/// detail goes to the log; callers hear that the change was refused).
pub(super) fn audit_failed(e: StoreError) -> StoreError {
    tracing::error!(error = %e, "the audit log could not record a batch; refusing it");
    StoreError::unavailable("the audit log could not record the change; nothing was changed")
}

/// The audit log as the writer appends to it: the key, and its chain.
pub(super) struct Audit<'a> {
    pub(super) key: &'a AuditKey,
    pub(super) chain: &'a mut ChainSlot,
}

/// Links `events` to the writer's chain and inserts them in the open
/// transaction; the head they lead to (the chain's own is in doubt until
/// the commit). Any failure fails the batch: no change goes unrecorded.
pub(super) fn append_events(
    conn: &Connection,
    key: &AuditKey,
    chain: &mut ChainSlot,
    events: Vec<AuditEvent>,
) -> StoreResult<Option<tessera_core::audit::chain::ChainHead>> {
    let Some(key) = key.get()? else {
        return Ok(None);
    };
    let head = match chain.known_head() {
        Some(head) => head.clone(),
        None => {
            let last = conn
                .prepare_cached(
                    "SELECT seq, mac FROM audit_events WHERE chain = ?1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([chain.id()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            chain.head_from(last)?
        }
    };
    let (linked, head) = chain.link(key, head, events)?;
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO audit_events ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        crate::audit::EVENT_COLUMNS
    ))?;
    for s in &linked {
        let e = &s.event;
        insert.execute(rusqlite::params![
            e.chain,
            seq_col(e.seq)?,
            e.time,
            e.actor_key,
            e.actor_type,
            e.actor_user,
            e.org_id,
            e.team_id,
            e.action,
            e.target_id,
            e.target_name,
            e.result,
            e.request_id,
            e.client,
            e.detail,
            &s.mac[..],
        ])?;
    }
    Ok(Some(head))
}
