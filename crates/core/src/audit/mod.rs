//! The cryptographic core of a tamper-evident audit log: events, their
//! HMAC-SHA256 chain, and Ed25519-signed checkpoints of a chain's head.
//! Pure types and functions; storing events and keys is the callers' part.
//!
//! * `event`: an event and its canonical bytes.
//! * `chain`: linking events one by one, and verifying a stored chain.
//! * `checkpoint`: signing a chain's head, and proving a log still extends
//!   a signed head (against rewriting with the MAC key, and truncation);
//!   pruning anchors, the checkpoints that allow a chain's prefix to go.
//! * `record`: what a node shipped, chain by chain: whether a chain moved,
//!   what the log must still extend, where it may be pruned.

pub mod chain;
pub mod checkpoint;
pub mod event;
pub mod record;

#[cfg(test)]
mod testutil;
