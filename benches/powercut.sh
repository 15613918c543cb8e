#!/usr/bin/env bash
# Power-loss safety at a larger N: the power-cut VM test (tests/powercut_vm.rs) with N random
# cuts, each followed by a boot that checks superd's state, the image store, the manifests,
# that every workload runs once, and e2fsck. Prints each cut's moment; fails on the first
# corruption it finds.
#   sudo benches/powercut.sh [--cuts N]   full run (default 10 cuts)
#   sudo benches/powercut.sh --quick      CI smoke run (1 cut)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "powercut.sh: run as root" >&2; exit 1; }
cuts=10
while [ $# -gt 0 ]; do
    case $1 in
    --quick) cuts=1; shift ;;
    --cuts) cuts=$2; shift 2 ;;
    *) echo "powercut.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
packaging/deps.sh
packaging/appliance/deps.sh >/dev/null
start=$(date +%s)
set +e
SUPERD_TEST_PRIVILEGED=1 SUPERD_POWERCUTS=$cuts cargo test --quiet --test powercut_vm -- --nocapture 2>&1 |
    grep -E '^power cut|test result|panicked|after cut'
status=${PIPESTATUS[0]}
set -e
echo "powercut: $cuts cuts in $(( $(date +%s) - start )) s, status $status"
exit "$status"
