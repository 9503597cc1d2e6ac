//! Envelope encryption of secret values.
//!
//! Each version of a secret gets a fresh random 256-bit data key (DEK) from
//! the thread-local CSPRNG (ChaCha12 reseeded from the OS). The value is
//! sealed with AES-256-GCM under the DEK; the DEK is wrapped by the master
//! key (AES-256-GCM-SIV, see [`Keyring`]).
//!
//! Format 2 (written now) binds values known before the store is called:
//! the value's associated data is (organization, team, secret id, version
//! id), all chosen or known by the service; the wrapped DEK's associated
//! data is the same place plus the master key's id. So the service seals
//! first and the store only stores (writes flow one way), and rotating the
//! master key re-wraps DEKs without touching value ciphertexts. The name is
//! not bound: a secret deleted and re-created under the same name has a new
//! id, so its old ciphertext can never open as the new secret.
//!
//! Format 1 (read only) bound (organization, team, secret id, version
//! number, master key id) in both seals; blobs written by it still open.
//!
//! Blob layout (all lengths fixed, so parsing is trivial):
//!
//! ```text
//! [0]      format version (1 or 2)
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
const FORMAT_V2: u8 = 2;
const ALG_AES256GCM_GCMSIV_WRAP: u8 = 1;
const KEK_ID_LEN: usize = 16;
const WRAPPED_DEK_LEN: usize = super::keyring::WRAP_NONCE_LEN + 32 + 16;
const VALUE_NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 2 + KEK_ID_LEN + WRAPPED_DEK_LEN + VALUE_NONCE_LEN;
/// A blob's length beyond its plaintext's, the same in formats 1 and 2 (the
/// header and the value's tag): how the store knows the plaintext bytes of
/// a team's values without opening them (migration 0010 writes it out).
pub const OVERHEAD: usize = HEADER_LEN + 16;

/// Where a ciphertext belongs: the stored row's identity. Format 2 binds
/// `version_id`; format 1 bound `version`.
#[derive(Debug, Clone, Copy)]
pub struct SecretPlace<'a> {
    pub org_id: &'a str,
    pub team_id: &'a str,
    pub secret_id: &'a str,
    /// The version number (format 1 only).
    pub version: i64,
    /// The version's random id (format 2; `None` for rows written by format 1).
    pub version_id: Option<&'a str>,
}

/// Length-prefixed fields, so no two places share an encoding.
fn push_fields(out: &mut Vec<u8>, fields: &[&str]) {
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
}

impl SecretPlace<'_> {
    fn aad_v1(&self, kek_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"tessera/secret/v1");
        push_fields(
            &mut out,
            &[self.org_id, self.team_id, self.secret_id, kek_id],
        );
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }

    fn value_aad_v2(&self, version_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"tessera/secret/v2");
        push_fields(
            &mut out,
            &[self.org_id, self.team_id, self.secret_id, version_id],
        );
        out
    }

    fn dek_aad_v2(&self, version_id: &str, kek_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(112);
        out.extend_from_slice(b"tessera/dek/v2");
        push_fields(
            &mut out,
            &[
                self.org_id,
                self.team_id,
                self.secret_id,
                version_id,
                kek_id,
            ],
        );
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

#[derive(Debug, thiserror::Error)]
#[error("sealing a value failed (it is larger than AES-GCM allows)")]
pub struct SealError;

/// A sealed value and the master key its data key is wrapped under.
pub struct Sealed {
    pub kek_id: String,
    pub ciphertext: Vec<u8>,
}

/// Seals and opens secret values with the loaded master key.
pub struct Envelope<'k> {
    keyring: &'k Keyring,
}

impl<'k> Envelope<'k> {
    pub fn new(keyring: &'k Keyring) -> Self {
        Self { keyring }
    }

