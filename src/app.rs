//! Assembles the service and the router; used by `serve` and by the tests.

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

/// Opens the store, loads the master key and checks it against the data.
pub async fn open_service(args: &StoreArgs) -> anyhow::Result<Service> {
    if args.sqlite_in_data_dir() {
        crate::datadir::ensure_data_dir(&args.data_dir)?;
    }
    let store = store::open(&args.database_url())
        .await
        .context("opening the store")?;
    let source = args.master_key_source();
    let (key, created) = match &source {
        MasterKeySource::File { path, create: true } => {
            let missing = !path.exists();
            if missing {
                refuse_new_key_for_existing_data(store.as_ref(), path).await?;
            }
            // The key lives in the data directory: whoever can write there
            // can swap it, so the directory must be private too.
            crate::datadir::ensure_data_dir(&args.data_dir)?;
            if missing {
                (master_key::create_key_file(path)?, true)
            } else {
                (master_key::load(&source)?, false)
            }
        }
        _ => (master_key::load(&source)?, false),
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
    Ok(Service::new(store, keyring, args.limits()))
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
    anyhow::bail!(
        "the master key file {path} is missing, but this store already holds data sealed under master key {ids}. \
         Put that key file back (or point --master-key-file or TESSERA_MASTER_KEY at the key). \
         No new key was generated: it could not open the data that is there.",
        path = path.display(),
        ids = if ids.is_empty() { "(unrecorded)".to_owned() } else { ids.join(", ") },
    )
}

/// A service over an already opened store and key (tests, tools).
pub fn service_from_parts(store: DynStore, keyring: Arc<Keyring>, limits: Limits) -> Service {
    Service::new(store, keyring, limits)
}

/// The router plus the shared state (for flushing on shutdown).
pub fn build(service: Service) -> (Router, Arc<AppState>) {
    let state = Arc::new(AppState {
        service,
        metrics: api::metrics::handle(),
        openapi: OnceLock::new(),
    });
    spawn_usage_flusher(Arc::downgrade(&state));
    (api::router(state.clone()), state)
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
            if let Err(e) = state.service.flush_usage().await {
                tracing::warn!(error = %e, "could not record API key usage; will retry");
            }
        }
    });
}
