//! The cryptographic core of a tamper-evident audit log: events, their
//! HMAC-SHA256 chain, and Ed25519-signed checkpoints of a chain's head.
//! Pure types and functions; storing events and keys is the callers' part.
//!
//! * `event`: an event and its canonical bytes.
//! * `chain`: linking events one by one, and verifying a stored chain.
//! * `checkpoint`: signing a chain's head, and proving a log still extends
//!   a signed head (against rewriting with the MAC key, and truncation).

pub mod chain;
pub mod checkpoint;
pub mod event;

#[cfg(test)]
mod testutil;
