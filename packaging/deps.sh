#!/usr/bin/env bash
# Installs the system packages superd's demo, tests and benchmarks need (Debian/Ubuntu).
set -euo pipefail
# nftables: NAT and published ports; iproute2 + iperf3: tests and the network benchmark;
# systemd: systemd-analyze checks the packaged unit; umoci builds the test images offline,
# zstd their zstd variant; docker-registry is the real registry the image tests pull from
# (started by the tests on 127.0.0.1 with their own config, never the packaged service).
# podman and skopeo: what benches/images.sh compares superd's pulls with. squashfs-tools packs
# a read-only (pre-seeded) image store. python3-prometheus-client parses /metrics in the tests.
pkgs=(busybox-static crun curl python3 nftables iproute2 iperf3 systemd umoci zstd docker-registry
      podman skopeo squashfs-tools python3-prometheus-client)
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
# The package's own service listens on every interface: never leave it running.
if command -v systemctl >/dev/null && systemctl is-enabled docker-registry >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
