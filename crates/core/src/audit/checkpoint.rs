//! Signed checkpoints: an Ed25519 signature over a chain's head.
//!
//! The chain's MAC key must be online to write events, so whoever takes
//! the server can rewrite the whole log with it, and dropping the newest
//! events leaves a shorter chain that still verifies. A checkpoint names a
//! head (chain, seq, MAC) at a moment, signed with a key kept apart from the
//! MAC key; copied somewhere the server cannot rewrite, it proves that any
//! later log must still hold, at that seq, the event with that MAC
//! (`extends`). A rewritten log carries other MACs; a truncated one lacks
//! the seq.
//!
//! The signature covers `CHECKPOINT_TAG` followed by the fields in a fixed
//! order, each `u64`/`i64` as 8 bytes big-endian, the MAC as its 32 bytes,
//! each string as its byte length (`u64`, big-endian) then its UTF-8 bytes:
//! every field's extent is known before it is read, so two checkpoints never
//! share the signed bytes. The tag keeps these signatures apart from any
//! other the key might ever make.

use super::chain::{BreakKind, Broken, ChainHead, ChainMac, StoredEvent, GENESIS_MAC};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const CHECKPOINT_TAG: &[u8] = b"tessera/audit/checkpoint/v1\0";
/// A pruning anchor's signatures: never valid as a plain checkpoint's, nor
/// the other way round.
const ANCHOR_TAG: &[u8] = b"tessera/audit/prune-anchor/v1\0";
const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// A chain's head at a moment, as a signer vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub chain: String,
    pub seq: u64,
    /// The MAC of the event at `seq` (hex in JSON).
    #[serde(with = "mac_hex")]
    pub mac: ChainMac,
    /// Microseconds since the Unix epoch.
    pub time: i64,
    /// The signing key's id (`CheckpointPublicKey::id`).
    pub signer: String,
    /// Present on a pruning anchor only: this line allows the chain's
    /// events up to `seq` to be deleted, and names the checkpoint the node
    /// last shipped, which it checked the log against before signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneBasis>,
}

/// What a pruning anchor was checked against: the checkpoint of the same
/// chain that the node signing it had last shipped (at or after the
/// anchor's seq).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneBasis {
    pub checked_seq: u64,
    /// The MAC that checkpoint holds (hex in JSON).
    #[serde(with = "mac_hex")]
    pub checked_mac: ChainMac,
}

impl PruneBasis {
    /// The checked checkpoint's head, in the anchor's chain.
    pub fn head(&self, chain: &str) -> ChainHead {
        ChainHead {
            chain: chain.to_owned(),
            seq: self.checked_seq,
            mac: self.checked_mac,
        }
    }
}

impl Checkpoint {
    /// The head this checkpoint vouches for: the start of verification
    /// after a pruned prefix (`ChainStart::Checkpoint`).
    pub fn head(&self) -> ChainHead {
        ChainHead {
            chain: self.chain.clone(),
            seq: self.seq,
            mac: self.mac,
        }
    }

    /// The bytes the signature covers (see the module's documentation).
    fn signed_bytes(&self) -> Vec<u8> {
        fn text(out: &mut Vec<u8>, s: &str) {
            // usize -> u64 is lossless on every platform Rust supports.
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut out = Vec::with_capacity(ANCHOR_TAG.len() + 120 + self.chain.len());
        let tag = match self.prune {
            None => CHECKPOINT_TAG,
            Some(_) => ANCHOR_TAG,
        };
        out.extend_from_slice(tag);
        text(&mut out, &self.chain);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(&self.time.to_be_bytes());
        text(&mut out, &self.signer);
        if let Some(basis) = &self.prune {
            out.extend_from_slice(&basis.checked_seq.to_be_bytes());
            out.extend_from_slice(&basis.checked_mac);
        }
        out
    }

    /// Whether this is a pruning anchor.
    pub fn is_anchor(&self) -> bool {
        self.prune.is_some()
    }
}

/// A checkpoint with its signature, stored as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The Ed25519 signature, standard base64 of its 64 bytes. Kept as text
    /// so that a damaged signature still parses and is reported by
    /// `verify_checkpoint`.
    pub signature: String,
}

