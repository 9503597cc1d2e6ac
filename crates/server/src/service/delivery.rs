//! Workload delivery: the one path on which values leave the server.
//!
//! Only WORKSPACE_READ_SECRETS keys get here (decided in
//! [`crate::domain::access::authorize_delivery`]). Every answer opens the
//! ciphertexts anew (no plaintext is kept between requests), and every read
//! that returns values is recorded by [`Service::record_read`].

use super::audit::Target;
use super::consumers::Received;
use super::delivery_stream::{FirstRead, StreamSlot};
use super::read_fold::Content;
use super::{Service, ServiceError, ServiceResult, TeamRef};
use crate::domain::access::{authorize_delivery, delivery_access, DeliveryAccess, Principal};
use crate::domain::audit_action::AuditAction;
use crate::domain::secret_value::SecretValue;
use crate::domain::time::Micros;
use crate::store::{StoreEvent, StoredSecret};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The longest a long poll may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

pub use tessera_wire::runtime::HOLDS_HEADER;

/// What a client says it holds ([`HOLDS_HEADER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Nothing new since it last said: record only that it asked.
    Nothing,
    /// Everything this revision of its scope held. Recorded when it is the
    /// current revision (the one whose versions the server knows); an older
    /// claim leaves the consumer's last recorded versions as they are.
    Revision(i64),
}

/// Who is reading, for the record.
#[derive(Debug, Clone, Default)]
pub struct ReadContext {
    /// The client's address as the server saw it.
    pub client: Option<String>,
    /// The agent instance the client named (`X-Tessera-Agent`), so that
    /// several agents sharing a key are told apart.
    pub instance: Option<String>,
    /// What kind of consumer it says it is (`X-Tessera-Consumer-Kind`).
    pub kind: crate::domain::consumer_kind::ConsumerKind,
    /// What the client says it holds. Absent: what it is sent counts as
    /// held (a client that uses the values at once, like `tessera run`).
    pub holds: Option<Holds>,
}

/// One secret as a workload receives it.
pub struct DeliveredSecret {
    /// The secret's id (for the record of who holds what; not sent).
    pub id: String,
    pub name: String,
    pub canonical_name: String,
    pub value: SecretValue,
    pub version: i64,
    pub updated_at: Micros,
    pub fingerprint: String,
}

/// Every secret in a key's scope, at one revision of its team.
pub struct Delivery {
    pub revision: i64,
    pub secrets: Vec<DeliveredSecret>,
    /// The answer as sent, rendered once by the HTTP layer for every waiter
    /// that shares this delivery (see [`Service::deliver_when_changed`]).
    pub rendered: std::sync::OnceLock<bytes::Bytes>,
    /// A large scope's answer, streamed page by page (`delivery_stream.rs`);
    /// `secrets` then holds the scope's names and versions for the record,
    /// without values.
    pub stream: Option<StreamSlot>,
}

impl Delivery {
    pub(super) fn streamed(
        revision: i64,
        secrets: Vec<DeliveredSecret>,
        stream: StreamSlot,
    ) -> Self {
        Self {
            revision,
            secrets,
            rendered: std::sync::OnceLock::new(),
            stream: Some(stream),
        }
    }
}

/// The outcome of a long poll.
pub enum Poll {
    /// The team moved past the revision the client holds.
    Changed(Arc<Delivery>),
    /// Nothing changed within the wait (or the server is shutting down).
    Unchanged { revision: i64 },
    /// It would have answered at once, but the key's request rate is spent
    /// (retry after this many seconds).
    RateLimited { retry_after: u64 },
}

impl Service {
    async fn delivery_grant(&self, p: &Principal) -> ServiceResult<DeliveryAccess> {
        let team_id = authorize_delivery(p)?;
        let team = self.identity.load_team(p, TeamRef::Id(team_id)).await?;
        Ok(delivery_access(p, &team)?)
    }

