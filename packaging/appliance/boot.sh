#!/usr/bin/env bash
# Boots an image made by build.sh headless in QEMU (TCG, q35), the serial console on stdout
# and in OUT_DIR/console.log, and exits 0 only if the guest powered off cleanly.
#
#   packaging/appliance/boot.sh OUT_DIR [--timeout S] [--append ARGS] [--mem SIZE] [--smp N]
#                               [--watchdog] [--disk FILE] [--cut S]
#
#   --timeout S     kill the VM after S seconds (default 120): a hang is a failed boot
#   --append ARGS   more kernel command line (e.g. 'superd.log=debug')
#   --mem SIZE      guest memory (default 512M)
#   --smp N         guest CPUs (default 1)
#   --watchdog      add QEMU's i6300esb watchdog (reset when it fires; needs an image built
#                   with --kernel generic --module i6300esb)
#   --disk FILE     attach FILE (raw) as the virtio disk /dev/vda (build.sh --module
#                   virtio_pci --module virtio_blk)
#   --cut S         cut the power after S seconds (SIGKILL to QEMU: what the guest had not
#                   written to its disk is lost, as in a power failure)
#
# Exit status: 0 clean power-off ("reboot: Power down" on the console, no "Kernel panic");
# 1 the guest panicked, was killed by the timeout, or QEMU failed; 3 the guest reset (a
# watchdog fired, or it rebooted: with -no-reboot QEMU exits then); 4 the power was cut as
# asked (--cut); 2 usage or setup error. With `panic=-1 -no-reboot`, QEMU exits 0 after a panic too, so the
# verdict comes from the console, never from QEMU's status alone.
set -euo pipefail

say() { printf 'boot.sh: %s\n' "$*" >&2; }
die() { printf 'boot.sh: error: %s\n' "$*" >&2; exit 2; }
usage() {
    sed -n '4,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

out=
timeout=120
append=
mem=512M
smp=1
devices=()
cut=
while [ $# -gt 0 ]; do
    case $1 in
    --timeout) [ $# -ge 2 ] || usage; timeout=$2; shift 2 ;;
    --append) [ $# -ge 2 ] || usage; append=$2; shift 2 ;;
    --mem) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
    --smp) [ $# -ge 2 ] || usage; smp=$2; shift 2 ;;
    --watchdog) devices+=(-device i6300esb -action watchdog=reset); shift ;;
    --disk) [ $# -ge 2 ] || usage; [ -f "$2" ] || die "--disk $2 is not a file"
        devices+=(-drive "file=$2,if=virtio,format=raw,cache=writeback"); shift 2 ;;
    --cut) [ $# -ge 2 ] || usage; cut=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$out" ] || die "more than one OUT_DIR ($out, $1)"; out=$1; shift ;;
    esac
done
[ -n "$out" ] || usage
[[ $timeout =~ ^[0-9]+$ ]] && [ "$timeout" -gt 0 ] || die "--timeout must be a positive number of seconds"
for f in vmlinuz initramfs.img; do
    [ -f "$out/$f" ] || die "$out/$f is missing (make it with packaging/appliance/build.sh)"
done
qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || die "qemu-system-x86_64 is missing: run packaging/appliance/deps.sh"

console=$out/console.log
: >"$console"
# TCG only: /dev/kvm on this machine kind is a nested KVM that hangs stock kernels.
# q35, not microvm (no HPET/PM timer: TSC calibration fails under load).
# No NIC: the guest's networking is its own bridge; nothing leaves the VM.
start=$(date +%s.%N)
set +e
limit=$timeout
signal=TERM
if [ -n "$cut" ]; then limit=$cut; signal=KILL; fi
timeout -s "$signal" --kill-after=5 "$limit" "$qemu" \
    -accel tcg -machine q35 -cpu max -m "$mem" -smp "$smp" \
    -nodefaults -no-user-config -display none -monitor none -nic none \
    -serial stdio -no-reboot "${devices[@]}" \
    -kernel "$out/vmlinuz" -initrd "$out/initramfs.img" \
    -append "console=ttyS0 panic=-1 quiet $append" \
    </dev/null 2>&1 | tee "$console"
status=${PIPESTATUS[0]}
set -e
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

text=$(tr -d '\r' <"$console")
if [ -n "$cut" ] && { [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; }; then
    say "CUT: the power was cut after ${elapsed}s"
    exit 4
fi
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    say "FAIL: no power-off within ${timeout}s (VM killed after ${elapsed}s)"
    exit 1
fi
if grep -q 'Kernel panic' <<<"$text"; then
    say "FAIL: the guest kernel panicked after ${elapsed}s: $(grep -m1 'Kernel panic' <<<"$text")"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    say "FAIL: qemu exited with status $status after ${elapsed}s"
    exit 1
fi
if ! grep -q 'reboot: Power down' <<<"$text"; then
    say "RESET: the guest reset after ${elapsed}s without a power-off (a watchdog fired, or it rebooted)"
    exit 3
fi
say "ok: clean power-off after ${elapsed}s"
