//! Tessera's core: the domain (names, ids, access grants, values), the
//! cryptography (master keys, envelopes, fingerprints) and the audit log's
//! chains and checkpoints, plus the data directory's file rules and logging.
//!
//! No database driver and no server: the store (`tessera-store`), the server
//! (`tessera-server`) and the workload binary (`tessera-workload`) all build
//! on this crate.

pub mod audit;
pub mod cache;
pub mod crypto;
pub mod datadir;
pub mod domain;
pub mod duration;
pub mod telemetry;