    /// Every value in the caller's scope, with the team's revision.
    pub async fn deliver(&self, p: &Principal, ctx: &ReadContext) -> ServiceResult<Delivery> {
        let grant = self.delivery_grant(p).await?;
        let delivery = self.open_snapshot(&grant, None).await?;
        self.record_read(p, &grant, &delivery.secrets, Some(delivery.revision), ctx)
            .await?;
        if ctx.holds == Some(Holds::Revision(delivery.revision)) {
            self.consumers.received(
                &consumer(p, &grant, ctx, Some(delivery.revision)),
                delivery.secrets.iter().map(|s| (s.id.as_str(), s.version)),
            );
        }
        Ok(delivery)
    }

    /// The team's secrets as stored (ciphertexts), at its current revision,
    /// or the first page of them when they do not fit in one.
    /// A snapshot read earlier is used again while the team's revision reads
    /// the same (one primary-key read instead of every row): revisions only
    /// grow and move in the same transaction as any change, on every node.
    /// Only ciphertexts are kept; each answer still decrypts.
    /// `current`: the team's revision, when the caller has just read it.
    pub(super) async fn sealed_snapshot(
        &self,
        grant: &DeliveryAccess,
        current: Option<i64>,
    ) -> ServiceResult<FirstRead> {
        let team_id = grant.team().team_id();
        if self.sealed_snapshots.holds(team_id) {
            let current = match current {
                Some(revision) => revision,
                None => self.store.team_revision(grant.team()).await?,
            };
            if let Some(known) = self.sealed_snapshots.at(team_id, current) {
                return Ok(FirstRead::Whole(known));
            }
        }
        let first = self.first_read(grant).await?;
        if let FirstRead::Whole(snapshot) = &first {
            self.sealed_snapshots.put(team_id, snapshot.clone());
        }
        Ok(first)
    }

    /// Reads and opens the grant's secrets (not recorded: the caller does);
    /// `current` as for [`Self::sealed_snapshot`].
    async fn open_snapshot(
        &self,
        grant: &DeliveryAccess,
        current: Option<i64>,
    ) -> ServiceResult<Delivery> {
        let snapshot = match self.sealed_snapshot(grant, current).await? {
            FirstRead::Whole(snapshot) => snapshot,
            FirstRead::Large(first) => return self.streamed_delivery(grant, first).await,
        };
        let secrets = snapshot
            .secrets
            .iter()
            .filter(|s| grant.allows(&s.record.canonical_name))
            .map(|s| self.open_stored(s))
            .collect::<ServiceResult<Vec<_>>>()?;
        Ok(Delivery {
            revision: super::scope_revision::scope_revision(grant, &snapshot),
            secrets,
            rendered: std::sync::OnceLock::new(),
            stream: None,
        })
    }

    /// The delivery for waiters of one key woken by one change: the first
    /// of them reads and opens it, the others (woken at the same moment)
    /// share that answer instead of each decrypting the same values. It
    /// lives while some of them are still being answered, and is dropped
    /// (its plaintext wiped) with the last; a later request decrypts anew.
    async fn shared_delivery(
        &self,
        grant: &DeliveryAccess,
        key_prefix: &str,
        woken_at: i64,
    ) -> ServiceResult<Arc<Delivery>> {
        let cell = {
            let mut building = self.building.lock();
            building.retain(|_, cell| cell.strong_count() > 0);
            let slot = (key_prefix.to_owned(), woken_at);
            match building.get(&slot).and_then(std::sync::Weak::upgrade) {
                Some(cell) => cell,
                None => {
                    let cell = Arc::new(tokio::sync::OnceCell::new());
                    building.insert(slot, Arc::downgrade(&cell));
                    cell
                }
            }
        };
        let shared = cell
            .get_or_try_init(|| async { self.open_snapshot(grant, None).await.map(Arc::new) })
            .await?
            .clone();
        match &shared.stream {
            // A streamed answer is one client's: the others read their own.
            Some(stream) if !stream.claim() => self.open_snapshot(grant, None).await.map(Arc::new),
            _ => Ok(shared),
        }
    }