    /// Seals `value` for `place` in format 2 (`place.version_id` must be set).
    pub fn seal(&self, place: SecretPlace<'_>, value: &SecretValue) -> Result<Sealed, SealError> {
        let version_id = place.version_id.ok_or(SealError)?;
        let kek_id = self.keyring.kek_id();
        let mut dek = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(dek.as_mut());
        let wrapped = self
            .keyring
            .wrap(dek.as_ref(), &place.dek_aad_v2(version_id, kek_id))
            .map_err(|_| SealError)?;
        let mut nonce = [0u8; VALUE_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = Aes256Gcm::new(dek.as_ref().into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: &place.value_aad_v2(version_id),
                },
            )
            .map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(FORMAT_V2);
        out.push(ALG_AES256GCM_GCMSIV_WRAP);
        out.extend_from_slice(kek_id.as_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(Sealed {
            kek_id: kek_id.to_owned(),
            ciphertext: out,
        })
    }

    /// Opens a blob of format 1 or 2 stored at `place`.
    pub fn open(&self, place: SecretPlace<'_>, blob: &[u8]) -> Result<SecretValue, OpenError> {
        if blob.len() < HEADER_LEN + 16 || blob[1] != ALG_AES256GCM_GCMSIV_WRAP {
            return Err(OpenError::UnknownFormat);
        }
        let kek_id =
            std::str::from_utf8(&blob[2..2 + KEK_ID_LEN]).map_err(|_| OpenError::UnknownFormat)?;
        if kek_id != self.keyring.kek_id() {
            return Err(OpenError::UnknownKey(kek_id.to_owned()));
        }
        let (dek_aad, value_aad) = match (blob[0], place.version_id) {
            (FORMAT_V1, _) => {
                let aad = place.aad_v1(kek_id);
                (aad.clone(), aad)
            }
            (FORMAT_V2, Some(version_id)) => (
                place.dek_aad_v2(version_id, kek_id),
                place.value_aad_v2(version_id),
            ),
            // A format-2 blob in a row without a version id was moved there.
            (FORMAT_V2, None) => return Err(OpenError::Authentication),
            _ => return Err(OpenError::UnknownFormat),
        };
        let wrapped = &blob[2 + KEK_ID_LEN..2 + KEK_ID_LEN + WRAPPED_DEK_LEN];
        let cipher = self
            .keyring
            .value_cipher(wrapped, &dek_aad)
            .ok_or(OpenError::Authentication)?;
        let nonce = &blob[HEADER_LEN - VALUE_NONCE_LEN..HEADER_LEN];
        let pt = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &blob[HEADER_LEN..],
                    aad: &value_aad,
                },
            )
            .map_err(|_| OpenError::Authentication)?;
        // The plaintext becomes the value without a copy; bytes that are not
        // UTF-8 are wiped before the error.
        match String::from_utf8(pt) {
            Ok(text) => Ok(SecretValue::new(text)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                Err(OpenError::Authentication)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn place(version_id: &str) -> SecretPlace<'_> {
        SecretPlace {
            org_id: "org1",
            team_id: "team1",
            secret_id: "sec1",
            version: 1,
            version_id: Some(version_id),
        }
    }

    fn seal(env: &Envelope<'_>, p: SecretPlace<'_>, v: &str) -> Vec<u8> {
        env.seal(p, &SecretValue::new(v.into())).unwrap().ciphertext
    }

    #[test]
    fn round_trip_and_no_plaintext_in_blob() {
        let kr = Keyring::new(&[9u8; 32]);
        let env = Envelope::new(&kr);
        let blob = seal(&env, place("v1"), "plaintext-canary-value");
        assert_eq!(blob[0], FORMAT_V2);
        assert!(!blob.windows(9).any(|w| w == b"plaintext"));
        assert_eq!(
            env.open(place("v1"), &blob).unwrap().expose(),
            "plaintext-canary-value"
        );
    }

    /// A blob written by format 1 (committed by the code of that time)
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
            version_id: None,
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

    /// Migration 0010 and the value-bytes quota rely on this.
    #[test]
    fn a_blob_is_its_plaintext_and_106_bytes() {
        let kr = Keyring::new(&[3u8; 32]);
        let env = Envelope::new(&kr);
        assert_eq!(OVERHEAD, 106);
        for v in ["", "x", &"y".repeat(70_000)] {
            assert_eq!(seal(&env, place("v"), v).len(), v.len() + OVERHEAD);
        }
        let v1 = include_bytes!("fixtures/envelope_v1.bin");
        let text = "a value sealed by envelope format v1\nwith two lines";
        assert_eq!(v1.len(), text.len() + OVERHEAD);
    }

    #[test]
    fn wrong_master_key_is_named() {
        let a = Keyring::new(&[1u8; 32]);
        let b = Keyring::new(&[2u8; 32]);
        let blob = seal(&Envelope::new(&a), place("v"), "x");
        assert_eq!(
            Envelope::new(&b).open(place("v"), &blob).unwrap_err(),
            OpenError::UnknownKey(a.kek_id().to_owned())
        );
    }

    #[test]
    fn a_v2_blob_needs_its_version_id() {
        let kr = Keyring::new(&[5u8; 32]);
        let env = Envelope::new(&kr);
        let blob = seal(&env, place("v"), "x");
        let without = SecretPlace {
            version_id: None,
            ..place("v")
        };
        assert_eq!(
            env.open(without, &blob).unwrap_err(),
            OpenError::Authentication
        );
        assert!(env.seal(without, &SecretValue::new("x".into())).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_flipped_byte_fails_to_open(value in "\\PC{0,200}", idx in any::<prop::sample::Index>(), bit in 0u8..8) {
            let kr = Keyring::new(&[3u8; 32]);
            let env = Envelope::new(&kr);
            let mut blob = seal(&env, place("v"), &value);
            let i = idx.index(blob.len());
            blob[i] ^= 1 << bit;
            prop_assert!(env.open(place("v"), &blob).is_err());
        }

        #[test]
        fn truncation_fails_to_open(value in "\\PC{0,50}", cut in 1usize..40) {
            let kr = Keyring::new(&[3u8; 32]);
            let env = Envelope::new(&kr);
            let blob = seal(&env, place("v"), &value);
            let keep = blob.len().saturating_sub(cut);
            prop_assert!(env.open(place("v"), &blob[..keep]).is_err());
        }

        #[test]
        fn moving_to_another_row_fails_to_open(
            value in "\\PC{0,50}",
            which in 0usize..4,
            other in "[a-z0-9]{1,12}",
        ) {
            let kr = Keyring::new(&[4u8; 32]);
            let env = Envelope::new(&kr);
            let blob = seal(&env, place("v3"), &value);
            let mut p = place("v3");
            let other = format!("x{other}");
            match which {
                0 => p.org_id = &other,
                1 => p.team_id = &other,
                2 => p.secret_id = &other,
                _ => p.version_id = Some(&other),
            }
            prop_assert_eq!(env.open(p, &blob).unwrap_err(), OpenError::Authentication);
            let opened = env.open(place("v3"), &blob).unwrap();
            prop_assert_eq!(opened.expose(), value.as_str());
        }
    }
}
