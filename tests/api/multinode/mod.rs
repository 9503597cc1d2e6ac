//! Several `tessera serve` processes on one PostgreSQL database: race-free
//! upserts across processes, what one node writes the other sees at once, a
//! key revoked on one node is refused by the other within a second, and a
//! node whose database disappears answers 503 quickly and recovers by itself.
//!
//! PostgreSQL only. Support (nodes, a breakable proxy) is apart from the
//! tests; every test skips by the suite's one rule
//! ([`crate::common::pg_schema_or_skip`]).

mod cluster;
mod consistency;
mod outage;
mod proxy;
mod wakeups;

pub(crate) use cluster::two_nodes;
