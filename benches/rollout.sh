#!/usr/bin/env bash
# Rollback latency: from the failed health verdict of a changed manifest to the previous spec
# running, against the floor (superctl restart of the same workload).
#   sudo benches/rollout.sh           full run (10 rounds)
#   sudo benches/rollout.sh --quick   CI smoke run (2 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "rollout.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/rollout.py target/release/superd target/release/superctl "$@"
