//! Black-box tests over real HTTP, compiled into one test binary, and one
//! conformance suite below HTTP (`conformance.rs` runs the kit in
//! `crates/store-conformance`: every store method's contract through the
//! `Store` trait). Each test runs against SQLite and,
//! when `TESSERA_TEST_DATABASE_URL` is set, PostgreSQL.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly where it cannot go on"
)]

mod common;
mod engines;
mod workload;

mod agent;
mod agent_dir;
mod agent_health;
mod audit;
mod audit_actions;
mod audit_checkpoints;
mod audit_pruning;
mod audit_purges;
mod auth;
mod authority;
mod binary;
mod bounds;
mod cli_admin;
mod cli_history;
mod cli_secrets;
mod conformance;
mod delivery;
mod delivery_binary;
mod diskfull;
mod docs_backups;
mod durability;
mod errors;
mod eso;
mod fuzz;
mod history;
mod isolation;
mod keys;
mod large_fetch;
mod master_key_command;
mod multinode;
mod names;
mod net;
mod ops;
mod permissions;
mod races;
mod rawhttp;
mod read_recording;
mod readme_delivery;
mod remanence;
mod run;
mod sdk;
mod secrets;
mod settings;
mod startup;
mod team_admin;
mod teams;
mod throttle;
mod tls;
mod users;
