//! The runtime API (`/runtime/v1/…`): the headers a workload sends and the
//! body it receives. The server writes [`SecretsBody`] with borrowed fields
//! (no copy of a value is made to answer); the client reads the same shape
//! into owned ones, with the value in a type of its choosing (one that
//! wipes itself).

use serde::{Deserialize, Serialize};

/// The request header in which an agent (or `tessera run`) names itself, so
/// that two agents sharing a key are told apart.
pub const INSTANCE_HEADER: &str = "x-tessera-agent";

/// The request header in which `tessera agent` and `tessera run` say what
/// kind of consumer they are (`agent`, `supervisor`, `one-shot`).
pub const KIND_HEADER: &str = "x-tessera-consumer-kind";

/// The request header in which a client says what it holds (`none`, or the
/// `ETag` of an answer it applied in full), so that the consumers view shows
/// what a workload really holds rather than what it was sent.
pub const HOLDS_HEADER: &str = "x-tessera-holds";

/// An agent instance id, as sent in [`INSTANCE_HEADER`]: up to this many
/// visible ASCII characters.
pub const MAX_INSTANCE_CHARS: usize = 128;

/// Whether `id` is an acceptable instance id.
pub fn valid_instance(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_INSTANCE_CHARS && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Every secret a workload key may read, at one revision of its team
/// (`GET /runtime/v1/secrets`). `S` is one secret: the server's borrowed
/// view, or the client's owned [`SecretItem`].
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretsBody<S> {
    /// The team's revision these values belong to; also the `ETag`.
    pub revision: i64,
    pub secrets: Vec<S>,
}

/// One secret of a [`SecretsBody`] as a client reads it: the fields it uses
/// (the server also sends `updated_at` and `fingerprint`), with the value
/// in `V` (the workload's is a `SecretValue`, wiped on drop).
#[derive(Deserialize)]
pub struct SecretItem<V> {
    /// The spelling the secret was created with.
    pub name: String,
    /// The name with every character other than letters and digits as `_`.
    pub canonical_name: String,
    pub value: V,
    pub version: i64,
}

/// One secret by name (`GET /runtime/v1/secrets/{name}`, the shape
/// webhook-style consumers read `$.value` from), as a client reads it: the
/// value in `V`, as in [`SecretItem`].
#[derive(Serialize, Deserialize)]
pub struct OneSecret<V> {
    /// The spelling the secret was created with.
    pub name: String,
    pub value: V,
    pub version: i64,
    /// Keyed MAC of the value and the secret's identity.
    pub fingerprint: String,
}