    /// One value by any spelling of its name; not found when it does not
    /// exist or lies outside a narrowed key's names (alike).
    pub async fn deliver_one(
        &self,
        p: &Principal,
        name: &str,
        ctx: &ReadContext,
    ) -> ServiceResult<DeliveredSecret> {
        let grant = self.delivery_grant(p).await?;
        let name = self.parse_secret_name(name)?;
        let not_found = || ServiceError::NotFound(format!("no secret named {:?}", name.as_str()));
        if !grant.allows(name.canonical()) {
            return Err(not_found());
        }
        let stored = self
            .store
            .latest_secret(grant.team(), name.canonical())
            .await?
            .ok_or_else(not_found)?;
        let secret = self.open_stored(&stored)?;
        self.record_read(p, &grant, std::slice::from_ref(&secret), None, ctx)
            .await?;
        Ok(secret)
    }

    /// The long poll: answers as soon as the team's revision differs from
    /// `held`, otherwise after `wait` with [`Poll::Unchanged`]. While it
    /// waits it makes no store query; it wakes on a write to its team, on an
    /// identity change (and then re-checks the key: a revoked key ends with
    /// 401), or on shutdown. `spend` takes one of the key's request tokens
    /// when it answers at once (a long poll that waits spends none).
    pub async fn deliver_when_changed(
        &self,
        authorization: Option<&str>,
        p: Arc<Principal>,
        held: i64,
        wait: Duration,
        ctx: &ReadContext,
        spend: impl FnOnce() -> Result<(), u64> + Send,
    ) -> ServiceResult<Poll> {
        let grant = self.delivery_grant(&p).await?;
        // Subscribe before reading the revision, so a write landing between
        // the two still wakes this waiter.
        let mut sub = self.notifier.subscribe(grant.team().team_id());
        let team_now = self.store.team_revision(grant.team()).await?;
        // The scope's revision: the team's, or for a narrowed key one that
        // moves only with its names (see `scope_revision.rs`).
        let (current, mut team_at) = self.scope_revision_at(&grant, team_now).await?;
        self.note_held(&p, &grant, ctx, current, team_at).await?;
        if current != held {
            if let Err(retry_after) = spend() {
                return Ok(Poll::RateLimited { retry_after });
            }
            let delivery = self.open_snapshot(&grant, Some(team_at)).await?;
            self.record_read(&p, &grant, &delivery.secrets, Some(delivery.revision), ctx)
                .await?;
            return Ok(Poll::Changed(Arc::new(delivery)));
        }
        // It still holds what it received: seen now, holding the same.
        self.consumers.seen(&consumer(&p, &grant, ctx, None));
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let woken_at;
        loop {
            if self.notifier.is_shutting_down() {
                return Ok(Poll::Unchanged { revision: held });
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ok(Poll::Unchanged { revision: held }),
                changed = sub.revision.changed() => {
                    if changed.is_err() {
                        // The team's channel was replaced; nothing was missed
                        // that the final re-read below would not show.
                        woken_at = team_at;
                        break;
                    }
                    let published = *sub.revision.borrow_and_update();
                    if published > team_at {
                        // The team moved; did the key's scope? A write
                        // outside it neither wakes nor is recorded.
                        // Boxed: only a woken waiter pays for this state,
                        // not every idle one.
                        let (scope, read_at) =
                            Box::pin(self.scope_revision_at(&grant, published)).await?;
                        team_at = team_at.max(read_at);
                        if scope != held {
                            woken_at = published;
                            break;
                        }
                    }
                }
                _ = sub.identity.changed() => {
                    // Keys, users or teams were deleted somewhere: is this
                    // key still good?
                    let again = self.identity.authenticate(authorization).await?;
                    self.delivery_grant(&again).await?;
                }
                _ = sub.shutdown.changed() => return Ok(Poll::Unchanged { revision: held }),
            }
        }
        // A change: answer for the key as it stands now.
        let p = self.identity.authenticate(authorization).await?;
        let grant = self.delivery_grant(&p).await?;
        let delivery = self
            .shared_delivery(&grant, &p.key_prefix, woken_at)
            .await?;
        self.record_read(&p, &grant, &delivery.secrets, Some(delivery.revision), ctx)
            .await?;
        Ok(Poll::Changed(delivery))
    }

