//! Envelope encryption of secret values.
//!
//! Each version of a secret gets a fresh random 256-bit data key (DEK) from
//! the thread-local CSPRNG (ChaCha12 reseeded from the OS). The
//! value is sealed with AES-256-GCM under the DEK; the DEK is wrapped by the
//! master key (AES-256-GCM-SIV, see [`Keyring`]). Both seals carry the same
//! associated data, which binds the blob to its place: organization, team,
//! secret id, version and master key id. A blob copied to another row fails
//! to open.
//!
//! Blob layout (all lengths fixed, so parsing is trivial):
//!
//! ```text
//! [0]      format version (1)
//! [1]      algorithm id (1 = AES-256-GCM value, AES-256-GCM-SIV DEK wrap)
//! [2..18]  master key id (16 ASCII hex characters)
//! [18..78] wrapped DEK: nonce(12) || DEK(32) || tag(16)
//! [78..90] value nonce (12)
//! [90..]   value ciphertext || tag(16)
//! ```

use super::keyring::Keyring;
use crate::domain::secret_value::SecretValue;
use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use rand::RngCore;
use zeroize::Zeroizing;

const FORMAT_V1: u8 = 1;
const ALG_AES256GCM_GCMSIV_WRAP: u8 = 1;
const KEK_ID_LEN: usize = 16;
const WRAPPED_DEK_LEN: usize = super::keyring::WRAP_NONCE_LEN + 32 + 16;
const VALUE_NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 2 + KEK_ID_LEN + WRAPPED_DEK_LEN + VALUE_NONCE_LEN;

/// Where a ciphertext belongs. Every field goes into the associated data.
#[derive(Debug, Clone, Copy)]
pub struct SecretPlace<'a> {
    pub org_id: &'a str,
    pub team_id: &'a str,
    pub secret_id: &'a str,
    pub version: i64,
}

impl SecretPlace<'_> {
    /// Length-prefixed fields so no two places share an encoding.
    fn aad(&self, kek_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"tessera/secret/v1");
        for field in [self.org_id, self.team_id, self.secret_id, kek_id] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("ciphertext has an unknown format or algorithm")]
    UnknownFormat,
    #[error("ciphertext is sealed under master key {0}, which is not loaded")]
    UnknownKey(String),
    #[error("ciphertext failed authentication (tampered, or moved from another row)")]
    Authentication,
}

/// Seals and opens secret values with the loaded master key.
pub struct Envelope<'k> {
    keyring: &'k Keyring,
}

impl<'k> Envelope<'k> {
    pub fn new(keyring: &'k Keyring) -> Self {
        Self { keyring }
    }

    pub fn seal(&self, place: SecretPlace<'_>, value: &SecretValue) -> Vec<u8> {
        let kek_id = self.keyring.kek_id();
        let aad = place.aad(kek_id);
        let mut dek = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(dek.as_mut());
        let wrapped = self.keyring.wrap(dek.as_ref(), &aad);
        let mut nonce = [0u8; VALUE_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(dek.as_ref().into());
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of at most a few MiB cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(FORMAT_V1);
        out.push(ALG_AES256GCM_GCMSIV_WRAP);
        out.extend_from_slice(kek_id.as_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, place: SecretPlace<'_>, blob: &[u8]) -> Result<SecretValue, OpenError> {
        if blob.len() < HEADER_LEN + 16
            || blob[0] != FORMAT_V1
            || blob[1] != ALG_AES256GCM_GCMSIV_WRAP
        {
            return Err(OpenError::UnknownFormat);
        }
        let kek_id =
            std::str::from_utf8(&blob[2..2 + KEK_ID_LEN]).map_err(|_| OpenError::UnknownFormat)?;
        if kek_id != self.keyring.kek_id() {
            return Err(OpenError::UnknownKey(kek_id.to_owned()));
        }
        let aad = place.aad(kek_id);
        let wrapped = &blob[2 + KEK_ID_LEN..2 + KEK_ID_LEN + WRAPPED_DEK_LEN];
        let dek = self
            .keyring
            .unwrap(wrapped, &aad)
            .ok_or(OpenError::Authentication)?;
        if dek.len() != 32 {
            return Err(OpenError::Authentication);
        }
        let nonce = &blob[HEADER_LEN - VALUE_NONCE_LEN..HEADER_LEN];
        let cipher = Aes256Gcm::new(dek.as_slice().into());
        let pt = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: &blob[HEADER_LEN..],
                        aad: &aad,
                    },
                )
                .map_err(|_| OpenError::Authentication)?,
        );
        let text = std::str::from_utf8(&pt).map_err(|_| OpenError::Authentication)?;
        Ok(SecretValue::new(text.to_owned()))
    }
}

