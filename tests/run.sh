#!/usr/bin/env bash
# Builds and runs every test. As root, the privileged tests (real namespaces, cgroups, mounts)
# run too (SUPERD_TEST_PRIVILEGED=1). Under CI=true any test that reported a skip fails the run.
# Then every benchmark runs in its quick mode so it cannot rot.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
    packaging/deps.sh
    # qemu, the Debian cloud kernel and cpio for the appliance VM boot test.
    packaging/appliance/deps.sh
    export SUPERD_TEST_PRIVILEGED=1
else
    echo "tests/run.sh: not root: privileged tests will be skipped (run with sudo)" >&2
fi
skips=$(mktemp)
trap 'rm -f "$skips"' EXIT
export SUPERD_SKIP_LOG="$skips"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo build --all-targets --quiet
cargo test -- --test-threads=2
if [ -s "$skips" ]; then
    echo "tests/run.sh: skipped tests:" >&2
    cat "$skips" >&2
    if [ "${CI:-}" = "true" ]; then
        echo "tests/run.sh: a test was skipped under CI; failing" >&2
        exit 1
    fi
fi
for b in benches/*.sh; do
    [ -x "$b" ] || continue
    echo "== benchmark (quick): $b"
    "$b" --quick
done
