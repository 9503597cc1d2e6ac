//! The master key (key-encryption key) and its identity.
//!
//! Data keys are wrapped with AES-256-GCM-SIV (RFC 8452) under a random
//! 96-bit nonce. GCM-SIV derives a fresh key per nonce and is
//! nonce-misuse resistant, so random nonces stay safe for far more wraps than
//! one store will ever make; and it runs on the CPU's AES instructions
//! (XChaCha20-Poly1305, the other option the design allows, was 5% of the
//! server's CPU under write load in software).
//!
//! A KEK's id is derived from the key itself (HMAC-SHA256 of a fixed label,
//! first 8 bytes, hex), so two processes with the same key agree on the id
//! and a wrong key is recognized before any secret is touched. The database
//! stores, per KEK, its id and a check value sealed under it.

use aes_gcm::Aes256Gcm;
use aes_gcm_siv::{
    aead::{Aead, KeyInit, Payload},
    Aes256GcmSiv, Nonce,
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

pub const KEK_LEN: usize = 32;
const CHECK_PLAINTEXT: &[u8] = b"tessera master key check v1";
pub(crate) const WRAP_NONCE_LEN: usize = 12;

pub struct Keyring {
    kek_id: String,
    cipher: Aes256GcmSiv,
    /// Data keys unwrapped under this master key (see `data_keys.rs`).
    data_keys: super::data_keys::DataKeys,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("the configured master key (id {configured}) cannot open this database's data, which is sealed under master key id(s) {stored}; refusing to start")]
    Mismatch { configured: String, stored: String },
    #[error("the configured master key has id {0}, but the check value stored for that id does not open; the key or the database is damaged")]
    CheckFailed(String),
}

/// HMAC-SHA256 keyed with `key` (32 bytes). HMAC pads a key shorter than the
/// hash's 64-byte block with zeros (RFC 2104), so keying it with the padded
/// block is the same MAC and, being exactly a block, cannot fail.
pub(crate) fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(block.as_ref().into())
}

/// Encrypting a small buffer with AES-GCM-SIV failed (it cannot, below
/// 64 GiB; the type says so honestly instead of panicking).
#[derive(Debug, thiserror::Error)]
#[error("wrapping under the master key failed")]
pub struct WrapError;

impl Keyring {
    pub fn new(kek: &[u8; KEK_LEN]) -> Self {
        let mut mac = hmac_sha256(kek);
        mac.update(b"tessera kek id v1");
        let digest = mac.finalize().into_bytes();
        let kek_id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            kek_id,
            cipher: Aes256GcmSiv::new(kek.into()),
            data_keys: Default::default(),
        }
    }

    pub fn kek_id(&self) -> &str {
        &self.kek_id
    }

    /// Seals `plaintext` under the KEK: `nonce(12) || ciphertext+tag`.
    // Public for the service's bootstrap of wrapped keys (`tessera-server`),
    // the only caller outside this crate.
    pub fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, WrapError> {
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| WrapError)?;
        let mut out = Vec::with_capacity(WRAP_NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn unwrap(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < WRAP_NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(WRAP_NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }

    /// The value cipher of a data key wrapped under this master key with
    /// `aad`, unwrapped once and then kept (see `data_keys.rs`); `None`
    /// when it does not unwrap.
    pub(crate) fn value_cipher(&self, wrapped: &[u8], aad: &[u8]) -> Option<Arc<Aes256Gcm>> {
        self.data_keys.cipher(self, wrapped, aad)
    }

    pub fn check_value(&self) -> Result<Vec<u8>, WrapError> {
        self.wrap(CHECK_PLAINTEXT, self.check_aad().as_bytes())
    }

    fn check_aad(&self) -> String {
        format!("tessera/kek-check/{}", self.kek_id)
    }

    /// Verifies this key against the KEKs the database knows about.
    /// `Ok(true)`: the key is known and verified. `Ok(false)`: the database
    /// knows no key at all (a new store). Otherwise an error naming the ids.
    pub fn verify_against(&self, stored: &[(String, Vec<u8>)]) -> Result<bool, KeyringError> {
        if stored.is_empty() {
            return Ok(false);
        }
        match stored.iter().find(|(id, _)| *id == self.kek_id) {
            Some((_, check)) => match self.unwrap(check, self.check_aad().as_bytes()) {
                Some(pt) if pt.as_slice() == CHECK_PLAINTEXT => Ok(true),
                _ => Err(KeyringError::CheckFailed(self.kek_id.clone())),
            },
            None => Err(KeyringError::Mismatch {
                configured: self.kek_id.clone(),
                stored: stored
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring {{ kek_id: {}, key: [redacted] }}", self.kek_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_detects_the_wrong_key() {
        let a = Keyring::new(&[1u8; 32]);
        let b = Keyring::new(&[2u8; 32]);
        assert_ne!(a.kek_id(), b.kek_id());
        let stored = vec![(a.kek_id().to_owned(), a.check_value().unwrap())];
        assert_eq!(a.verify_against(&stored), Ok(true));
        let err = b.verify_against(&stored).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(a.kek_id()) && msg.contains(b.kek_id()),
            "{msg}"
        );
        assert_eq!(b.verify_against(&[]), Ok(false));
        // A check value under the right id that does not open is refused too.
        let forged = vec![(a.kek_id().to_owned(), b.check_value().unwrap())];
        assert!(matches!(
            a.verify_against(&forged),
            Err(KeyringError::CheckFailed(_))
        ));
    }

    #[test]
    fn the_padded_key_is_the_same_hmac() {
        use hmac::Mac;
        let key = [7u8; 32];
        let mut a = hmac_sha256(&key);
        let mut b = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        a.update(b"x");
        b.update(b"x");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }

    #[test]
    fn debug_hides_the_key() {
        let a = Keyring::new(&[7u8; 32]);
        assert!(format!("{a:?}").contains("[redacted]"));
    }
}
