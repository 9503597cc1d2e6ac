//! What a streamed delivery reads: a team's secrets page by page, each page
//! at one instant together with the team's revision, so that the service
//! can tell whether every page belongs to the same revision (it ends the
//! answer when one does not) without holding one read snapshot open for the
//! whole answer (which, on SQLite, would keep the WAL from being truncated
//! while a slow client reads).

use super::StoreResult;
use async_trait::async_trait;
use tessera_core::domain::access::DeliveryAccess;
use tessera_core::domain::types::SecretRecord;

pub use super::secrets::StoredSecret;

/// Rows in one delivery page, at most (whatever their size).
pub const DELIVERY_PAGE_ROWS: usize = 4096;

/// One page of a team's secrets with their ciphertexts.
#[derive(Debug, Clone)]
pub struct DeliveryPage {
    /// The team's revision when the page was read.
    pub revision: i64,
    /// In canonical-name order.
    pub secrets: Vec<StoredSecret>,
    /// Whether secrets may follow (the page was cut by its byte budget or
    /// by [`DELIVERY_PAGE_ROWS`]); `false`: the page ends the team's
    /// secrets.
    pub more: bool,
}

impl DeliveryPage {
    /// A page of `secrets` read with `revision`, cut at `max_bytes` of
    /// ciphertext.
    pub(crate) fn of(revision: i64, secrets: Vec<StoredSecret>, max_bytes: usize) -> Self {
        let bytes: usize = secrets.iter().map(|s| s.ciphertext.len()).sum();
        let more = bytes >= max_bytes || secrets.len() >= DELIVERY_PAGE_ROWS;
        Self {
            revision,
            secrets,
            more,
        }
    }
}

#[async_trait]
pub trait DeliveryPageStore {
    /// The team's secrets after canonical name `after`, in canonical-name
    /// order, up to the first whose ciphertext takes the page to
    /// `max_bytes` (so at least one, when any is left) and at most
    /// [`DELIVERY_PAGE_ROWS`], with the team's revision at the same instant.
    async fn delivery_page(
        &self,
        team: &DeliveryAccess,
        after: &str,
        max_bytes: usize,
    ) -> StoreResult<DeliveryPage>;
    /// Every secret of the team without its ciphertext, in canonical-name
    /// order, with the team's revision at the same instant: what a streamed
    /// answer records before it sends a value.
    async fn delivery_records(
        &self,
        team: &DeliveryAccess,
    ) -> StoreResult<(i64, Vec<SecretRecord>)>;
}
