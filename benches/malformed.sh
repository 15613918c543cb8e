#!/usr/bin/env bash
# superd's peak RSS under 200 malformed manifests (three of them 1 MiB single lines), against
# its idle RSS with one workload running. Target: peak <= 2x idle.
#   sudo benches/malformed.sh           full run (200 files)
#   sudo benches/malformed.sh --quick   CI smoke run (50 files)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "malformed.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/malformed.py target/release/superd target/release/superctl "$@"
