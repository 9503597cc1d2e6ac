//! Tessera: a self-hosted secrets manager speaking the secrets, teams and
//! API-keys part of the Baseten management API.

pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod datadir;
pub mod disk_space;
pub mod domain;
pub mod net;
pub mod service;
pub mod store;
pub mod telemetry;
