#!/usr/bin/env python3
"""Log throughput through superd's log path vs straight into a file, and the shim's CPU.

The writer is `yes` of a 100-byte line piped into `head -c BYTES`, in the same busybox
rootfs: through superd its stdout is the pipe to the init shim, which writes CRI records into
rotated files; directly (in `unshare` namespaces, no superd) it writes into a file on the same
filesystem. Time = start until the writer has written everything (it then opens a fifo).

Usage: logs.py SUPERD SUPERCTL [--quick]   (run as root; see logs.sh)
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

QUICK = "--quick" in sys.argv
SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
BYTES = (16 if QUICK else 256) << 20
RUNS = 1 if QUICK else 3
LINE = "x" * 99
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def main():
    if os.geteuid() != 0:
        sys.exit("logs: run as root")
    work = tempfile.mkdtemp(prefix="superd-bench-logs-", dir="/var/tmp")
    rootfs = os.path.join(work, "rootfs")
    benchlib.busybox_rootfs(rootfs)
    for a in ["yes", "head"]:
        os.symlink("busybox", os.path.join(rootfs, "bin", a))
    bench = os.path.join(work, "bench")
    mdir = os.path.join(work, "manifests")
    for d in (bench, mdir):
        os.makedirs(d)
    os.chmod(mdir, 0o755)
    sd = benchlib.Superd(SUPERD, SUPERCTL, work, mdir, f"superd-bench-logs-{os.getpid()}")
    sock = sd.sock
    through, direct, shim_cpu, direct_cpu = [], [], [], []
    try:
        for run in range(RUNS):
            # Through superd: rotated files big enough that nothing is dropped.
            fifo = os.path.join(bench, f"t{run}")
            os.mkfifo(fifo)
            text = (f'command = ["/bin/sh", "-c", "yes {LINE} | head -c {BYTES}; echo > /bench/t{run}; exec sleep 100000"]\n'
                    f'[rootfs]\npath = "{rootfs}"\n[[mounts]]\nsource = "{bench}"\ntarget = "/bench"\n'
                    f'[network]\nmode = "none"\n[stop]\ntimeout = "1s"\n'
                    f'[logs]\nmax_size = "{BYTES // 2 + (1 << 20)}"\nmax_files = 4\n')
            tmp = os.path.join(mdir, ".w.tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            time.sleep(0.05)
            t0 = time.perf_counter()
            os.rename(tmp, os.path.join(mdir, "w.toml"))
            fd = os.open(fifo, os.O_RDONLY)
            through.append(time.perf_counter() - t0)
            os.read(fd, 8)
            os.close(fd)
            time.sleep(0.2)  # let the shim drain the last pipe buffer
            shim = next(w for w in benchlib.status(SUPERCTL, sock) if w["name"] == "w")["init_pid"]
            shim_cpu.append(cpu_seconds(shim))
            os.unlink(os.path.join(mdir, "w.toml"))
            sd.wait_empty()
            # Straight into a file, same writer, same filesystem.
            out = os.path.join(work, f"direct-{run}.log")
            before = os.times()
            time.sleep(0.05)
            t0 = time.perf_counter()
            sh = os.path.join(rootfs, "bin/busybox")
            subprocess.run(["unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc", "--net",
                            sh, "sh", "-c", f"{sh} yes {LINE} | {sh} head -c {BYTES} > {out}"], check=True)
            direct.append(time.perf_counter() - t0)
            after = os.times()
            direct_cpu.append((after.children_user - before.children_user)
                              + (after.children_system - before.children_system))
            os.unlink(out)
        mib = BYTES / (1 << 20)
        t, d = statistics.median(through), statistics.median(direct)
        print(f"mode: {'quick' if QUICK else 'full'}   {mib:.0f} MiB of 100-byte lines, median of {RUNS}")
        print(f"  through superd's log path: {mib / t:.0f} MiB/s ({t:.2f} s)")
        print(f"  straight into a file:      {mib / d:.0f} MiB/s ({d:.2f} s)")
        print(f"  ratio superd/direct throughput: {d / t:.2f}x")
        sc = statistics.median(shim_cpu)
        print(f"  init shim CPU: {sc:.2f} s for {mib:.0f} MiB = {sc / mib * 1024:.1f} CPU-s per GiB "
              f"(the writer and head in the direct run: {statistics.median(direct_cpu):.2f} s)")
    finally:
        sd.stop()
        shutil.rmtree(work, ignore_errors=True)


main()
