//! Black-box tests over real HTTP, compiled into one test binary. Each test
//! runs against SQLite and, when `TESSERA_TEST_DATABASE_URL` is set,
//! PostgreSQL.

mod common;

mod auth;
mod binary;
mod cli_admin;
mod durability;
mod errors;
mod fuzz;
mod isolation;
mod keys;
mod multinode;
mod net;
mod ops;
mod permissions;
mod rawhttp;
mod sdk;
mod secrets;
mod team_admin;
mod teams;
mod throttle;
mod tls;
mod users;
