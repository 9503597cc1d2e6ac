//! Tessera: a self-hosted secrets manager speaking the secrets, teams and
//! API-keys part of the Baseten management API.
//!
//! This package is the `tessera` binary (its operator commands live in
//! [`cli`]) and the integration tests. The code lives in the workspace's
//! crates (see `docs/architecture.md`); the modules below are re-exported
//! under the names they had before the split, so `tessera::store::…` and
//! the like keep working for the tests and the benchmark.

pub mod cli;

pub use tessera_core::{audit, crypto, datadir, domain, duration, telemetry};
pub use tessera_net as net;
pub use tessera_server::{api, app, config, disk_space, service};
pub use tessera_store as store;
pub use tessera_wire as wire;
pub use tessera_workload as workload;
