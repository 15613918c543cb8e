#!/usr/bin/env bash
# Installs the system packages superd's demo, tests and benchmarks need (Debian/Ubuntu).
set -euo pipefail
# nftables: NAT and published ports; iproute2 + iperf3: tests and the network benchmark;
# systemd: systemd-analyze checks the packaged unit.
pkgs=(busybox-static crun curl python3 nftables iproute2 iperf3 systemd)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "packaging/deps.sh: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
