//! Assembles the service and the router; used by `serve` and by the tests.

use crate::api::throttle::{ThrottleSettings, Throttles};
use crate::api::{self, AppState};
use crate::config::StoreArgs;
use crate::crypto::master_key::{self, MasterKeySource};
use crate::crypto::Keyring;
use crate::service::bootstrap;
use crate::service::{Limits, Service};
use crate::store::{self, DynStore};
use anyhow::Context;
use axum::Router;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// Opens the store, loads the master key and checks it against the data.
pub async fn open_service(args: &StoreArgs) -> anyhow::Result<Service> {
    open_service_with_key(args, None).await
}

/// [`open_service`] with the master key already loaded (by the start's
/// checks), or `None` to load it here.
pub async fn open_service_with_key(
    args: &StoreArgs,
    loaded: Option<master_key::MasterKey>,
) -> anyhow::Result<Service> {
    if args.sqlite_in_data_dir() {
        crate::datadir::ensure_data_dir(&args.data_dir)?;
    }
    let store = store::open_with(&args.database_url(), &args.open_options())
        .await
        .context("opening the store")?;
    let source = args.master_key_source();
    let (key, created) = match (&source, loaded) {
        (MasterKeySource::File { path, create: true }, loaded) => {
            let missing = loaded.is_none() && !path.exists();
            if missing {
                refuse_new_key_for_existing_data(store.as_ref(), path).await?;
            }
            // The key lives in the data directory: whoever can write there
            // can swap it, so the directory must be private too.
            crate::datadir::ensure_data_dir(&args.data_dir)?;
            match loaded {
                Some(key) => (key, false),
                None if missing => (master_key::create_key_file(path)?, true),
                None => (master_key::load(&source)?, false),
            }
        }
        (_, Some(key)) => (key, false),
        (_, None) => (master_key::load(&source)?, false),
    };
    let keyring = Arc::new(Keyring::new(&key));
    drop(key);
    if let Err(e) = bootstrap::check_master_key(store.as_ref(), &keyring).await {
        // Do not leave a freshly generated, useless key file behind (another
        // node recorded its own key for a new database at the same moment).
        if let (true, MasterKeySource::File { path, .. }) = (created, &source) {
            let _ = std::fs::remove_file(path);
        }
        return Err(e.into());
    }
    service_from_parts(store, keyring, args.limits()).await
}

/// The default key file is missing. A new, empty store gets a new key; a
/// store that holds data was sealed under a key that is not here, and a new
/// one could never open it.
async fn refuse_new_key_for_existing_data(
    store: &dyn store::Store,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let keks = store.keks().await?;
    let organizations = store.organization_count().await?;
    if keks.is_empty() && organizations == 0 {
        return Ok(());
    }
    let ids: Vec<&str> = keks.iter().map(|k| k.kek_id.as_str()).collect();
    Err(missing_key_for_existing_data(path, &ids))
}

/// The refusal when the default key file is missing for a store that holds
/// data sealed under the key ids `ids`.
pub fn missing_key_for_existing_data(path: &std::path::Path, ids: &[&str]) -> anyhow::Error {
    anyhow::anyhow!(
        "the master key file {path} is missing, but this store already holds data sealed under master key {ids}. \
         Put that key file back (or point --master-key-file or TESSERA_MASTER_KEY at the key). \
         No new key was generated: it could not open the data that is there.",
        path = path.display(),
        ids = if ids.is_empty() { "(unrecorded)".to_owned() } else { ids.join(", ") },
    )
}

/// A service over an already opened store and a verified master key (also
/// used by tests and tools).
pub async fn service_from_parts(
    store: DynStore,
    keyring: Arc<Keyring>,
    limits: Limits,
) -> anyhow::Result<Service> {
    let fingerprints = bootstrap::load_fingerprinter(store.as_ref(), &keyring)
        .await
        .context("loading the fingerprint key")?;
    let chain = bootstrap::load_audit_key(store.as_ref(), &keyring)
        .await
        .context("loading the audit key")?;
    let signer = bootstrap::load_checkpoint_signer(store.as_ref(), &keyring)
        .await
        .context("loading the audit checkpoint key")?;
    let audit_keys = crate::service::audit_log::AuditKeys {
        chain: Arc::new(chain),
        signer: Arc::new(signer),
    };
    Ok(Service::new(
        store,
        keyring,
        fingerprints,
        audit_keys,
        limits,
    ))
}

