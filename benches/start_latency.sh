#!/usr/bin/env bash
# Start latency of superd (default seccomp and unconfined), crun and the namespace floor,
# interleaved with the same idle gap before every sample; 100 at once; superd/shim memory.
#   sudo benches/start_latency.sh           full run (25 rounds, 100 at once)
#   sudo benches/start_latency.sh --quick   CI smoke run (3 rounds, 10 at once)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "start_latency.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/start_latency.py target/release/superd target/release/superctl "$@"
