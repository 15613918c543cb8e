#!/usr/bin/env python3
"""superd restarts with N running workloads: how long until every one is adopted, and how many
were restarted (target 0), side by side in one run, interleaved, with the same idle gap
before every sample:

- kill:   superd is SIGKILLed and started again on the same directories;
- reexec: `superctl reexec` (superd executes itself in place, as on a package upgrade);
- floor:  superd started on an empty state directory and no manifests, until its socket
          answers (what any restart costs before there is anything to adopt);
- cold:   what a restart cost before adoption: SIGTERM (every workload stops), then a new
          superd starts them all again, until every one runs.

The workloads are bridged (a veth each) and a tenth publish a port: adoption keeps their
network, so nothing is re-created. Paired ratios per round.

Usage: adopt.py SUPERD SUPERCTL [--quick]   (run as root; see adopt.sh)
"""
import os, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

QUICK = "--quick" in sys.argv
SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
N = 10 if QUICK else 100
ROUNDS = 1 if QUICK else 5
GAP = 0.5


def manifest(i, rootfs):
    ports = f'ports = ["{20000 + i}:80"]\n' if i % 10 == 0 else ""
    return (f'command = ["/bin/sleep", "100000"]\n[rootfs]\npath = "{rootfs}"\n'
            f'[network]\n{ports}[stop]\ntimeout = "2s"\n[resources]\nmemory = "16M"\n')


def running(sd):
    try:
        return {w["name"]: (w["pid"], w["restarts"]) for w in sd.status() if w["state"] == "running"}
    except Exception:
        return {}


def wait_all(sd, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = running(sd)
        if len(now) == n:
            return now
        time.sleep(0.01)
    raise RuntimeError(f"only {len(running(sd))} of {n} workloads running")


def restarted(before, after):
    return sum(1 for k, v in before.items() if after.get(k) != v)


def run():
    work = tempfile.mkdtemp(prefix="superd-bench-adopt-")
    empty = tempfile.mkdtemp(prefix="superd-bench-adopt-floor-")
    mdir = os.path.join(work, "manifests")
    os.makedirs(mdir)
    os.makedirs(os.path.join(empty, "manifests"))
    rootfs = os.path.join(work, "rootfs")
    benchlib.busybox_rootfs(rootfs)
    root = f"superd-bench-adopt-{os.getpid()}"
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for i in range(N):
        with open(os.path.join(mdir, f"w{i:03}.toml"), "w") as fh:
            fh.write(manifest(i, rootfs))
    start = lambda d, m: benchlib.Superd(SUPERD, SUPERCTL, d, m, root, own_net=False)  # noqa: E731
    sd = start(work, mdir)
    samples = {k: [] for k in ["kill", "reexec", "floor", "cold"]}
    lost = {"kill": 0, "reexec": 0}
    try:
        before = wait_all(sd, N)
        print(f"superd restarts with {N} running workloads (bridged, {N // 10} publish a port), "
              f"{ROUNDS} interleaved rounds, {GAP * 1000:.0f} ms idle before each sample")
        for _ in range(ROUNDS):
            # kill: SIGKILL, then a new superd adopts.
            time.sleep(GAP)
            sd.proc.kill()
            sd.proc.wait()
            sd.log.close()
            t0 = time.monotonic()
            sd = start(work, mdir)
            after = wait_all(sd, N)
            samples["kill"].append(time.monotonic() - t0)
            lost["kill"] += restarted(before, after)
            before = after
            # reexec: in place.
            time.sleep(GAP)
            t0 = time.monotonic()
            subprocess.run([SUPERCTL, "--socket", sd.sock, "reexec", "--timeout", "60s"],
                           check=True, stdout=subprocess.DEVNULL)
            after = wait_all(sd, N)
            samples["reexec"].append(time.monotonic() - t0)
            lost["reexec"] += restarted(before, after)
            before = after
            # floor: a superd with nothing to adopt, until its socket answers.
            time.sleep(GAP)
            t0 = time.monotonic()
            floor = benchlib.Superd(SUPERD, SUPERCTL, empty, os.path.join(empty, "manifests"),
                                    root + "-floor", own_net=False,
                                    extra_args=["--bridge", "sdfloor0", "--subnet", "10.78.0.0/16"])
            samples["floor"].append(time.monotonic() - t0)
            floor.stop()
            # cold: stop everything, start everything.
            time.sleep(GAP)
            sd.stop()
            t0 = time.monotonic()
            sd = start(work, mdir)
            before = wait_all(sd, N)
            samples["cold"].append(time.monotonic() - t0)
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"  after SIGKILL: every workload adopted in {med['kill'] * 1000:.0f} ms; "
              f"restarted {lost['kill']} of {N * ROUNDS} (target 0)")
        print(f"  superctl reexec: every workload adopted in {med['reexec'] * 1000:.0f} ms; "
              f"restarted {lost['reexec']} of {N * ROUNDS} (target 0)")
        print(f"  floor (superd with nothing to adopt, until its socket answers): {med['floor'] * 1000:.0f} ms")
        print(f"  cold (stop all, start all: a restart without adoption): {med['cold'] * 1000:.0f} ms")

        def paired(a, b):
            return statistics.median(x / y for x, y in zip(samples[a], samples[b]))
        print(f"  paired ratios: kill/floor {paired('kill', 'floor'):.2f}x   "
              f"reexec/floor {paired('reexec', 'floor'):.2f}x   cold/kill {paired('cold', 'kill'):.1f}x")
        print(f"  superd RSS after adopting {N}: {rss_kib(sd.pid) / 1024:.1f} MiB")
        if lost["kill"] or lost["reexec"]:
            sys.exit("adopt: a restart of superd restarted workloads")
    finally:
        sd.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(empty, ignore_errors=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    if os.geteuid() != 0:
        sys.exit("adopt: run as root")
    if "--in-namespace" in sys.argv:
        run()
        return
    # One network namespace for every superd of the run (adopted veths live in it), and a
    # private mount namespace.
    args = [sys.executable, os.path.abspath(__file__), SUPERD, SUPERCTL, "--in-namespace"]
    if QUICK:
        args.append("--quick")
    sys.exit(subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", *args]).returncode)


main()
