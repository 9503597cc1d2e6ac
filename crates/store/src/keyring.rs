//! The keyring aggregate: which master keys the data is sealed under (an id
//! and a check value each), and keys stored wrapped by the master key.

use super::row::Row;
use super::StoreResult;
use async_trait::async_trait;
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::KekRecord;

pub(crate) const KEK_COLUMNS: &str = "kek_id, check_value, created_at";

pub(crate) fn kek_row<R: Row>(r: &R) -> Result<KekRecord, R::Error> {
    Ok(KekRecord {
        kek_id: r.col(0)?,
        check_value: r.col(1)?,
        created_at: r.col(2)?,
    })
}

#[async_trait]
pub trait KeyringStore {
    async fn keks(&self) -> StoreResult<Vec<KekRecord>>;
    /// Records the master key of a new store, unless a first key is already
    /// recorded (then does nothing: the caller re-reads and verifies).
    async fn record_first_kek(&self, kek: KekRecord) -> StoreResult<()>;
    /// A key stored wrapped by the master key, by purpose: `(kek_id, wrapped)`.
    async fn wrapped_key(&self, purpose: &str) -> StoreResult<Option<(String, Vec<u8>)>>;
    /// Stores a wrapped key unless one exists for the purpose (then does
    /// nothing: nodes starting together keep the first one).
    async fn insert_wrapped_key(
        &self,
        purpose: &str,
        kek_id: &str,
        wrapped: Vec<u8>,
        now: Micros,
    ) -> StoreResult<()>;
}
