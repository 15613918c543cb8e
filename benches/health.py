#!/usr/bin/env python3
"""Health checks and exec, side by side in one run.

1. The cost of health checking N workloads (busybox httpd on each workload's own loopback,
   network mode none) every second: superd's CPU (its own time and that of the children it
   reaped: exec helpers and probe commands) over a window, for no checks, an HTTP probe that
   superd runs itself from inside each namespace, and an exec probe (`exec = ["true"]`:
   Docker's model of a process per check, through superd's exec path). Ratio exec/http: the
   target is >= 10.
2. superd's RSS with the N workloads and HTTP checks on (target <= 10 MiB).
3. exec latency to first output: `superctl exec W -- echo x`, `crun exec` of the same command
   in a crun container on the same rootfs, and `nsenter` into the workload (the floor: no
   cgroup, no user, no seccomp), interleaved A B C with the same idle gap before every
   sample; paired ratios.

Usage: health.py SUPERD SUPERCTL [--quick]   (run as root; see health.sh)
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

QUICK = "--quick" in sys.argv
SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
N = 10 if QUICK else 100
WINDOW = 3.0 if QUICK else 20.0
ROUNDS = 3 if QUICK else 20
GAP = 0.05
TICK = os.sysconf("SC_CLK_TCK")

HTTPD = 'command = ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/"]\n' \
        '[network]\nmode = "none"\n[stop]\ntimeout = "2s"\n[resources]\nmemory = "16M"\n'
CHECKS = {
    "none": "",
    "http": '[health]\nhttp = "http://localhost:8080/etc/hostname"\ninterval = "1s"\ntimeout = "1s"\n',
    "exec": '[health]\nexec = ["/bin/true"]\ninterval = "1s"\ntimeout = "1s"\n',
}


def cpu_seconds(pid):
    """utime + stime + cutime + cstime of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def write_manifest(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def checking(work, kind):
    """superd with N checked workloads: CPU % over the window (after every verdict is in)."""
    mdir = os.path.join(work, f"m-{kind}")
    os.makedirs(mdir, mode=0o755)
    for i in range(N):
        write_manifest(os.path.join(mdir, f"w{i}.toml"), HTTPD + CHECKS[kind])
    sdir = os.path.join(work, f"sd-{kind}")
    os.makedirs(sdir)
    sd = benchlib.Superd(SUPERD, SUPERCTL, sdir, mdir,
                         f"superd-bench-health-{os.getpid()}-{kind}",
                         wrap="ip link set lo up")
    try:
        deadline = time.time() + 120
        while True:
            ws = sd.status()
            ready = len(ws) == N and all(
                w["state"] == "running" and (kind == "none" or (w.get("health") or {}).get("status") == "healthy")
                for w in ws)
            if ready:
                break
            if time.time() > deadline:
                raise RuntimeError(f"{kind}: workloads not ready: {[ (w['name'], w['state'], w.get('health')) for w in ws][:5]}")
            time.sleep(0.2)
        time.sleep(2.0)  # past the start interval: probes at their steady pace
        c0, t0 = cpu_seconds(sd.pid), time.perf_counter()
        time.sleep(WINDOW)
        c1, t1 = cpu_seconds(sd.pid), time.perf_counter()
        rss = rss_kib(sd.pid)
        return (c1 - c0) / (t1 - t0) * 100.0, rss, sd
    except Exception:
        sd.stop()
        raise


def first_output(cmd):
    """Seconds from spawning `cmd` to its first byte on stdout."""
    time.sleep(GAP)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = p.stdout.read(1)
    took = time.perf_counter() - t0
    p.stdout.read()
    p.wait(timeout=30)
    if not first:
        raise RuntimeError(f"no output from {cmd}")
    return took


def crun_container(work, rootfs):
    import json
    bundle = os.path.join(work, "bundle")
    os.makedirs(bundle)
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/sleep", "100000"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    cid = f"sdbench-exec-{os.getpid()}"
    subprocess.run(["crun", "run", "-d", "--bundle", bundle, cid], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cid


def ms(x):
    return f"{x * 1000:.1f} ms"


def run():
    work = tempfile.mkdtemp(prefix="superd-bench-health-")
    running = []
    cid = None
    try:
        print(f"health checks: {N} workloads (busybox httpd), one probe a second each, "
              f"superd CPU over {WINDOW:.0f} s (its own time and its reaped children's)")
        cpu = {}
        for kind in ["none", "http", "exec"]:
            pct, rss, sd = checking(work, kind)
            cpu[kind] = pct
            print(f"  {kind:5}: superd CPU {pct:6.2f} %   superd RSS {rss / 1024:.1f} MiB")
            if kind == "http":
                http_rss = rss
                running.append(sd)  # kept for the exec latency
            else:
                sd.stop()
        http_cost = max(cpu["http"] - cpu["none"], 0.01)
        exec_cost = cpu["exec"] - cpu["none"]
        print(f"  cost over no checks: http {http_cost:.2f} %, exec {exec_cost:.2f} %; "
              f"exec/http {exec_cost / http_cost:.1f}x (target >= 10x)")
        print(f"  superd RSS with {N} workloads and HTTP checks: {http_rss / 1024:.1f} MiB (target <= 10 MiB)")

        sd = running[0]
        target = sd.status()[0]
        pid = str(target["pid"])
        rootfs = os.path.join(work, "rootfs")
        benchlib.busybox_rootfs(rootfs)
        cid = crun_container(work, rootfs)
        tools = {
            "superctl exec": [SUPERCTL, "--socket", sd.sock, "exec", target["name"], "--", "/bin/echo", "x"],
            "crun exec": ["crun", "exec", cid, "/bin/echo", "x"],
            "nsenter": ["nsenter", "-t", pid, "-m", "-u", "-i", "-n", "-p", "--", "/bin/echo", "x"],
        }
        samples = {k: [] for k in tools}
        for _ in range(ROUNDS):
            for k, cmd in tools.items():
                samples[k].append(first_output(cmd))
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"exec latency to first output, median of {ROUNDS} interleaved rounds ({GAP * 1000:.0f} ms idle before each):")
        for k in tools:
            print(f"  {k:14} {ms(med[k])}")

        def paired(a, b):
            return statistics.median(x / y for x, y in zip(samples[a], samples[b]))
        print(f"  paired ratios: superctl/crun {paired('superctl exec', 'crun exec'):.2f}x   "
              f"superctl/nsenter {paired('superctl exec', 'nsenter'):.2f}x   "
              f"crun/nsenter {paired('crun exec', 'nsenter'):.2f}x")
    finally:
        if cid:
            subprocess.run(["crun", "delete", "-f", cid], stderr=subprocess.DEVNULL)
        for sd in running:
            sd.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("health: run as root")
    if "--in-namespace" in sys.argv:
        run()
        return
    # One private mount namespace, the hybrid cgroup2 unmounted once, so crun sees plain v1.
    script = "umount -l /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\""
    args = [sys.executable, os.path.abspath(__file__), SUPERD, SUPERCTL, "--in-namespace"]
    if QUICK:
        args.append("--quick")
    sys.exit(subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, *args]).returncode)


main()
