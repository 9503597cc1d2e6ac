//! Data keys already unwrapped, kept as ready ciphers.
//!
//! Opening a value first unwraps its data key under the master key
//! (AES-256-GCM-SIV: a per-nonce key derivation, a key schedule and POLYVAL)
//! and then builds the AES-256-GCM cipher for the value (another key
//! schedule). Measured on fetch-100, that was most of the cryptography's
//! cost, paid again for every secret of every answer. Values are still
//! decrypted for each answer (no plaintext is kept); only the unwrapped data
//! key is remembered.
//!
//! Safe to remember: an entry is found only by the exact wrapped key and the
//! exact associated data it was unwrapped with (which name the secret, its
//! version and the master key), and unwrapping is deterministic, so the
//! cipher found is the one a fresh unwrap would give. A blob changed in the
//! database misses the cache or fails the value's own authentication, as it
//! would without it. Keeping data keys in memory adds nothing to what the
//! process already holds: the master key, which opens every one of them.

use super::keyring::Keyring;
use aes_gcm::{aead::KeyInit, Aes256Gcm};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Ciphers kept at most (about 600 bytes each); a full cache starts over.
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub(crate) struct DataKeys {
    /// By `len(wrapped) || wrapped || aad`.
    ciphers: Mutex<HashMap<Box<[u8]>, Arc<Aes256Gcm>>>,
}

impl DataKeys {
    /// The value cipher for `wrapped` (a data key sealed under `keyring`'s
    /// master key with `aad`), or `None` when it does not unwrap.
    pub(crate) fn cipher(
        &self,
        keyring: &Keyring,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Option<Arc<Aes256Gcm>> {
        let mut id = Vec::with_capacity(8 + wrapped.len() + aad.len());
        id.extend_from_slice(&(wrapped.len() as u64).to_be_bytes());
        id.extend_from_slice(wrapped);
        id.extend_from_slice(aad);
        if let Some(found) = self.ciphers.lock().ok()?.get(id.as_slice()) {
            return Some(found.clone());
        }
        let dek = keyring.unwrap(wrapped, aad)?;
        if dek.len() != 32 {
            return None;
        }
        let cipher = Arc::new(Aes256Gcm::new(dek.as_slice().into()));
        if let Ok(mut ciphers) = self.ciphers.lock() {
            if ciphers.len() >= MAX_ENTRIES {
                ciphers.clear();
            }
            ciphers.insert(id.into_boxed_slice(), cipher.clone());
        }
        Some(cipher)
    }
}
