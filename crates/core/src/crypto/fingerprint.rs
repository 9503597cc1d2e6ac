//! Fingerprints of secret values, for workloads to tell versions apart.
//!
//! A fingerprint is HMAC-SHA256 over (organization, team, secret id, value)
//! under a random 256-bit fingerprint key, truncated to 128 bits and written
//! in hex. Keyed, so a fingerprint cannot be checked against guessed values
//! by anyone without the key (a plain hash of a short password could); bound
//! to the secret's place, so equal values of two secrets do not show as
//! equal. The key is stored in the database wrapped by the master key, so
//! it survives a master-key rotation (re-wrapped, never regenerated) and
//! fingerprints stay stable while a value is unchanged.

use super::keyring::Keyring;
use crate::domain::secret_value::SecretValue;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroizing;

/// The `purpose` under which the wrapped key is stored.
pub const PURPOSE: &str = "fingerprint";
const KEY_LEN: usize = 32;
const OUT_LEN: usize = 16;

pub struct Fingerprinter {
    /// The MAC with the key already absorbed; cloned per use.
    keyed: Hmac<Sha256>,
}

#[derive(Debug, thiserror::Error)]
#[error("the fingerprint key does not open (or cannot be sealed) under master key {0}")]
pub struct UnwrapError(String);

fn aad(kek_id: &str) -> Vec<u8> {
    format!("tessera/wrapped-key/{PURPOSE}/v1/{kek_id}").into_bytes()
}

impl Fingerprinter {
    fn from_key(key: &[u8; KEY_LEN]) -> Self {
        Self {
            keyed: super::keyring::hmac_sha256(key),
        }
    }

    /// A new random key, and its wrapped form for the store.
    pub fn generate(keyring: &Keyring) -> Result<(Self, Vec<u8>), UnwrapError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        let wrapped = keyring
            .wrap(key.as_ref(), &aad(keyring.kek_id()))
            .map_err(|_| UnwrapError(keyring.kek_id().to_owned()))?;
        Ok((Self::from_key(&key), wrapped))
    }

    /// Opens a stored key.
    pub fn unwrap(keyring: &Keyring, wrapped: &[u8]) -> Result<Self, UnwrapError> {
        let bad = || UnwrapError(keyring.kek_id().to_owned());
        let key = keyring
            .unwrap(wrapped, &aad(keyring.kek_id()))
            .ok_or_else(bad)?;
        let key: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(key.as_slice().try_into().map_err(|_| bad())?);
        Ok(Self::from_key(&key))
    }

    pub fn fingerprint(
        &self,
        org_id: &str,
        team_id: &str,
        secret_id: &str,
        value: &SecretValue,
    ) -> String {
        let mut mac = self.keyed.clone();
        for field in [org_id, team_id, secret_id, value.expose()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(2 * OUT_LEN);
        for b in &digest[..OUT_LEN] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_keyed_and_bound_to_the_place() {
        let kr = Keyring::new(&[5u8; 32]);
        let (fp, wrapped) = Fingerprinter::generate(&kr).unwrap();
        let again = Fingerprinter::unwrap(&kr, &wrapped).unwrap();
        let v = SecretValue::new("value".into());
        let a = fp.fingerprint("o", "t", "s", &v);
        assert_eq!(a.len(), 32);
        assert_eq!(a, again.fingerprint("o", "t", "s", &v));
        assert_ne!(a, fp.fingerprint("o", "t", "s2", &v));
        assert_ne!(
            a,
            fp.fingerprint("o", "t", "s", &SecretValue::new("value2".into()))
        );
        let (other, _) = Fingerprinter::generate(&kr).unwrap();
        assert_ne!(a, other.fingerprint("o", "t", "s", &v));
        // Field boundaries are unambiguous.
        assert_ne!(
            fp.fingerprint("ab", "c", "s", &v),
            fp.fingerprint("a", "bc", "s", &v)
        );
        // Another master key cannot open it.
        assert!(Fingerprinter::unwrap(&Keyring::new(&[6u8; 32]), &wrapped).is_err());
    }
}
