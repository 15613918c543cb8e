#!/usr/bin/env python3
"""Rollback latency: from the health verdict that fails a changed manifest within its bake
time to the previous spec running again, side by side in one run with the floor, a
`superctl restart` of the same workload (a rollback is a stop and a start of another spec),
interleaved, with the same idle gap before every sample; times come from superd's own
event stream (millisecond timestamps).

The workload is busybox httpd (network mode none) with an HTTP check every 200 ms (two
failures make it unhealthy) and `[rollout] bake = "60s"`; the bad change listens on another
port, so its first probes fail.

Usage: rollout.py SUPERD SUPERCTL [--quick]   (run as root; see rollout.sh)
"""
import datetime, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

QUICK = "--quick" in sys.argv
SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
ROUNDS = 2 if QUICK else 10
GAP = 0.5


def manifest(rootfs, port, bake):
    return (f'command = ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:{port}", "-h", "/"]\n'
            f'[rootfs]\npath = "{rootfs}"\n[network]\nmode = "none"\n[stop]\ntimeout = "2s"\n'
            '[health]\nhttp = "http://localhost:8080/etc/passwd"\ninterval = "200ms"\n'
            'timeout = "200ms"\nretries = 2\nstart_interval = "100ms"\n'
            f'[rollout]\nbake = "{bake}"\n')


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def events(sd, since):
    out = subprocess.run([SUPERCTL, "--socket", sd.sock, "events", "--json", "--no-follow",
                          "--since", since], capture_output=True, check=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def t(e):
    return datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp()


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def wait_for(sd, since, pred, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        evs = events(sd, since)
        found = pred(evs)
        if found is not None:
            return found
        time.sleep(0.05)
    raise RuntimeError(f"timed out; events: {events(sd, since)}")


def healthy_again(sd, since):
    """Waits until the workload is healthy with the good spec again."""
    def pred(evs):
        seen_rollout = any(e["kind"] == "rollout" for e in evs)
        for e in evs:
            if seen_rollout and e["kind"] == "health" and e.get("health") == "healthy":
                return e
        return None
    return wait_for(sd, since, pred)


def run():
    work = tempfile.mkdtemp(prefix="superd-bench-rollout-")
    mdir = os.path.join(work, "manifests")
    os.makedirs(mdir)
    rootfs = os.path.join(work, "rootfs")
    benchlib.busybox_rootfs(rootfs)
    path = os.path.join(mdir, "web.toml")
    write(path, manifest(rootfs, 8080, "1s"))
    sd = benchlib.Superd(SUPERD, SUPERCTL, work, mdir, f"superd-bench-rollout-{os.getpid()}")
    samples = {"rollback": [], "restart": []}
    try:
        # The good spec: it lasts its (short) bake, then the bake is long for the changes.
        wait_for(sd, "1h", lambda evs: next((e for e in evs if e["kind"] == "rollout"), None))
        write(path, manifest(rootfs, 8080, "60s"))
        time.sleep(1)
        print(f"rollback latency, {ROUNDS} interleaved rounds, {GAP * 1000:.0f} ms idle before each sample")
        for i in range(ROUNDS):
            # rollback: a bad change (wrong port), its failed verdict, the good spec running.
            time.sleep(GAP)
            since = now_rfc3339()
            write(path, manifest(rootfs, 8081 + i, "60s"))
            unhealthy = wait_for(sd, since, lambda evs: next(
                (e for e in evs if e["kind"] == "health" and e.get("health") == "unhealthy"), None))
            running = wait_for(sd, since, lambda evs: next(
                (e for e in evs if e["kind"] == "state" and e.get("state") == "running"
                 and t(e) > t(unhealthy)), None))
            samples["rollback"].append(t(running) - t(unhealthy))
            healthy_again(sd, since)
            # floor: superctl restart of the same workload, request to running.
            time.sleep(GAP)
            since = now_rfc3339()
            t0 = time.time()
            subprocess.run([SUPERCTL, "--socket", sd.sock, "restart", "web"], check=True,
                           stdout=subprocess.DEVNULL)
            running = wait_for(sd, since, lambda evs: next(
                (e for e in evs if e["kind"] == "state" and e.get("state") == "running"), None))
            samples["restart"].append(t(running) - t0)
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"  failed health verdict -> previous spec running: {med['rollback'] * 1000:.0f} ms (median)")
        print(f"  floor, superctl restart -> running: {med['restart'] * 1000:.0f} ms (median)")
        ratio = statistics.median(a / b for a, b in zip(samples["rollback"], samples["restart"]))
        print(f"  paired ratio rollback/restart {ratio:.2f}x")
    finally:
        sd.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("rollout: run as root")
    run()


main()
