#!/usr/bin/env bash
# Start latency of superd vs crun on the same busybox-static rootfs, and superd/shim memory.
#   sudo benches/start_latency.sh           full run (25 singles, 3 x 100 at once, 25 crun)
#   sudo benches/start_latency.sh --quick   CI smoke run (3 singles, 10 at once, 3 crun)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "start_latency.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/start_latency.py target/release/superd target/release/superctl "$@"
