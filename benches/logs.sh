#!/usr/bin/env bash
# Log throughput: a workload writing as fast as it can through superd's log path (pipe ->
# init shim -> rotated, timestamped records) vs the same writer straight into a file, and the
# CPU the shim spends on it.
#   sudo benches/logs.sh           full run (256 MiB, 3 runs each)
#   sudo benches/logs.sh --quick   CI smoke run (16 MiB, 1 run each)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "logs.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/logs.py target/release/superd target/release/superctl "$@"