impl SignedCheckpoint {
    /// One line of JSON, no newline at its end.
    pub fn to_json_line(&self) -> Result<String, CheckpointError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parses a line written by `to_json_line`; does not verify it.
    pub fn from_json_line(line: &str) -> Result<Self, CheckpointError> {
        Ok(serde_json::from_str(line.trim_end())?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint names signer {found}, not the expected key {expected}")]
    WrongSigner { expected: String, found: String },
    #[error("the checkpoint's signature is not base64 of 64 bytes")]
    MalformedSignature,
    #[error("the checkpoint's signature does not verify: the checkpoint was modified or signed by another key")]
    BadSignature,
    #[error("not an audit public key (`ed25519:` and the base64 of 32 bytes): {0}")]
    MalformedPublicKey(&'static str),
    #[error("not a signed checkpoint: {0}")]
    Json(#[from] serde_json::Error),
}

/// The key that verifies checkpoints, and its id.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckpointPublicKey {
    key: VerifyingKey,
    id: String,
}

impl CheckpointPublicKey {
    fn new(key: VerifyingKey) -> Self {
        // The first 8 bytes of SHA-256 of the key, in hex: names the key in
        // each checkpoint, so a checkpoint by another key is told apart
        // before its signature is checked.
        let digest = Sha256::digest(key.as_bytes());
        let id = hex::encode(&digest[..8]);
        Self { key, id }
    }

    /// The key's id, 16 lowercase hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `ed25519:` then the standard base64 of the key's 32 bytes: one line,
    /// easy to copy into a verifier's configuration.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(self.key.as_bytes()))
    }

    /// Parses `to_text`'s form (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = CheckpointError::MalformedPublicKey;
        let encoded = text
            .trim()
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .ok_or(bad("no `ed25519:` prefix"))?;
        let bytes = BASE64.decode(encoded).map_err(|_| bad("not base64"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a curve point"))?;
        // A weak (small-order) key would accept signatures made without any
        // secret; `verify_strict` rejects them too, this says so early.
        if key.is_weak() {
            return Err(bad("a weak key"));
        }
        Ok(Self::new(key))
    }
}

impl FromStr for CheckpointPublicKey {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CheckpointPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for CheckpointPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointPublicKey({})", self.id)
    }
}

/// Signs checkpoints. The signing key is wiped from memory on drop
/// (ed25519-dalek's `zeroize` feature).
pub struct CheckpointSigner {
    key: SigningKey,
    public: CheckpointPublicKey,
}

impl CheckpointSigner {
    /// A new key from the operating system's generator.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The key whose 32-byte seed (RFC 8032's private key) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public = CheckpointPublicKey::new(key.verifying_key());
        Self { key, public }
    }

    /// The seed, for storing the key; wiped when the returned value drops.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    pub fn public_key(&self) -> &CheckpointPublicKey {
        &self.public
    }

    /// A signed checkpoint of `head` at `time` (microseconds since the Unix
    /// epoch).
    pub fn sign(&self, head: &ChainHead, time: i64) -> SignedCheckpoint {
        self.sign_checkpoint(head, time, None)
    }

    /// A pruning anchor at `head`: the chain's events up to it may go,
    /// after the log was checked against `checked`, the checkpoint of that
    /// chain last shipped.
    pub fn sign_anchor(
        &self,
        head: &ChainHead,
        time: i64,
        checked: &ChainHead,
    ) -> SignedCheckpoint {
        let basis = PruneBasis {
            checked_seq: checked.seq,
            checked_mac: checked.mac,
        };
        self.sign_checkpoint(head, time, Some(basis))
    }

    fn sign_checkpoint(
        &self,
        head: &ChainHead,
        time: i64,
        prune: Option<PruneBasis>,
    ) -> SignedCheckpoint {
        let checkpoint = Checkpoint {
            chain: head.chain.clone(),
            seq: head.seq,
            mac: head.mac,
            time,
            signer: self.public.id.clone(),
            prune,
        };
        let signature: Signature = self.key.sign(&checkpoint.signed_bytes());
        SignedCheckpoint {
            checkpoint,
            signature: BASE64.encode(signature.to_bytes()),
        }
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CheckpointSigner {{ signer: {}, key: [redacted] }}",
            self.public.id
        )
    }
}

