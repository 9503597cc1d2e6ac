//! What crosses the wire between the server and its clients: the error body
//! every route answers with, the management API's plain response bodies, the
//! history and audit bodies as clients read them, and the runtime API's
//! headers and bodies. The
//! server (`tessera-server`), the workload binary (`tessera-workload`), the
//! admin CLI and the tests all read and write these types, so a field
//! renamed on one side fails to compile on the other.
//!
//! This crate depends on serde, `http` and utoipa only: the workload binary
//! links it without pulling in anything of the server's.

pub mod error;
pub mod history;
pub mod management;
pub mod runtime;

/// Request bodies larger than this are refused with 413 (the API's limit,
/// and how much the network layer drains of a body a handler left unread).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
