#!/usr/bin/env bash
# The cost of health checks (HTTP from superd vs an exec per check) on N workloads, superd's
# RSS with them, and exec latency vs crun exec and nsenter, interleaved with paired ratios.
#   sudo benches/health.sh           full run (100 workloads, 20 s window, 20 exec rounds)
#   sudo benches/health.sh --quick   CI smoke run (10 workloads, 3 s, 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "health.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/health.py target/release/superd target/release/superctl "$@"
