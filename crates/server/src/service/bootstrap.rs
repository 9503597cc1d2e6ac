//! Starting up: checking the master key against the data, creating
//! organizations (with their default team, admin user and admin key).

use crate::crypto::fingerprint::{self, Fingerprinter};
use crate::crypto::keyring::KeyringError;
use crate::crypto::Keyring;
use crate::domain::key_token::NewKeyToken;
use crate::domain::time::now_micros;
use crate::domain::types::KekRecord;
use crate::store::{NewOrganization, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fingerprint(#[from] fingerprint::UnwrapError),
}

/// Loads the fingerprint key, creating it on a store that has none. Nodes
/// starting together on a new database keep whichever key was stored first.
pub async fn load_fingerprinter(
    store: &dyn Store,
    keyring: &Keyring,
) -> Result<Fingerprinter, BootstrapError> {
    if let Some((_, wrapped)) = store.wrapped_key(fingerprint::PURPOSE).await? {
        return Ok(Fingerprinter::unwrap(keyring, &wrapped)?);
    }
    let (_, wrapped) = Fingerprinter::generate(keyring)?;
    store
        .insert_wrapped_key(
            fingerprint::PURPOSE,
            keyring.kek_id(),
            wrapped,
            now_micros(),
        )
        .await?;
    let (_, stored) = store
        .wrapped_key(fingerprint::PURPOSE)
        .await?
        .ok_or_else(|| StoreError::internal("the fingerprint key did not persist"))?;
    Ok(Fingerprinter::unwrap(keyring, &stored)?)
}

/// The `purpose` under which the audit chain key is stored, wrapped by the
/// master key (like the fingerprint key: re-wrapped, never regenerated, when
/// the master key rotates).
pub const AUDIT_KEY_PURPOSE: &str = "audit-chain";

/// The `purpose` under which the seed of the key that signs audit
/// checkpoints is stored, wrapped by the master key like the chain key.
pub const CHECKPOINT_KEY_PURPOSE: &str = "audit-checkpoint";

fn wrapped_key_aad(purpose: &str, kek_id: &str) -> Vec<u8> {
    format!("tessera/wrapped-key/{purpose}/v1/{kek_id}").into_bytes()
}

/// Loads the 32-byte key stored for `purpose`, creating it with `generate`
/// on a store that has none (nodes starting together on a new database keep
/// whichever key was stored first).
async fn load_wrapped_secret(
    store: &dyn Store,
    keyring: &Keyring,
    purpose: &str,
    generate: impl FnOnce() -> zeroize::Zeroizing<[u8; 32]>,
) -> Result<zeroize::Zeroizing<[u8; 32]>, BootstrapError> {
    let aad = wrapped_key_aad(purpose, keyring.kek_id());
    let stored = match store.wrapped_key(purpose).await? {
        Some((_, stored)) => stored,
        None => {
            let wrapped = keyring.wrap(generate().as_ref(), &aad).map_err(|_| {
                StoreError::internal(format!("the {purpose} key could not be wrapped"))
            })?;
            store
                .insert_wrapped_key(purpose, keyring.kek_id(), wrapped, now_micros())
                .await?;
            // Read back: another node may have stored its key first.
            let (_, stored) = store.wrapped_key(purpose).await?.ok_or_else(|| {
                StoreError::internal(format!("the {purpose} key did not persist"))
            })?;
            stored
        }
    };
    let bytes = keyring.unwrap(&stored, &aad).ok_or_else(|| {
        StoreError::internal(format!(
            "the {purpose} key does not open under this master key"
        ))
    })?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::internal(format!("the stored {purpose} key is malformed")))?;
    Ok(zeroize::Zeroizing::new(bytes))
}

/// Loads the audit chain key, creating it on a store that has none.
pub async fn load_audit_key(
    store: &dyn Store,
    keyring: &Keyring,
) -> Result<crate::audit::chain::ChainKey, BootstrapError> {
    use crate::audit::chain::ChainKey;
    let bytes = load_wrapped_secret(store, keyring, AUDIT_KEY_PURPOSE, || {
        zeroize::Zeroizing::new(*ChainKey::generate().as_bytes())
    })
    .await?;
    Ok(ChainKey::from_bytes(*bytes))
}

/// Loads the key that signs audit checkpoints, creating it on a store that
/// has none. Kept apart from the chain key: the checkpoints it signs leave
/// the database, and only its public half is needed to check them.
pub async fn load_checkpoint_signer(
    store: &dyn Store,
    keyring: &Keyring,
) -> Result<crate::audit::checkpoint::CheckpointSigner, BootstrapError> {
    use crate::audit::checkpoint::CheckpointSigner;
    let seed = load_wrapped_secret(store, keyring, CHECKPOINT_KEY_PURPOSE, || {
        CheckpointSigner::generate().to_seed()
    })
    .await?;
    Ok(CheckpointSigner::from_seed(&seed))
}

/// Refuses a master key that does not match the data; records a new store's
/// first key. Never writes under a key the database does not know when the
/// database already holds one.
pub async fn check_master_key(store: &dyn Store, keyring: &Keyring) -> Result<(), BootstrapError> {
    if verify(store, keyring).await? {
        return Ok(());
    }
    store
        .record_first_kek(KekRecord {
            kek_id: keyring.kek_id().to_owned(),
            check_value: keyring
                .check_value()
                .map_err(|e| StoreError::internal(e.to_string()))?,
            created_at: now_micros(),
        })
        .await?;
    // Another node may have recorded a different key at the same moment:
    // verify again against whatever stands now.
    if !verify(store, keyring).await? {
        return Err(StoreError::internal("the master key record did not persist").into());
    }
    tracing::info!(
        kek_id = keyring.kek_id(),
        "recorded the master key of a new store"
    );
    Ok(())
}

async fn verify(store: &dyn Store, keyring: &Keyring) -> Result<bool, BootstrapError> {
    let stored: Vec<(String, Vec<u8>)> = store
        .keks()
        .await?
        .into_iter()
        .map(|k| (k.kek_id, k.check_value))
        .collect();
    Ok(keyring.verify_against(&stored)?)
}

/// Creates an organization and returns its admin API key (shown only here).
pub async fn create_organization(store: &dyn Store, name: &str) -> Result<NewKeyToken, StoreError> {
    let token = NewKeyToken::generate();
    let new = NewOrganization::build(name, now_micros(), &token.prefix, token.secret_hash.clone());
    let mut event =
        super::audit::system_event(crate::domain::audit_action::AuditAction::OrganizationCreate);
    event.org_id = Some(new.org.id.clone());
    event.target_id = Some(new.org.id.clone());
    event.target_name = Some(new.org.name.clone());
    store.create_organization(new, event).await?;
    Ok(token)
}
