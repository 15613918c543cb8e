#!/usr/bin/env bash
# Builds superd and runs it on the shipped manifests/ (a web server published on port 8080, a
# memory-limited worker that reaches it by name, and a crash-looping job), printing
# `superctl status` every few seconds. Ctrl-C stops superd, which stops every workload and
# removes every cgroup, link and nftables rule it made (the bridge superd0, 10.77.0.0/16).
#   sudo examples/demo.sh            run until Ctrl-C
#   DEMO_SECONDS=20 sudo examples/demo.sh   run for 20 seconds
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (sudo examples/demo.sh)" >&2; exit 1; }
packaging/deps.sh
cargo build --release --quiet
work=$(mktemp -d /tmp/superd-demo.XXXXXX)
sock="$work/superd.sock"
# superd reads only manifests that root owns and no one else may write: a checkout owned by
# the user who cloned it is copied into a root-owned directory first.
install -d -m 0755 "$work/manifests"
install -m 0644 manifests/*.toml "$work/manifests/"
./target/release/superd --manifests "$work/manifests" --state-dir "$work/state" --socket "$sock" \
    --cgroup-root "superd-demo-$$" &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
echo "superd running as PID $pid; try: ./target/release/superctl --socket $sock status"
end=$(( $(date +%s) + ${DEMO_SECONDS:-0} ))
sleep 1
while kill -0 "$pid" 2>/dev/null; do
    ./target/release/superctl --socket "$sock" status || true
    curl -s -o /dev/null -w "web via its published port 127.0.0.1:8080: HTTP %{http_code}\n" \
        --max-time 2 http://127.0.0.1:8080/ || true
    echo
    if [ "${DEMO_SECONDS:-0}" -gt 0 ] && [ "$(date +%s)" -ge "$end" ]; then break; fi
    sleep 3
done
echo "last lines of each workload log ($work/state/logs, removed on exit):"
tail -n 3 "$work"/state/logs/*.log || true
