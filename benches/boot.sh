#!/usr/bin/env bash
# superd as the init of a VM: boot to all-workloads-running, poweroff time, superd's RSS as
# PID 1. Boots the appliance image (packaging/appliance) with benches/appliance/manifests
# (7 workloads: 3 bridged, one publishing a port, 3 unnetworked, all with cgroup limits)
# under QEMU TCG, serially, and reports medians.
#   sudo benches/boot.sh            full run: release build, 5 boots
#   sudo benches/boot.sh --quick    CI smoke run: 1 boot
#   sudo benches/boot.sh --boots N
#   sudo benches/boot.sh --watchdog  the same image with the kernel's softdog watchdog armed by
#                                    superd (superd.watchdog=): its cost in superd's RSS
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "boot.sh: run as root" >&2; exit 1; }
boots=5
watchdog=
while [ $# -gt 0 ]; do
    case $1 in
    --watchdog) watchdog=1; shift ;;
    --quick) boots=1; shift ;;
    --boots) boots=$2; shift 2 ;;
    *) echo "boot.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
packaging/deps.sh
packaging/appliance/deps.sh >/dev/null
cargo build --release --bins --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [ -n "$watchdog" ]; then
    # softdog: the cloud kernel's watchdog (the generic kernel, which has i6300esb, fails this
    # image's nftables setup); superd's side is the same for any device.
    packaging/appliance/build.sh --bin target/release --manifests benches/appliance \
        --module softdog "$out" 2>&1 | sed 's/^/  /'
    echo "watchdog on (softdog, 10 s timeout, petted every 3.3 s):"
    exec python3 benches/boot.py "$out" "$boots" \
        --append "superd.watchdog=/dev/watchdog superd.watchdog_timeout=10"
fi
packaging/appliance/build.sh --bin target/release --manifests benches/appliance "$out" 2>&1 |
    sed 's/^/  /'
exec python3 benches/boot.py "$out" "$boots"