/// The checkpoint, if `public_key` signed it exactly as it reads.
pub fn verify_checkpoint(
    public_key: &CheckpointPublicKey,
    signed: &SignedCheckpoint,
) -> Result<Checkpoint, CheckpointError> {
    let checkpoint = &signed.checkpoint;
    if checkpoint.signer != public_key.id {
        return Err(CheckpointError::WrongSigner {
            expected: public_key.id.clone(),
            found: checkpoint.signer.clone(),
        });
    }
    let bytes = BASE64
        .decode(&signed.signature)
        .map_err(|_| CheckpointError::MalformedSignature)?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| CheckpointError::MalformedSignature)?;
    // Strict verification: rejects the malleable and small-order cases that
    // plain RFC 8032 verification lets through.
    public_key
        .key
        .verify_strict(&checkpoint.signed_bytes(), &Signature::from_bytes(&bytes))
        .map_err(|_| CheckpointError::BadSignature)?;
    Ok(checkpoint.clone())
}

/// Proves that the stored events of the checkpoint's chain (in ascending
/// seq order) still hold, at the checkpoint's seq, the event with the
/// checkpoint's MAC. Run it over events that `verify_chain` accepts: the
/// chain then ties every event up to that seq to the signed MAC, so a log
/// rewritten with the MAC key fails here (`Rewritten`), as does one
/// truncated below the seq (`Truncated`) or missing that event (`Gap`).
///
/// The event at the checkpoint's seq must be among `events`: after pruning
/// up to a checkpoint, that checkpoint is instead the start of
/// verification (`ChainStart::Checkpoint`), which proves the same.
pub fn extends<I>(checkpoint: &Checkpoint, events: I) -> Result<(), Broken>
where
    I: IntoIterator,
    I::Item: Borrow<StoredEvent>,
{
    let broken = |seq, kind| Broken {
        chain: checkpoint.chain.clone(),
        seq,
        kind,
    };
    let same_mac = |mac: &ChainMac| bool::from(mac.ct_eq(&checkpoint.mac));
    // A checkpoint of the empty chain holds for every log of that chain.
    if checkpoint.seq == 0 {
        return match same_mac(&GENESIS_MAC) {
            true => Ok(()),
            false => Err(broken(0, BreakKind::Rewritten)),
        };
    }
    let mut last = 0;
    for item in events {
        let stored: &StoredEvent = item.borrow();
        let found = stored.event.seq;
        if stored.event.chain != checkpoint.chain {
            let found = stored.event.chain.clone();
            return Err(broken(stored.event.seq, BreakKind::WrongChain { found }));
        }
        match found.cmp(&checkpoint.seq) {
            std::cmp::Ordering::Less => last = found,
            std::cmp::Ordering::Equal if same_mac(&stored.mac) => return Ok(()),
            std::cmp::Ordering::Equal => return Err(broken(found, BreakKind::Rewritten)),
            std::cmp::Ordering::Greater => {
                return Err(broken(checkpoint.seq, BreakKind::Gap { found }));
            }
        }
    }
    Err(broken(checkpoint.seq, BreakKind::Truncated { last }))
}

/// The MAC as 64 hex digits in JSON.
mod mac_hex {
    use super::ChainMac;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &ChainMac, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChainMac, D::Error> {
        let text = String::deserialize(d)?;
        let mut mac = [0u8; 32];
        hex::decode_to_slice(&text, &mut mac).map_err(serde::de::Error::custom)?;
        Ok(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{verify_chain, ChainStart, Chainer};
    use crate::audit::testutil::{chain_of, chain_with, event, key, CHAIN};

    const TIME: i64 = 1_700_000_123_000_000;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed(&[1; 32])
    }

    fn head_at(events: &[StoredEvent], seq: u64) -> ChainHead {
        let last = &events[seq as usize - 1];
        ChainHead {
            chain: last.event.chain.clone(),
            seq,
            mac: last.mac,
        }
    }

    fn broken(seq: u64, kind: BreakKind) -> Result<(), Broken> {
        Err(Broken {
            chain: CHAIN.to_owned(),
            seq,
            kind,
        })
    }

    #[test]
    fn a_signed_checkpoint_verifies() {
        let events = chain_of(&key(), 10);
        let s = signer();
        let signed = s.sign(&head_at(&events, 10), TIME);
        let checkpoint = verify_checkpoint(s.public_key(), &signed).unwrap();
        assert_eq!(checkpoint.head(), head_at(&events, 10));
        assert_eq!(checkpoint.time, TIME);
        assert_eq!(checkpoint.signer, s.public_key().id());
    }

    #[test]
    fn a_checkpoint_is_one_json_line() {
        let signed = signer().sign(&head_at(&chain_of(&key(), 3), 3), TIME);
        let line = signed.to_json_line().unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(&hex::encode(signed.checkpoint.mac)), "{line}");
        let back = SignedCheckpoint::from_json_line(&format!("{line}\n")).unwrap();
        assert_eq!(back, signed);
        assert!(verify_checkpoint(signer().public_key(), &back).is_ok());
        // Fields nobody signed are refused, not ignored.
        let extra = line.replacen("{\"chain\"", "{\"note\":\"x\",\"chain\"", 1);
        assert!(SignedCheckpoint::from_json_line(&extra).is_err());
        assert!(SignedCheckpoint::from_json_line("{}").is_err());
    }

