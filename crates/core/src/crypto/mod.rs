//! Encryption at rest: the master key (KEK) and envelope encryption.

mod data_keys;
pub mod envelope;
pub mod fingerprint;
pub mod key_command;
pub mod keyring;
pub mod master_key;

pub use envelope::{Envelope, SecretPlace};
pub use keyring::Keyring;