/// The master key id a blob was sealed under (stored beside it, for key
/// rotation bookkeeping). Empty when the blob is not of a known format.
pub fn kek_id_of(blob: &[u8]) -> String {
    blob.get(2..2 + KEK_ID_LEN)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn place(version: i64) -> SecretPlace<'static> {
        SecretPlace {
            org_id: "org1",
            team_id: "team1",
            secret_id: "sec1",
            version,
        }
    }

    #[test]
    fn round_trip_and_no_plaintext_in_blob() {
        let kr = Keyring::new(&[9u8; 32]);
        let env = Envelope::new(&kr);
        let v = SecretValue::new("plaintext-canary-value".into());
        let blob = env.seal(place(1), &v);
        assert!(!blob.windows(9).any(|w| w == b"plaintext"));
        assert_eq!(env.open(place(1), &blob).unwrap().expose(), v.expose());
    }

    /// A blob written by format v1 (committed by the code of that time)
    /// keeps opening: stored data outlives the code that wrote it.
    #[test]
    fn a_v1_blob_still_opens() {
        let blob = include_bytes!("fixtures/envelope_v1.bin");
        assert_eq!(blob[0], 1, "the fixture is a format-1 blob");
        let kr = Keyring::new(&[0x42u8; 32]);
        let place = SecretPlace {
            org_id: "org-fixture",
            team_id: "team-fixture",
            secret_id: "secret-fixture",
            version: 7,
        };
        let env = Envelope::new(&kr);
        assert_eq!(
            env.open(place, blob).unwrap().expose(),
            "a value sealed by envelope format v1\nwith two lines"
        );
        let moved = SecretPlace {
            version: 8,
            ..place
        };
        assert!(env.open(moved, blob).is_err());
    }

    #[test]
    fn wrong_master_key_is_named() {
        let a = Keyring::new(&[1u8; 32]);
        let b = Keyring::new(&[2u8; 32]);
        let blob = Envelope::new(&a).seal(place(1), &SecretValue::new("x".into()));
        assert_eq!(
            Envelope::new(&b).open(place(1), &blob).unwrap_err(),
            OpenError::UnknownKey(a.kek_id().to_owned())
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_flipped_byte_fails_to_open(value in "\\PC{0,200}", idx in any::<prop::sample::Index>(), bit in 0u8..8) {
            let kr = Keyring::new(&[3u8; 32]);
            let env = Envelope::new(&kr);
            let mut blob = env.seal(place(1), &SecretValue::new(value));
            let i = idx.index(blob.len());
            blob[i] ^= 1 << bit;
            prop_assert!(env.open(place(1), &blob).is_err());
        }

        #[test]
        fn truncation_fails_to_open(value in "\\PC{0,50}", cut in 1usize..40) {
            let kr = Keyring::new(&[3u8; 32]);
            let env = Envelope::new(&kr);
            let blob = env.seal(place(1), &SecretValue::new(value));
            let keep = blob.len().saturating_sub(cut);
            prop_assert!(env.open(place(1), &blob[..keep]).is_err());
        }

        #[test]
        fn moving_to_another_row_fails_to_open(
            value in "\\PC{0,50}",
            which in 0usize..4,
            other in "[a-z0-9]{1,12}",
        ) {
            let kr = Keyring::new(&[4u8; 32]);
            let env = Envelope::new(&kr);
            let blob = env.seal(place(3), &SecretValue::new(value.clone()));
            let mut p = place(3);
            let other = format!("x{other}");
            match which {
                0 => p.org_id = &other,
                1 => p.team_id = &other,
                2 => p.secret_id = &other,
                _ => p.version = 4,
            }
            prop_assert_eq!(env.open(p, &blob).unwrap_err(), OpenError::Authentication);
            let opened = env.open(place(3), &blob).unwrap();
            prop_assert_eq!(opened.expose(), value.as_str());
        }
    }
}