    /// Ed25519 signatures are deterministic, so this pins the signed bytes
    /// (tag and field layout). The expected values were computed
    /// independently, with Python's `cryptography`, over the layout
    /// documented above.
    #[test]
    fn signature_is_stable() {
        let head = ChainHead {
            chain: CHAIN.to_owned(),
            seq: 42,
            mac: [0x5a; 32],
        };
        let signed = signer().sign(&head, TIME);
        assert_eq!(signed.checkpoint.signer, "34750f98bd59fcfc");
        assert_eq!(signed.signature, "C5Dd1M9Fx024IxSnWovIc0XQR50iq9exri4JE47IWejtDTzLJVVeoulRGzY5SVa3QPjMpOyr3oZOP+HApaXuBg==");
        assert_eq!(
            signer().public_key().to_text(),
            "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
        );
    }

    #[test]
    fn a_modified_field_fails() {
        let s = signer();
        let signed = s.sign(&head_at(&chain_of(&key(), 10), 10), TIME);
        let edits: [fn(&mut Checkpoint); 4] = [
            |c| c.chain.push('x'),
            |c| c.seq -= 1,
            |c| c.mac[0] ^= 1,
            |c| c.time += 1,
        ];
        for edit in edits {
            let mut edited = signed.clone();
            edit(&mut edited.checkpoint);
            assert!(matches!(
                verify_checkpoint(s.public_key(), &edited),
                Err(CheckpointError::BadSignature)
            ));
        }
        let mut edited = signed.clone();
        edited.checkpoint.signer = "0000000000000000".to_owned();
        assert!(matches!(
            verify_checkpoint(s.public_key(), &edited),
            Err(CheckpointError::WrongSigner { .. })
        ));

        // Edited as text, in the stored line.
        let line = signed.to_json_line().unwrap();
        let edited = line.replacen("\"seq\":10", "\"seq\":9", 1);
        assert_ne!(edited, line);
        let edited = SignedCheckpoint::from_json_line(&edited).unwrap();
        assert!(matches!(
            verify_checkpoint(s.public_key(), &edited),
            Err(CheckpointError::BadSignature)
        ));
    }

    #[test]
    fn an_anchor_is_signed_apart_from_a_checkpoint() {
        let s = signer();
        let events = chain_of(&key(), 10);
        let anchor = s.sign_anchor(&head_at(&events, 4), TIME, &head_at(&events, 9));
        let line = anchor.to_json_line().unwrap();
        assert!(line.contains("\"prune\":{\"checked_seq\":9"), "{line}");
        let back = SignedCheckpoint::from_json_line(&line).unwrap();
        let checked = verify_checkpoint(s.public_key(), &back).unwrap();
        assert!(checked.is_anchor());
        assert_eq!(checked.prune.unwrap().head(CHAIN), head_at(&events, 9));
        // A plain checkpoint's line does not say `prune`, as before.
        let plain = s.sign(&head_at(&events, 4), TIME).to_json_line().unwrap();
        assert!(!plain.contains("prune"), "{plain}");
        // Passing an anchor off as a checkpoint, or the other way round,
        // or changing what it was checked against, breaks the signature.
        let mut stripped = anchor.clone();
        stripped.checkpoint.prune = None;
        let mut dressed = s.sign(&head_at(&events, 4), TIME);
        dressed.checkpoint.prune = anchor.checkpoint.prune.clone();
        let mut moved = anchor.clone();
        if let Some(basis) = moved.checkpoint.prune.as_mut() {
            basis.checked_seq = 10;
        }
        for edited in [stripped, dressed, moved] {
            assert!(matches!(
                verify_checkpoint(s.public_key(), &edited),
                Err(CheckpointError::BadSignature)
            ));
        }
    }

