//! The server: the service (what each request may do, and does), the HTTP
//! API on top of it, the configuration flags of `serve`, and `app`, which
//! assembles the service, the router and the network layer.
//!
//! Layers, lowest first: `tessera_core` (domain, crypto, audit),
//! `tessera_store`, then `service`, then `api`; `tessera_net` (connections)
//! sits beside `api` and never sees it; `app` joins them. The names below
//! let this crate's modules keep writing `crate::store::…`.

pub mod api;
pub mod app;
pub mod config;
pub mod disk_space;
pub mod service;

pub(crate) use tessera_core::{audit, crypto, datadir, domain};
pub(crate) use tessera_net as net;
pub(crate) use tessera_store as store;
