#!/usr/bin/env python3
"""superd start latency vs crun, and memory, on the same busybox-static rootfs.

Latency = manifest renamed into the watched directory -> the workload's main process has opened
a fifo (a blocking open on our side returns). No polling of superctl. The crun figure is the
same command started with `crun run` from the same rootfs and bind mount.

Usage: start_latency.py SUPERD SUPERCTL [--quick]   (run as root; see start_latency.sh)
"""
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

QUICK = "--quick" in sys.argv
SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
N_SINGLE = 3 if QUICK else 25
N_BATCH = 10 if QUICK else 100
BATCH_ROUNDS = 1 if QUICK else 3
N_CRUN = 3 if QUICK else 25


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


def manifest(rootfs, bench, name, fifo):
    return (
        f'command = ["/bin/sh", "-c", "echo {name} > /bench/{fifo}; exec sleep 100000"]\n'
        f'[rootfs]\npath = "{rootfs}"\n'
        f'[[mounts]]\nsource = "{bench}"\ntarget = "/bench"\n'
        f'[stop]\ntimeout = "1s"\n'
        f'[network]\nmode = "none"\n'  # like crun's default spec: own netns, no interfaces
    )


def bench_superd(work, rootfs):
    bench = os.path.join(work, "bench")
    mdir = os.path.join(work, "manifests")
    stage = os.path.join(work, "stage")
    for d in (bench, mdir, stage):
        os.makedirs(d, exist_ok=True)
    sock = os.path.join(work, "superd.sock")
    log = open(os.path.join(work, "superd.log"), "w")
    proc = subprocess.Popen(
        ["unshare", "--net", SUPERD, "--manifests", mdir, "--state-dir", os.path.join(work, "state"),
         "--socket", sock, "--cgroup-root", f"superd-bench-{os.getpid()}"],
        stdout=log, stderr=log, env={**os.environ, "SUPERD_LOG": "warn"})
    try:
        deadline = time.time() + 20
        while True:
            try:
                benchlib.status(SUPERCTL, sock)
                break
            except Exception:
                if time.time() > deadline:
                    raise RuntimeError("superd did not come up")
                time.sleep(0.02)
        superd_pid = proc.pid  # `unshare` without --fork execs superd in place
        # 1) one manifest at a time
        single = []
        for i in range(N_SINGLE):
            fifo = f"s{i}"
            os.mkfifo(os.path.join(bench, fifo))
            name = f"single-{i}"
            path = os.path.join(stage, name + ".toml")
            with open(path, "w") as f:
                f.write(manifest(rootfs, bench, name, fifo))
            t0 = time.perf_counter()
            os.rename(path, os.path.join(mdir, name + ".toml"))
            fd = os.open(os.path.join(bench, fifo), os.O_RDONLY)  # returns when the workload opens it
            single.append(time.perf_counter() - t0)
            os.close(fd)
            os.unlink(os.path.join(mdir, name + ".toml"))
        # wait until the singles are gone
        deadline = time.time() + 30
        while benchlib.status(SUPERCTL, sock) and time.time() < deadline:
            time.sleep(0.05)
        # 2) N_BATCH manifests dropped at once
        batch_totals, batch_each = [], []
        for r in range(BATCH_ROUNDS):
            fifo = f"batch{r}"
            fpath = os.path.join(bench, fifo)
            os.mkfifo(fpath)
            rfd = os.open(fpath, os.O_RDWR)  # never EOF; writers never block
            names = [f"b{r}-{i:03d}" for i in range(N_BATCH)]
            for n in names:
                with open(os.path.join(stage, n + ".toml"), "w") as f:
                    f.write(manifest(rootfs, bench, n, fifo))
            t0 = time.perf_counter()
            for n in names:
                os.rename(os.path.join(stage, n + ".toml"), os.path.join(mdir, n + ".toml"))
            seen, buf, arrivals = set(), b"", []
            while len(seen) < N_BATCH:
                buf += os.read(rfd, 65536)
                *lines, buf = buf.split(b"\n")
                for l in lines:
                    if l and l not in seen:
                        seen.add(l)
                        arrivals.append(time.perf_counter() - t0)
            batch_totals.append(arrivals[-1])
            batch_each.append(statistics.median(arrivals))
            os.close(rfd)
            if r == BATCH_ROUNDS - 1:
                time.sleep(0.5)
                wl = benchlib.status(SUPERCTL, sock)
                rss, pss = rss_pss(superd_pid)
                shim = next(w for w in wl if w["init_pid"])
                srss, spss = rss_pss(shim["init_pid"])
                running = sum(1 for w in wl if w["state"] == "running")
            for n in names:
                os.unlink(os.path.join(mdir, n + ".toml"))
            deadline = time.time() + 60
            while benchlib.status(SUPERCTL, sock) and time.time() < deadline:
                time.sleep(0.05)
        return {
            "single": single, "batch_total": batch_totals, "batch_median": batch_each,
            "superd_rss_kib": rss, "superd_pss_kib": pss, "shim_rss_kib": srss, "shim_pss_kib": spss,
            "running_at_measure": running,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        log.close()
        if rc != 0:
            print(open(os.path.join(work, "superd.log")).read(), file=sys.stderr)
            raise RuntimeError(f"superd exited {rc}")


def bench_crun(work, rootfs):
    """Runs inside a private mount namespace where /sys/fs/cgroup/unified is unmounted."""
    bench = os.path.join(work, "crun-bench")
    os.makedirs(bench, exist_ok=True)
    bundle = os.path.join(work, "bundle")
    os.makedirs(bundle, exist_ok=True)
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"]["terminal"] = False
    cfg["mounts"].append({"destination": "/bench", "type": "bind", "source": bench, "options": ["rbind", "rw"]})
    times = []
    for i in range(N_CRUN):
        fifo = f"c{i}"
        os.mkfifo(os.path.join(bench, fifo))
        cfg["process"]["args"] = ["/bin/sh", "-c", f"echo c{i} > /bench/{fifo}; exec sleep 100000"]
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        cid = f"sdbench-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        p = subprocess.Popen(["crun", "run", "--bundle", bundle, cid], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        fd = os.open(os.path.join(bench, fifo), os.O_RDONLY)
        times.append(time.perf_counter() - t0)
        os.close(fd)
        subprocess.run(["crun", "kill", cid, "KILL"], stderr=subprocess.DEVNULL)
        p.wait(timeout=30)
        subprocess.run(["crun", "delete", "-f", cid], stderr=subprocess.DEVNULL)
    return {"crun": times}


def ms(x):
    return f"{x * 1000:.1f} ms"


def main():
    if os.geteuid() != 0:
        sys.exit("start_latency: run as root")
    if "--crun-only" in sys.argv:
        print(json.dumps(bench_crun(sys.argv[sys.argv.index("--crun-only") + 1], sys.argv[sys.argv.index("--crun-only") + 2])))
        return
    work = tempfile.mkdtemp(prefix="superd-bench-")
    try:
        rootfs = os.path.join(work, "rootfs")
        benchlib.busybox_rootfs(rootfs)
        sd = bench_superd(work, rootfs)
        # crun needs a cgroup layout it understands: hide the hybrid cgroup2 in a private mount ns.
        script = f"umount -l /sys/fs/cgroup/unified 2>/dev/null; exec {sys.executable} {os.path.abspath(__file__)} {SUPERD} {SUPERCTL} {'--quick' if QUICK else ''} --crun-only {work} {rootfs}"
        out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            raise RuntimeError("crun benchmark failed")
        cr = json.loads(out.stdout.strip().splitlines()[-1])["crun"]
        s_med, c_med = statistics.median(sd["single"]), statistics.median(cr)
        print(f"mode: {'quick' if QUICK else 'full'}   machine: {os.cpu_count()} cores")
        print(f"start latency, 1 manifest   (median of {len(sd['single'])}): superd {ms(s_med)}  "
              f"(min {ms(min(sd['single']))}, max {ms(max(sd['single']))})")
        print(f"crun run, same rootfs+cmd   (median of {len(cr)}): crun   {ms(c_med)}  "
              f"(min {ms(min(cr))}, max {ms(max(cr))})")
        print(f"  ratio superd/crun: {s_med / c_med:.2f}x")
        bt = statistics.median(sd["batch_total"])
        print(f"{N_BATCH} manifests at once (median of {len(sd['batch_total'])} rounds): all running after {ms(bt)}, "
              f"median workload {ms(statistics.median(sd['batch_median']))}, {ms(bt / N_BATCH)} per workload")
        print(f"  ratio per-workload superd/crun: {(bt / N_BATCH) / c_med:.2f}x")
        print(f"superd RSS with {sd['running_at_measure']} workloads running: {sd['superd_rss_kib'] / 1024:.1f} MiB "
              f"(PSS {sd['superd_pss_kib'] / 1024:.1f} MiB)")
        print(f"one shim: RSS {sd['shim_rss_kib'] / 1024:.2f} MiB, PSS {sd['shim_pss_kib'] / 1024:.2f} MiB "
              f"(conmon ~2 MiB RSS, containerd-shim ~13 MiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


main()
