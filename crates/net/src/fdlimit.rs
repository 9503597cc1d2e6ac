//! The open-file limit and the connection caps derived from it.

use super::limiter::ConnLimits;

/// File descriptors kept free for everything that is not a client
/// connection: the database (SQLite files, or the PostgreSQL pool), logs,
/// the listener, connections being refused.
pub fn reserve(nofile: u64) -> u64 {
    (nofile / 10).max(256)
}

/// Above this many connections memory, not descriptors, is the limit that
/// matters (each connection costs its buffers and a task).
pub const MAX_CONNECTIONS_CEILING: u64 = 50_000;

/// Per address, unless set: enough for a NAT gateway in front of a fleet of
/// agents, far from enough for one client to exhaust the server.
pub const PER_ADDRESS_DEFAULT: u64 = 1_024;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limit
/// now in force.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

/// The caps for a process allowed `nofile` descriptors, where the flags
/// did not set them.
pub fn default_limits(
    nofile: u64,
    max_connections: Option<usize>,
    max_per_address: Option<usize>,
) -> ConnLimits {
    let derived = nofile
        .saturating_sub(reserve(nofile))
        .clamp(16, MAX_CONNECTIONS_CEILING);
    let max_connections = max_connections.unwrap_or(derived as usize).max(1);
    let max_per_address = max_per_address
        .unwrap_or(PER_ADDRESS_DEFAULT as usize)
        .clamp(1, max_connections);
    ConnLimits {
        max_connections,
        max_per_address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_descriptor_limit() {
        let l = default_limits(1024, None, None);
        assert_eq!(l.max_connections, 768);
        assert_eq!(l.max_per_address, 768);
        // Ten thousand long-poll waiters fit once the limit allows it.
        let l = default_limits(20_000, None, None);
        assert_eq!(l.max_connections, 18_000);
        assert!(l.max_connections >= 10_000);
        assert_eq!(l.max_per_address, 1024);
        let l = default_limits(1 << 20, None, None);
        assert_eq!(l.max_connections, 50_000);
        let l = default_limits(1 << 20, Some(10), Some(50));
        assert_eq!((l.max_connections, l.max_per_address), (10, 10));
    }
}
