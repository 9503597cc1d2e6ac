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
//!
//! Contract: found only by the exact wrapped key and associated data it was
//! unwrapped with (nothing invalidates an entry: the same bytes always
//! unwrap to the same key, so none can be stale). Memory: at most
//! [`BUDGET_BYTES`], weighed per entry as its id, the cipher and a slot;
//! when full, ciphers used once go before ciphers used again. A full fetch
//! of a team at its quota (10,000 secrets) adds about 10,000 entries, well
//! under half the budget (see the tests), so it evicts no other team's.

use super::keyring::Keyring;
use crate::cache::{bounded, ENTRY_OVERHEAD_BYTES};
use aes_gcm::{aead::KeyInit, Aes256Gcm};
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::sync::Arc;

/// Bytes of ciphers kept at most: about 24,000 entries of 1.3 KiB (a
/// 60-byte wrapped key, 160 bytes of associated data, the cipher's round
/// keys and the slot), enough for two teams at the secrets quota besides
/// every smaller one in use.
pub(crate) const BUDGET_BYTES: u64 = 32 << 20;
/// The weight of a typical entry, to shape the cache.
const TYPICAL_ENTRY_BYTES: u64 = 1024;
/// Ids are bounded by the names they hold; none comes near this.
const LARGEST_ENTRY_BYTES: u64 = 16 << 10;

/// By `len(wrapped) || wrapped || aad`.
type Id = Box<[u8]>;

#[derive(Clone, Copy)]
struct ByBytes;

impl Weighter<Id, Arc<Aes256Gcm>> for ByBytes {
    fn weight(&self, id: &Id, _: &Arc<Aes256Gcm>) -> u64 {
        weight_of(id.len())
    }
}

/// What one entry with an id of `id_len` bytes is counted as.
fn weight_of(id_len: usize) -> u64 {
    let inline = std::mem::size_of::<Id>() + std::mem::size_of::<Arc<Aes256Gcm>>();
    let shared = 16 + std::mem::size_of::<Aes256Gcm>();
    (inline + shared + id_len) as u64 + ENTRY_OVERHEAD_BYTES
}

pub(crate) struct DataKeys {
    ciphers: Cache<Id, Arc<Aes256Gcm>, ByBytes>,
}

impl Default for DataKeys {
    fn default() -> Self {
        Self {
            ciphers: bounded(
                BUDGET_BYTES,
                TYPICAL_ENTRY_BYTES,
                LARGEST_ENTRY_BYTES,
                ByBytes,
            ),
        }
    }
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
        let id = id(wrapped, aad);
        if let Some(found) = self.ciphers.get(&id) {
            return Some(found);
        }
        let dek = keyring.unwrap(wrapped, aad)?;
        if dek.len() != 32 {
            return None;
        }
        let cipher = Arc::new(Aes256Gcm::new(dek.as_slice().into()));
        self.ciphers.insert(id, cipher.clone());
        Some(cipher)
    }
}

fn id(wrapped: &[u8], aad: &[u8]) -> Id {
    let mut id = Vec::with_capacity(8 + wrapped.len() + aad.len());
    id.extend_from_slice(&(wrapped.len() as u64).to_be_bytes());
    id.extend_from_slice(wrapped);
    id.extend_from_slice(aad);
    id.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(&[7; crate::crypto::keyring::KEK_LEN])
    }

    /// A realistic place: ids of 26 characters, as the store makes them.
    fn aad(team: usize, secret: usize) -> Vec<u8> {
        format!("tessera/dek/v2 org_01hzzzzzzzzzzzzzzzzzzzzzz team_{team:022} secret_{secret:020} ver_{secret:023} kek-0123456789abcdef").into_bytes()
    }

    #[test]
    fn found_only_by_the_exact_wrapped_key_and_aad() {
        let ring = keyring();
        let keys = DataKeys::default();
        let (a, b) = (aad(1, 1), aad(1, 2));
        let wrapped = ring.wrap(&[9; 32], &a).unwrap();
        let first = keys.cipher(&ring, &wrapped, &a).unwrap();
        let again = keys.cipher(&ring, &wrapped, &a).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second open is served from the cache"
        );
        // Other associated data does not find it, and does not unwrap.
        assert!(keys.cipher(&ring, &wrapped, &b).is_none());
        // Nor do other wrapped bytes with the same associated data.
        let mut altered = wrapped.clone();
        altered[0] ^= 1;
        assert!(keys.cipher(&ring, &altered, &a).is_none());
        assert_eq!(keys.ciphers.len(), 1);
    }

    #[test]
    fn a_team_at_quota_does_not_evict_other_teams() {
        let keys = DataKeys::default();
        let cipher = Arc::new(Aes256Gcm::new(&[1u8; 32].into()));
        let wrapped = [0u8; 60];
        // Other teams' keys in use: 200 teams of 50 secrets, each opened twice.
        let others: Vec<Id> = (0..200)
            .flat_map(|t| (0..50).map(move |s| id(&wrapped, &aad(t + 1, s))))
            .collect();
        for _ in 0..2 {
            for k in &others {
                if keys.ciphers.get(k).is_none() {
                    keys.ciphers.insert(k.clone(), cipher.clone());
                }
            }
        }
        // Two full fetches of a team at the secrets quota.
        let large: Vec<Id> = (0..10_000).map(|s| id(&wrapped, &aad(0, s))).collect();
        let quota_weight: u64 = large.iter().map(|k| weight_of(k.len())).sum();
        assert!(
            quota_weight * 2 < BUDGET_BYTES,
            "{quota_weight} bytes for one team"
        );
        for _ in 0..2 {
            for k in &large {
                if keys.ciphers.get(k).is_none() {
                    keys.ciphers.insert(k.clone(), cipher.clone());
                }
            }
        }
        let kept = others
            .iter()
            .filter(|k| keys.ciphers.contains_key(*k))
            .count();
        assert_eq!(kept, others.len(), "other teams' keys evicted");
        let kept = large
            .iter()
            .filter(|k| keys.ciphers.contains_key(*k))
            .count();
        assert_eq!(
            kept,
            large.len(),
            "the large team's keys are kept for its next fetch"
        );
        assert!(keys.ciphers.weight() <= BUDGET_BYTES);
    }
}