/// The router plus the shared state (for flushing on shutdown), with the
/// default throttling settings.
pub fn build(service: Service) -> (Router, Arc<AppState>) {
    build_with(service, ThrottleSettings::default())
}

/// The router plus the shared state. `state.shutdown` is the token to hand
/// to `crate::net::serve` (and to cancel on a signal).
pub fn build_with(service: Service, throttles: ThrottleSettings) -> (Router, Arc<AppState>) {
    let state = Arc::new(AppState {
        service,
        metrics: api::metrics::handle(),
        openapi: OnceLock::new(),
        throttles: Throttles::new(throttles),
        waiters: Default::default(),
        listings: Default::default(),
        shutdown: CancellationToken::new(),
    });
    spawn_usage_flusher(Arc::downgrade(&state));
    spawn_purger(Arc::downgrade(&state));
    spawn_throttle_sweeper(Arc::downgrade(&state));
    spawn_event_listener(&state);
    answer_waiters_on_shutdown(&state);
    (api::router(state.clone()), state)
}

/// Long-polling workloads answer at once when shutdown begins, instead of
/// holding it up.
fn answer_waiters_on_shutdown(state: &Arc<AppState>) {
    let token = state.shutdown.clone();
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        token.cancelled().await;
        if let Some(state) = state.upgrade() {
            state.service.begin_shutdown();
        }
    });
}

/// Applies other nodes' changes (PostgreSQL) until the app is dropped.
fn spawn_event_listener(state: &Arc<AppState>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    state.service.listen(tx);
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let Some(state) = state.upgrade() else { break };
            state.service.apply_store_event(event).await;
        }
    });
}

pub fn router(service: Service) -> Router {
    build(service).0
}

/// Writes batched `last_used_at` updates about once a second until the app
/// is dropped.
fn spawn_usage_flusher(state: std::sync::Weak<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::service::usage::FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            if let Err(e) = state.service.identity().flush_usage().await {
                tracing::warn!(error = %e, "could not record API key usage; will retry");
            }
            if let Err(e) = state.service.flush_consumers().await {
                tracing::warn!(error = %e, "could not record who holds which versions; will retry");
            }
            if let Err(e) = state.service.flush_read_summaries(false).await {
                tracing::warn!(error = %e, "could not record the counts of repeated reads; will retry");
            }
        }
    });
}

/// How often the purge job looks for deleted secrets past their retention.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the purge job (see `Service::purge_expired`) until the app is
/// dropped. Every node runs it; running it twice is harmless. (The audit
/// log is pruned by the checkpoint exporter, `cli::checkpoint_export`,
/// which ships each pruning anchor before the events go.)
fn spawn_purger(state: std::sync::Weak<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            let now = crate::domain::time::now_micros();
            if let Err(e) = state.service.purge_expired(now).await {
                tracing::warn!(error = %e, "the purge of deleted secrets failed; will retry");
            }
        }
    });
}

/// Logs pending authentication-failure summaries and forgets idle
/// throttling state every few seconds until the app is dropped.
fn spawn_throttle_sweeper(state: std::sync::Weak<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            state.throttles.sweep();
            if let Err(e) = record_auth_failures(&state).await {
                tracing::warn!(error = %e, "could not record failed authentications in the audit log");
            }
        }
    });
}

/// Writes the failed-authentication summaries logged since the last call to
/// the audit log (one event per log line: bounded per minute whatever the
/// number of failures). Also called by tests.
pub async fn record_auth_failures(state: &AppState) -> Result<(), crate::service::ServiceError> {
    let summaries = state.throttles.take_auth_failure_summaries();
    if summaries.is_empty() {
        return Ok(());
    }
    let failures = summaries
        .into_iter()
        .map(|s| (s.client.map(|a| a.to_string()), s.failures, s.reasons))
        .collect();
    state.service.record_auth_failures(failures).await
}