    /// Records what a client says it holds ([`Holds::Revision`]) when that
    /// is the current scope revision (`team_at` is the team's): its
    /// versions are those of the team's current snapshot (read only when
    /// this consumer was not already known to hold it).
    async fn note_held(
        &self,
        p: &Principal,
        grant: &DeliveryAccess,
        ctx: &ReadContext,
        current: i64,
        team_at: i64,
    ) -> ServiceResult<()> {
        if ctx.holds != Some(Holds::Revision(current)) {
            return Ok(());
        }
        let holder = consumer(p, grant, ctx, Some(current));
        if self.consumers.holds_revision(&holder) {
            return Ok(());
        }
        // Names and versions only: never a large team's values.
        if let Some(versions) = self.scope_versions(grant, team_at).await? {
            self.consumers
                .received(&holder, versions.iter().map(|(id, v)| (id.as_str(), *v)));
        }
        Ok(())
    }

    pub(super) fn open_stored(&self, stored: &StoredSecret) -> ServiceResult<DeliveredSecret> {
        let value = self.open_value(stored)?;
        let r = &stored.record;
        // Looked up only once the value has opened at this place: the
        // version (and version id) it was sealed for are authenticated.
        let version = (r.id.clone(), r.version, stored.version_id.clone());
        let fingerprint = match self.known_fingerprints.get(&version) {
            Some(known) => known.as_str().to_owned(),
            None => {
                let f = self
                    .fingerprints
                    .fingerprint(&r.org_id, &r.team_id, &version.0, &value);
                self.known_fingerprints.put(version, Arc::new(f.clone()));
                f
            }
        };
        Ok(DeliveredSecret {
            id: r.id.clone(),
            name: r.name.clone(),
            canonical_name: r.canonical_name.clone(),
            value,
            version: r.version,
            updated_at: r.updated_at,
            fingerprint,
        })
    }

