#!/usr/bin/env bash
# superd restarts (SIGKILL, superctl reexec) with N running workloads: time until every one is
# adopted and how many restarted (target 0), against the floor and a restart without adoption.
#   sudo benches/adopt.sh           full run (100 workloads, 5 rounds)
#   sudo benches/adopt.sh --quick   CI smoke run (10 workloads, 1 round)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "adopt.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/adopt.py target/release/superd target/release/superctl "$@"
