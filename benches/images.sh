#!/usr/bin/env bash
# Pull + unpack from a loopback registry: superd vs podman pull vs skopeo copy + umoci unpack
# vs the tar floor; start latency image vs directory; disk of 10 workloads on one image.
#   sudo benches/images.sh           full run (7 rounds; also a 2-layer image of tens of MB)
#   sudo benches/images.sh --quick   CI smoke run (2 rounds, the small test image)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "images.sh: run as root" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
exec python3 benches/images.py target/release/superd target/release/superctl "$@"