    /// The record of one read that returned values: who, which names and
    /// versions, when, from where. Never a value or a fingerprint. The
    /// first read of a content by a key is an audit event, durable before
    /// this returns (no value is sent unrecorded); later reads of the same
    /// content are counted (see `read_fold.rs`).
    pub async fn record_read(
        &self,
        p: &Principal,
        grant: &DeliveryAccess,
        secrets: &[DeliveredSecret],
        revision: Option<i64>,
        ctx: &ReadContext,
    ) -> ServiceResult<()> {
        let team_id = grant.team().team_id();
        let reader = consumer(p, grant, ctx, revision);
        if ctx.holds.is_some() {
            // It says what it holds once it has applied it (see `note_held`).
            self.consumers.seen(&reader);
        } else {
            self.consumers
                .received(&reader, secrets.iter().map(|s| (s.id.as_str(), s.version)));
        }
        // No team label: its values would grow with tenants, and show them.
        metrics::counter!("tessera_runtime_reads_total").increment(1);
        let content = match (secrets, revision) {
            ([one], None) => Content::One(one.id.clone(), one.version),
            (_, revision) => Content::Scope(revision.unwrap_or(-1)),
        };
        let cell = self.read_fold.read(&p.key_prefix, team_id, content.clone());
        let appended = std::sync::atomic::AtomicBool::new(false);
        cell.get_or_try_init(|| async {
            appended.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                target: "tessera::audit",
                action = AuditAction::SecretsRead.as_str(),
                key_prefix = %p.key_prefix,
                team_id,
                secrets = %NamesAndVersions(secrets),
                client = ctx.client.as_deref().unwrap_or("-"),
                instance = ctx.instance.as_deref().unwrap_or("-"),
                "runtime read"
            );
            if !self.limits.audit_log {
                return Ok::<_, ServiceError>(());
            }
            let event = self.read_event(p, grant, secrets, revision, ctx);
            self.store.append_audit(vec![event.clone()]).await?;
            self.read_fold
                .recorded(&p.key_prefix, team_id, content.clone(), event);
            Ok(())
        })
        .await?;
        if !appended.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(
                target: "tessera::audit",
                key_prefix = %p.key_prefix,
                team_id,
                client = ctx.client.as_deref().unwrap_or("-"),
                instance = ctx.instance.as_deref().unwrap_or("-"),
                "runtime read of content already recorded (counted)"
            );
            self.read_fold.repeated(&p.key_prefix, team_id, content);
        }
        Ok(())
    }

    /// The audit event of a read: a scope's names the scope revision it
    /// returned (which fixes every name and version in the key's scope);
    /// one secret's, its version.
    fn read_event(
        &self,
        p: &Principal,
        grant: &DeliveryAccess,
        secrets: &[DeliveredSecret],
        revision: Option<i64>,
        ctx: &ReadContext,
    ) -> crate::audit::event::AuditEvent {
        let (target, mut detail) = match (secrets, revision) {
            ([one], None) => (
                Target::of(&one.id, &one.name),
                serde_json::json!({ "version": one.version }),
            ),
            (_, revision) => (
                Target {
                    id: None,
                    name: None,
                },
                serde_json::json!({ "revision": revision, "secrets": secrets.len() }),
            ),
        };
        if let Some(instance) = &ctx.instance {
            detail["instance"] = instance.as_str().into();
        }
        self.event(
            p,
            AuditAction::SecretsRead,
            Some(grant.team()),
            target,
            Some(detail.to_string()),
        )
    }

    /// Applies what another node changed (see [`crate::store::Store::listen`]).
    pub async fn apply_store_event(&self, event: StoreEvent) {
        match event {
            StoreEvent::Revision { team_id, revision } => self.notifier.publish(&team_id, revision),
            StoreEvent::IdentityChanged => self.identity.identity_changed(),
            StoreEvent::Resync => {
                // Changes made while nobody listened: re-read the revisions
                // of the teams that have waiters, and re-check every key.
                self.identity.identity_changed();
                let teams = self.notifier.watched_teams();
                if teams.is_empty() {
                    return;
                }
                match self.store.team_revisions(teams).await {
                    Ok(revisions) => {
                        for (team_id, revision) in revisions {
                            self.notifier.publish(&team_id, revision);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not catch up on team revisions")
                    }
                }
            }
        }
    }

    /// Answers every waiter now (shutdown).
    pub fn begin_shutdown(&self) {
        self.notifier.shut_down();
    }
}

/// `name@version, …` for the log.
struct NamesAndVersions<'a>(&'a [DeliveredSecret]);

impl fmt::Display for NamesAndVersions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}@{}", s.name, s.version)?;
        }
        Ok(())
    }
}

/// A delivery's consumer: the key and the agent instance it names.
fn consumer<'a>(
    p: &'a Principal,
    grant: &'a DeliveryAccess,
    ctx: &'a ReadContext,
    revision: Option<i64>,
) -> Received<'a> {
    Received {
        key_prefix: &p.key_prefix,
        instance: ctx.instance.as_deref().unwrap_or(""),
        team_id: grant.team().team_id(),
        client: ctx.client.as_deref(),
        kind: ctx.kind,
        at: crate::domain::time::now_micros(),
        revision,
    }
}
