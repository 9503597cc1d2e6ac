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
    let store = store::open(&args.database_url())
        .await
        .context("opening the store")?;
    let source = args.master_key_source();
    let created = matches!(&source, MasterKeySource::File { path, create: true } if !path.exists());
    let key = master_key::load(&source)?;
    let keyring = Arc::new(Keyring::new(&key));
    drop(key);
    if let Err(e) = bootstrap::check_master_key(store.as_ref(), &keyring).await {
        // Do not leave a freshly generated, useless key file behind.
        if let (true, MasterKeySource::File { path, .. }) = (created, &source) {
            let _ = std::fs::remove_file(path);
        }
        return Err(e.into());
    }
    Ok(Service::new(store, keyring, args.limits()))
}

/// A service over an already opened store and key (tests, tools).
pub fn service_from_parts(store: DynStore, keyring: Arc<Keyring>, limits: Limits) -> Service {
    Service::new(store, keyring, limits)
}

pub fn router(service: Service) -> Router {
    let state = Arc::new(AppState {
        service,
        metrics: api::metrics::handle(),
        openapi: OnceLock::new(),
    });
    api::router(state)
}
