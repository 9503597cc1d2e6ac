//! Pure types and rules: no I/O, no async. Everything here is unit-testable.

pub mod access;
pub mod audit_action;
pub mod consumer_kind;
pub mod ids;
pub mod key_token;
pub mod names;
pub mod secret_name;
pub mod secret_value;
pub mod time;
pub mod types;
