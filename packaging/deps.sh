#!/usr/bin/env bash
# Installs the system packages superd's demo, tests and benchmarks need (Debian/Ubuntu).
set -euo pipefail
# nftables: NAT and published ports; iproute2 + iperf3: tests and the network benchmark;
# systemd: systemd-analyze checks the packaged unit; umoci builds the test images offline,
# zstd their zstd variant; docker-registry is the real registry the image tests pull from
# (started by the tests on 127.0.0.1 with their own config, never the packaged service).
# podman and skopeo: what benches/images.sh compares superd's pulls with. squashfs-tools packs
# a read-only (pre-seeded) image store. python3-prometheus-client parses /metrics in the tests.
# nginx, redis, postgresql and mosquitto run under superd from examples/ (tests/packaged.rs),
# driven by their clients: apache2-utils (ab), redis-tools, postgresql's pgbench and psql,
# mosquitto-clients. Their own services are never started (policy-rc.d below).
pkgs=(busybox-static crun curl python3 nftables iproute2 iperf3 systemd umoci zstd docker-registry
      podman skopeo squashfs-tools python3-prometheus-client
      nginx apache2-utils redis-server redis-tools postgresql mosquitto mosquitto-clients
      python3-venv)
daemons=(docker-registry nginx redis-server postgresql mosquitto)
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
    # Packages must not start their daemons (Debian's policy-rc.d protocol: 101 = denied),
    # unless the machine already has its own policy.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$policy" ]; then rm -f "$policy"; fi
fi
# The services of the daemons installed here listen on the host (some on every interface):
# never leave them enabled or running. (A daemon the machine had before is left as it was.)
if command -v systemctl >/dev/null; then
    now=""
    if [ -d /run/systemd/system ]; then now="--now"; fi
    for d in "${daemons[@]}"; do
        case " ${missing[*]} " in *" $d "*) systemctl disable $now "$d" >/dev/null 2>&1 || true ;; esac
    done
fi
# kubernetes-validate (from PyPI; it bundles the Kubernetes schemas) checks what
# `superctl export --kubernetes` writes (tests/export.rs), from a venv of its own.
k8s_venv=/var/cache/superd-test/k8s-validate
if [ "$(id -u)" -eq 0 ] && [ ! -x "$k8s_venv/bin/kubernetes-validate" ]; then
    mkdir -p "$(dirname "$k8s_venv")"
    python3 -m venv "$k8s_venv"
    "$k8s_venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
