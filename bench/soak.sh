#!/usr/bin/env bash
# Soak test (issue 9): good clients (upserts and listings with a valid key),
# bad clients (wrong keys, malformed requests, large unauthenticated bodies)
# and slow clients (slowloris heads, idle keep-alive sockets) together
# against the release binary for N minutes, on loopback only, on SQLite and,
# when TESSERA_TEST_DATABASE_URL is set, on PostgreSQL too. Reports errors,
# p50/p99 per minute and RSS; exits 3 on any unexpected outcome.
#
#   bench/soak.sh --minutes 10
#
# Other options: target/release/tessera-bench soak --help.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p tessera -p tessera-bench
exec target/release/tessera-bench soak --tessera target/release/tessera "$@"
