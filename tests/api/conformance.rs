//! The store's conformance suite (the kit in `crates/store-conformance`),
//! run on both engines: a fresh SQLite file and a fresh PostgreSQL schema per
//! case, so the engines cannot drift apart unnoticed. Tests are named
//! `conformance::<engine>::<aggregate>::<case>`; PostgreSQL's are announced
//! as skipped when no PostgreSQL is configured.

use crate::common::{Backend, Storage};
use tessera::store::DynStore;
use tessera_store_conformance::Engine;

pub use tessera_store_conformance::event;

/// A fresh, migrated store of `backend`, with the storage that must
/// outlive it; `None` when the engine is not configured.
async fn open(backend: Backend) -> Option<(Storage, DynStore)> {
    let storage = Storage::new(backend).await?;
    let store = tessera::store::open(&storage.database_url())
        .await
        .expect("open store");
    Some((storage, store))
}

pub struct Sqlite;

impl Engine for Sqlite {
    type Guard = Storage;

    async fn fresh(_test: &'static str) -> Option<(Storage, DynStore)> {
        Some(open(Backend::Sqlite).await.expect("SQLite storage"))
    }
}

pub struct Postgres;

impl Engine for Postgres {
    type Guard = Storage;

    async fn fresh(test: &'static str) -> Option<(Storage, DynStore)> {
        let opened = open(Backend::Postgres).await;
        if opened.is_none() {
            crate::common::announce_skip(test, &format!("{} is not set", crate::common::PG_ENV));
        }
        opened
    }
}

mod sqlite {
    tessera_store_conformance::engine_tests!(super::Sqlite);
}

mod postgres {
    tessera_store_conformance::engine_tests!(super::Postgres);
}
