#!/usr/bin/env python3
"""Start latency, side by side in one run: superd (default seccomp), superd (seccomp
unconfined), `crun run`, and the floor (`unshare --pid --fork --mount --uts --ipc --net` of the
same shell), interleaved A B C D A B C D with the same idle gap before every sample, on the
same busybox-static rootfs. Then 100 manifests at once, and superd's and a shim's memory.

Latency = from the start request (a manifest renamed into the watched directory; the tool's
process spawned) until the workload's first instruction: its shell has opened a fifo (our
blocking open returns). Nothing polls superctl while a sample runs.

The whole benchmark runs in one private mount namespace in which the hybrid cgroup2 at
/sys/fs/cgroup/unified is unmounted once, so that crun sees the plain v1 layout; every tool is
invoked directly (no shell, no unshare per sample except the floor's own).

Usage: start_latency.py SUPERD SUPERCTL [--quick]   (run as root; see start_latency.sh)
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

QUICK = "--quick" in sys.argv
SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
ROUNDS = 3 if QUICK else 25
GAP = 0.05  # idle seconds before every sample, for every tool alike
N_BATCH = 10 if QUICK else 100


def rss_pss(pid):
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss  # KiB


def manifest(rootfs, bench, name, fifo, seccomp="default"):
    return (
        f'command = ["/bin/sh", "-c", "echo {name} > /bench/{fifo}; exec sleep 100000"]\n'
        f'[rootfs]\npath = "{rootfs}"\n'
        f'[[mounts]]\nsource = "{bench}"\ntarget = "/bench"\n'
        f'[stop]\ntimeout = "1s"\n'
        f'[network]\nmode = "none"\n'  # like crun's default spec: own netns, no interfaces
        f'[security]\nseccomp = "{seccomp}"\n'
    )


def write_manifest(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)  # superd reads only files no one else may write


class Superd:
    def __init__(self, work, rootfs):
        self.work, self.rootfs = work, rootfs
        self.bench = os.path.join(work, "bench")
        self.mdir = os.path.join(work, "manifests")
        self.stage = os.path.join(work, "stage")
        for d in (self.bench, self.mdir, self.stage):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.mdir, 0o755)
        self.sd = benchlib.Superd(SUPERD, SUPERCTL, work, self.mdir, f"superd-bench-{os.getpid()}")
        self.sock, self.pid = self.sd.sock, self.sd.pid
        self.n = 0

    def sample(self, seccomp):
        self.n += 1
        name, fifo = f"s{self.n}", f"s{self.n}"
        os.mkfifo(os.path.join(self.bench, fifo))
        path = os.path.join(self.stage, name + ".toml")
        write_manifest(path, manifest(self.rootfs, self.bench, name, fifo, seccomp))
        time.sleep(GAP)
        t0 = time.perf_counter()
        os.rename(path, os.path.join(self.mdir, name + ".toml"))
        fd = os.open(os.path.join(self.bench, fifo), os.O_RDONLY)  # returns when the workload opens it
        took = time.perf_counter() - t0
        os.read(fd, 64)  # let the writer finish (no EPIPE for it)
        os.close(fd)
        os.unlink(os.path.join(self.mdir, name + ".toml"))
        self.wait_empty()
        return took

    def wait_empty(self):
        self.sd.wait_empty()

    def batch(self):
        fifo = "batch"
        fpath = os.path.join(self.bench, fifo)
        os.mkfifo(fpath)
        rfd = os.open(fpath, os.O_RDWR)  # never EOF; writers never block
        names = [f"b{i:03d}" for i in range(N_BATCH)]
        for n in names:
            write_manifest(os.path.join(self.stage, n + ".toml"), manifest(self.rootfs, self.bench, n, fifo))
        t0 = time.perf_counter()
        for n in names:
            os.rename(os.path.join(self.stage, n + ".toml"), os.path.join(self.mdir, n + ".toml"))
        seen, buf, arrivals = set(), b"", []
        while len(seen) < N_BATCH:
            buf += os.read(rfd, 65536)
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line and line not in seen:
                    seen.add(line)
                    arrivals.append(time.perf_counter() - t0)
        os.close(rfd)
        time.sleep(0.5)
        wl = benchlib.status(SUPERCTL, self.sock)
        rss, pss = rss_pss(self.pid)
        shim = next(w for w in wl if w["init_pid"])
        srss, spss = rss_pss(shim["init_pid"])
        running = sum(1 for w in wl if w["state"] == "running")
        for n in names:
            os.unlink(os.path.join(self.mdir, n + ".toml"))
        self.wait_empty()
        return {"total": arrivals[-1], "median": statistics.median(arrivals), "rss": rss, "pss": pss,
                "shim_rss": srss, "shim_pss": spss, "running": running}

    def close(self):
        self.sd.stop()


class Crun:
    def __init__(self, work, rootfs):
        self.bench = os.path.join(work, "crun-bench")
        os.makedirs(self.bench, exist_ok=True)
        self.bundle = os.path.join(work, "bundle")
        os.makedirs(self.bundle, exist_ok=True)
        subprocess.run(["crun", "spec"], cwd=self.bundle, check=True)
        with open(os.path.join(self.bundle, "config.json")) as f:
            self.cfg = json.load(f)
        self.cfg["root"] = {"path": rootfs, "readonly": True}
        self.cfg["process"]["terminal"] = False
        self.cfg["mounts"].append({"destination": "/bench", "type": "bind", "source": self.bench,
                                   "options": ["rbind", "rw"]})
        self.n = 0

    def sample(self):
        self.n += 1
        fifo = f"c{self.n}"
        os.mkfifo(os.path.join(self.bench, fifo))
        self.cfg["process"]["args"] = ["/bin/sh", "-c", f"echo c > /bench/{fifo}; exec sleep 100000"]
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(self.cfg, f)
        cid = f"sdbench-{os.getpid()}-{self.n}"
        time.sleep(GAP)
        t0 = time.perf_counter()
        p = subprocess.Popen(["crun", "run", "--bundle", self.bundle, cid],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fd = os.open(os.path.join(self.bench, fifo), os.O_RDONLY)
        took = time.perf_counter() - t0
        os.read(fd, 64)  # let the writer finish (no EPIPE for it)
        os.close(fd)
        subprocess.run(["crun", "kill", cid, "KILL"], stderr=subprocess.DEVNULL)
        p.wait(timeout=30)
        subprocess.run(["crun", "delete", "-f", cid], stderr=subprocess.DEVNULL)
        return took


class Floor:
    """The same shell in fresh pid, mount, uts, ipc and net namespaces, nothing else."""

    def __init__(self, work, rootfs):
        self.dir = os.path.join(work, "floor")
        os.makedirs(self.dir, exist_ok=True)
        self.sh = os.path.join(rootfs, "bin/busybox")
        self.n = 0

    def sample(self):
        self.n += 1
        fifo = os.path.join(self.dir, f"f{self.n}")
        os.mkfifo(fifo)
        time.sleep(GAP)
        t0 = time.perf_counter()
        p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc", "--net",
                              self.sh, "sh", "-c", f"echo f > {fifo}; exec {self.sh} sleep 100000"])
        fd = os.open(fifo, os.O_RDONLY)
        took = time.perf_counter() - t0
        os.read(fd, 64)  # let the writer finish (no EPIPE for it)
        os.close(fd)
        p.kill()  # --kill-child: its child (PID 1 of the namespace) dies with it
        p.wait(timeout=30)
        return took


def ms(x):
    return f"{x * 1000:.1f} ms"


def run():
    work = tempfile.mkdtemp(prefix="superd-bench-")
    sd = None
    try:
        rootfs = os.path.join(work, "rootfs")
        benchlib.busybox_rootfs(rootfs)
        sd = Superd(work, rootfs)
        crun, floor = Crun(work, rootfs), Floor(work, rootfs)
        samples = {"superd": [], "superd-unconfined": [], "crun": [], "floor": []}
        for _ in range(ROUNDS):
            samples["superd"].append(sd.sample("default"))
            samples["superd-unconfined"].append(sd.sample("unconfined"))
            samples["crun"].append(crun.sample())
            samples["floor"].append(floor.sample())
        batch = sd.batch()
        med = {k: statistics.median(v) for k, v in samples.items()}
        paired = lambda a, b: statistics.median(x / y for x, y in zip(samples[a], samples[b]))  # noqa: E731
        seccomp_cost = statistics.median(x - y for x, y in zip(samples["superd"], samples["superd-unconfined"]))
        print(f"mode: {'quick' if QUICK else 'full'}   machine: {os.cpu_count()} cores   "
              f"{ROUNDS} rounds of A B C D, {GAP * 1000:.0f} ms idle before every sample")
        for k, v in samples.items():
            print(f"  {k:<18} median {ms(med[k])}  (min {ms(min(v))}, max {ms(max(v))})")
        print(f"  paired ratios: superd/crun {paired('superd', 'crun'):.2f}x   "
              f"superd/floor {paired('superd', 'floor'):.2f}x   crun/floor {paired('crun', 'floor'):.2f}x")
        print(f"  seccomp filter cost (paired superd - superd-unconfined): {ms(seccomp_cost)}")
        print(f"{N_BATCH} manifests at once: all running after {ms(batch['total'])}, median workload "
              f"{ms(batch['median'])}, {ms(batch['total'] / N_BATCH)} per workload "
              f"({(batch['total'] / N_BATCH) / med['crun']:.2f}x one crun start)")
        print(f"superd RSS with {batch['running']} workloads running: {batch['rss'] / 1024:.1f} MiB "
              f"(PSS {batch['pss'] / 1024:.1f} MiB)")
        print(f"one shim: RSS {batch['shim_rss'] / 1024:.2f} MiB, PSS {batch['shim_pss'] / 1024:.2f} MiB "
              f"(conmon ~2 MiB RSS, containerd-shim ~13 MiB)")
    finally:
        if sd is not None:
            sd.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("start_latency: run as root")
    if "--in-namespace" in sys.argv:
        run()
        return
    # One private mount namespace for the whole run, the hybrid cgroup2 unmounted once.
    script = ("umount -l /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
    args = [sys.executable, os.path.abspath(__file__), SUPERD, SUPERCTL, "--in-namespace"]
    if QUICK:
        args.append("--quick")
    rc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, *args]).returncode
    sys.exit(rc)


main()
