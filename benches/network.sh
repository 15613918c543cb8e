#!/usr/bin/env bash
# Bridge networking cost: start latency of mode = "bridge" over mode = "none", and TCP
# throughput through a published port (DNAT from 127.0.0.1) vs. the container's own address.
#   sudo benches/network.sh           full run (25 starts per mode, 5 s iperf3 runs)
#   sudo benches/network.sh --quick   CI smoke run (3 starts per mode, 1 s iperf3 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "network.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/network.py target/release/superd target/release/superctl "$@"
