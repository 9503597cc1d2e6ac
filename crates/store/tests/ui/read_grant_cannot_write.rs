// A grant obtained to read a team's secrets is refused by the store's write:
// `upsert_secret` asks for `TeamAccess<WriteSecrets>`.
use tessera_core::domain::access::{ReadSecrets, TeamAccess};
use tessera_store::{SealedWrite, SecretStore, SecretWrite, StoreResult};

async fn write_with_a_read_grant(
    store: &dyn SecretStore,
    grant: &TeamAccess<ReadSecrets>,
    write: SealedWrite,
) -> StoreResult<SecretWrite> {
    store.upsert_secret(grant, write, 1).await
}

fn main() {
    let _ = write_with_a_read_grant;
}
