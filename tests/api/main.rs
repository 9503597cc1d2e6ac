//! Black-box tests over real HTTP, compiled into one test binary. Each test
//! runs against SQLite and, when `TESSERA_TEST_DATABASE_URL` is set,
//! PostgreSQL.

mod common;

mod auth;
mod binary;
mod cli_admin;
mod diskfull;
mod durability;
mod errors;
mod fuzz;
mod isolation;
mod keys;
mod multinode;
mod names;
mod ops;
mod permissions;
mod races;
mod remanence;
mod sdk;
mod secrets;
mod startup;
mod team_admin;
mod teams;
mod users;
