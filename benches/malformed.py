#!/usr/bin/env python3
"""superd's peak RSS (VmHWM) while it reads a directory of malformed manifests, against its
RSS once idle with one workload running, and the size of the status reply it then gives.

Usage: malformed.py SUPERD SUPERCTL [--quick]   (run as root; see malformed.sh)
"""
import os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

QUICK = "--quick" in sys.argv
SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
N_FILES = 50 if QUICK else 200


def kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def one_line_of_errors(size):
    parts, i, n = ['command = ["/bin/true"]\nenv = { '], 0, 30
    while n + 32 < size:
        part = f"a{i} = 1, "
        parts.append(part)
        n += len(part)
        i += 1
    parts.append("z = 1 }\n")
    return "".join(parts)


def write(path, text):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def main():
    if os.geteuid() != 0:
        sys.exit("malformed: run as root")
    work = tempfile.mkdtemp(prefix="superd-bench-malformed-")
    mdir = os.path.join(work, "manifests")
    os.makedirs(mdir)
    os.chmod(mdir, 0o755)
    sd = benchlib.Superd(SUPERD, SUPERCTL, work, mdir, f"superd-bench-malformed-{os.getpid()}", "info")
    sock, proc = sd.sock, sd.proc
    try:
        write(os.path.join(mdir, "good.toml"),
              'command = ["/bin/sleep", "100000"]\n[network]\nmode = "none"\n')
        while not any(w["state"] == "running" for w in benchlib.status(SUPERCTL, sock)):
            time.sleep(0.02)
        time.sleep(0.5)
        idle = kib(proc.pid, "VmRSS")
        idle_hwm = kib(proc.pid, "VmHWM")
        big = one_line_of_errors((1 << 20) - 64)
        medium = one_line_of_errors(24_000)
        t0 = time.perf_counter()
        for i in range(N_FILES):
            text = big if i < 3 else medium if i < 6 else \
                f'command = ["/bin/true"]\n[resources]\nmemory = "{i}Q"\npids = -1\n'
            write(os.path.join(mdir, f"bad{i:03d}.toml"), text)
        while True:
            wl = benchlib.status(SUPERCTL, sock)
            if sum(1 for w in wl if w["state"] == "failed" and w["error"]) == N_FILES:
                break
            time.sleep(0.05)
        took = time.perf_counter() - t0
        peak = kib(proc.pid, "VmHWM")
        out = subprocess.run([SUPERCTL, "--socket", sock, "status", "--json"], capture_output=True, check=True)
        sd.log.flush()
        log_bytes = os.path.getsize(sd.log_path)
        print(f"mode: {'quick' if QUICK else 'full'}   {N_FILES} malformed manifests "
              f"(3 x 1 MiB one-liners, 3 x 24 KB of 3 000 bad values, the rest small)")
        print(f"  superd RSS idle with one workload: {idle / 1024:.1f} MiB (peak so far {idle_hwm / 1024:.1f} MiB)")
        print(f"  superd peak RSS after reading them: {peak / 1024:.1f} MiB = {peak / idle:.2f}x idle "
              f"(target <= 2x)")
        print(f"  all {N_FILES} listed as failed after {took * 1000:.0f} ms; status reply "
              f"{len(out.stdout) / 1024:.0f} KiB; superd log {log_bytes / 1024:.0f} KiB")
    finally:
        sd.stop()
        shutil.rmtree(work, ignore_errors=True)


main()