    #[test]
    fn a_modified_signature_fails() {
        let s = signer();
        let signed = s.sign(&head_at(&chain_of(&key(), 10), 10), TIME);
        let mut bytes = BASE64.decode(&signed.signature).unwrap();
        for i in [0, 31, 32, 63] {
            bytes[i] ^= 0x04;
            let edited = SignedCheckpoint {
                signature: BASE64.encode(&bytes),
                ..signed.clone()
            };
            assert!(matches!(
                verify_checkpoint(s.public_key(), &edited),
                Err(CheckpointError::BadSignature)
            ));
            bytes[i] ^= 0x04;
        }
        for garbage in ["", "not base64!", &BASE64.encode([0u8; 63])] {
            let edited = SignedCheckpoint {
                signature: garbage.to_owned(),
                ..signed.clone()
            };
            assert!(matches!(
                verify_checkpoint(s.public_key(), &edited),
                Err(CheckpointError::MalformedSignature)
            ));
        }
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_fails() {
        let head = head_at(&chain_of(&key(), 10), 10);
        let ours = signer();
        let theirs = CheckpointSigner::generate();
        assert_ne!(ours.public_key().id(), theirs.public_key().id());
        let signed = theirs.sign(&head, TIME);
        assert!(matches!(
            verify_checkpoint(ours.public_key(), &signed),
            Err(CheckpointError::WrongSigner { .. })
        ));
        // Claiming to be ours does not help.
        let mut forged = signed;
        forged.checkpoint.signer = ours.public_key().id().to_owned();
        let resigned = theirs.key.sign(&forged.checkpoint.signed_bytes());
        forged.signature = BASE64.encode(resigned.to_bytes());
        assert!(matches!(
            verify_checkpoint(ours.public_key(), &forged),
            Err(CheckpointError::BadSignature)
        ));
    }

    #[test]
    fn public_key_text_round_trips() {
        let s = signer();
        let text = s.public_key().to_text();
        assert!(text.starts_with("ed25519:"), "{text}");
        let parsed = CheckpointPublicKey::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(&parsed, s.public_key());
        assert_eq!(parsed.to_string(), text);
        assert_eq!(text.parse::<CheckpointPublicKey>().unwrap(), parsed);
        // The id: the first 16 hex digits of SHA-256 of the key's bytes.
        let raw = BASE64.decode(&text["ed25519:".len()..]).unwrap();
        let digest = hex::encode(Sha256::digest(&raw));
        assert_eq!(parsed.id(), &digest[..16]);
        assert_eq!(
            format!("{parsed:?}"),
            format!("CheckpointPublicKey({})", &digest[..16])
        );
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        let good = signer().public_key().to_text();
        let encoded = &good["ed25519:".len()..];
        // The identity point: a weak key that would accept forged signatures.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for bad in [
            encoded.to_owned(),
            format!("ed448:{encoded}"),
            "ed25519:not base64!".to_owned(),
            format!("ed25519:{}", BASE64.encode([9u8; 31])),
            format!("ed25519:{}", BASE64.encode(identity)),
        ] {
            assert!(
                matches!(
                    CheckpointPublicKey::parse(&bad),
                    Err(CheckpointError::MalformedPublicKey(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn signer_seed_round_trips_and_is_redacted() {
        let s = CheckpointSigner::generate();
        let seed = s.to_seed();
        let again = CheckpointSigner::from_seed(&seed);
        assert_eq!(again.public_key(), s.public_key());
        let debug = format!("{s:?}");
        assert_eq!(
            debug,
            format!(
                "CheckpointSigner {{ signer: {}, key: [redacted] }}",
                s.public_key().id()
            )
        );
        assert!(!debug.contains(&hex::encode(*seed)));
        assert!(!debug.contains(&BASE64.encode(*seed)));
    }

    #[test]
    fn an_untouched_or_grown_log_extends_its_checkpoints() {
        let events = chain_of(&key(), 10);
        for seq in [1, 5, 10] {
            let checkpoint = signer().sign(&head_at(&events, seq), TIME).checkpoint;
            assert_eq!(extends(&checkpoint, &events), Ok(()));
        }
        // A checkpoint of the empty chain holds for any log of it.
        let empty = signer().sign(&ChainHead::genesis(CHAIN), TIME).checkpoint;
        assert_eq!(extends(&empty, &events), Ok(()));
        assert_eq!(extends(&empty, Vec::<StoredEvent>::new()), Ok(()));
    }

    #[test]
    fn a_truncated_log_verifies_but_does_not_extend() {
        let mut events = chain_of(&key(), 10);
        let s = signer();
        let signed = s.sign(&head_at(&events, 8), TIME);
        let checkpoint = verify_checkpoint(s.public_key(), &signed).unwrap();
        events.truncate(6);
        let head = verify_chain(&key(), ChainStart::genesis(CHAIN), &events).unwrap();
        assert_eq!(head.seq, 6);
        assert_eq!(
            extends(&checkpoint, &events),
            broken(8, BreakKind::Truncated { last: 6 })
        );
        assert_eq!(
            extends(&checkpoint, Vec::<StoredEvent>::new()),
            broken(8, BreakKind::Truncated { last: 0 })
        );
    }

    #[test]
    fn a_log_missing_the_checkpointed_event_does_not_extend() {
        let mut events = chain_of(&key(), 10);
        let checkpoint = signer().sign(&head_at(&events, 8), TIME).checkpoint;
        events.remove(7);
        assert_eq!(
            extends(&checkpoint, &events),
            broken(8, BreakKind::Gap { found: 9 })
        );
    }

    #[test]
    fn a_log_rewritten_with_the_mac_key_verifies_but_does_not_extend() {
        let events = chain_of(&key(), 10);
        let s = signer();
        let signed = s.sign(&head_at(&events, 8), TIME);
        let checkpoint = verify_checkpoint(s.public_key(), &signed).unwrap();

        // Rebuilt from scratch with the right key, one event's content
        // different (as one would to hide it), as long as before.
        let rewritten = chain_with(&key(), 10, |n| {
            let mut e = event(n);
            if n == 3 {
                e.result = "denied".to_owned();
            }
            e
        });
        let head = verify_chain(&key(), ChainStart::genesis(CHAIN), &rewritten).unwrap();
        assert_eq!(head.seq, 10);
        assert_eq!(
            extends(&checkpoint, &rewritten),
            broken(8, BreakKind::Rewritten)
        );

        // Rebuilt shorter and then grown past the checkpoint: the same.
        let regrown = chain_with(&key(), 12, |n| event(n + 100));
        assert!(verify_chain(&key(), ChainStart::genesis(CHAIN), &regrown).is_ok());
        assert_eq!(
            extends(&checkpoint, &regrown),
            broken(8, BreakKind::Rewritten)
        );
    }

    #[test]
    fn a_log_of_another_chain_does_not_extend() {
        let checkpoint = signer()
            .sign(&head_at(&chain_of(&key(), 10), 8), TIME)
            .checkpoint;
        let other = ChainHead::genesis("node-b");
        let mut chainer = Chainer::new(&key(), other);
        let events: Vec<_> = (1..=10)
            .map(|i| chainer.append(event(i)).unwrap())
            .collect();
        assert_eq!(
            extends(&checkpoint, &events),
            Err(Broken {
                chain: CHAIN.to_owned(),
                seq: 1,
                kind: BreakKind::WrongChain {
                    found: "node-b".to_owned()
                },
            })
        );
    }

    #[test]
    fn verification_starts_from_a_signed_checkpoint_after_pruning() {
        let events = chain_of(&key(), 10);
        let s = signer();
        let at_4 = s.sign(&head_at(&events, 4), TIME).to_json_line().unwrap();
        let at_8 = s.sign(&head_at(&events, 8), TIME).checkpoint;

        // Events 1..=4 pruned; the checkpoint at 4 is read back and verified.
        let pruned = &events[4..];
        let signed = SignedCheckpoint::from_json_line(&at_4).unwrap();
        let start = verify_checkpoint(s.public_key(), &signed).unwrap();
        let head = verify_chain(&key(), ChainStart::Checkpoint(start.head()), pruned).unwrap();
        assert_eq!(head, head_at(&events, 10));
        assert_eq!(extends(&at_8, pruned), Ok(()));

        // The first event after the pruned prefix edited.
        let mut edited = pruned.to_vec();
        edited[0].event.action = "secret.read".to_owned();
        assert_eq!(
            verify_chain(&key(), ChainStart::Checkpoint(start.head()), &edited),
            Err(Broken {
                chain: CHAIN.to_owned(),
                seq: 5,
                kind: BreakKind::MacMismatch,
            })
        );

        // A log rewritten with the key after pruning does not continue the
        // signed head, even though it verifies from genesis.
        let rewritten = chain_with(&key(), 10, |n| event(n + 100));
        assert!(verify_chain(
            &key(),
            ChainStart::Checkpoint(start.head()),
            &rewritten[4..]
        )
        .is_err());
    }
}
