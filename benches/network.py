#!/usr/bin/env python3
"""What bridge networking costs: start latency bridge vs none, throughput through a port.

Everything runs inside a network namespace made for the benchmark (`unshare --net`), so the
bridge, veths and nftables rules never touch the host.

Latency = manifest renamed into the watched directory -> the workload has opened a fifo (as in
start_latency.py), alternating bridge and none so drift hits both equally; every workload
stays up until the loop ends, so no namespace teardown overlaps a start.
Throughput = iperf3 (host root, read-only) in a bridged workload publishing 5201; the client
runs in the benchmark namespace against 127.0.0.1:5201 (DNAT + loopback masquerade) and then
against the container's address directly.

Usage: network.py SUPERD SUPERCTL [--quick]   (run as root; see network.sh)
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

QUICK = "--quick" in sys.argv
SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
N = 3 if QUICK else 25
SECONDS = 1 if QUICK else 5


def manifest(rootfs, bench, name, fifo, mode):
    return (
        f'command = ["/bin/sh", "-c", "echo {name} > /bench/{fifo}; exec sleep 100000"]\n'
        f'[rootfs]\npath = "{rootfs}"\n'
        f'[[mounts]]\nsource = "{bench}"\ntarget = "/bench"\n'
        f'[stop]\ntimeout = "1s"\n'
        f'[network]\nmode = "{mode}"\n'
    )


def wait_gone(sock):
    deadline = time.time() + 30
    while benchlib.status(SUPERCTL, sock) and time.time() < deadline:
        time.sleep(0.05)


def iperf(netns_pid, host, port):
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "iperf3", "-c", host, "-p", str(port),
         "-t", str(SECONDS), "-J"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"iperf3 to {host}:{port} failed: {out.stdout[-500:]} {out.stderr}")
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def run(work):
    rootfs = os.path.join(work, "rootfs")
    benchlib.busybox_rootfs(rootfs, [("hosts", ""), ("resolv.conf", "")])
    bench, mdir, stage = (os.path.join(work, d) for d in ("bench", "manifests", "stage"))
    for d in (bench, mdir, stage):
        os.makedirs(d, exist_ok=True)
    sd = benchlib.Superd(SUPERD, SUPERCTL, work, mdir, f"superd-netbench-{os.getpid()}",
                         wrap="ip link set lo up")
    sock, proc = sd.sock, sd.proc
    try:
        lat = {"none": [], "bridge": []}
        for i in range(N + 1):  # the first bridge start also creates the bridge: warm-up round
            for mode in ("none", "bridge"):
                fifo, name = f"{mode}{i}", f"{mode}-{i}"
                os.mkfifo(os.path.join(bench, fifo))
                path = os.path.join(stage, name + ".toml")
                with open(path, "w") as f:
                    f.write(manifest(rootfs, bench, name, fifo, mode))
                t0 = time.perf_counter()
                os.rename(path, os.path.join(mdir, name + ".toml"))
                fd = os.open(os.path.join(bench, fifo), os.O_RDONLY)
                if i > 0:
                    lat[mode].append(time.perf_counter() - t0)
                os.close(fd)
        # Workloads stay up during the loop: a netns being torn down in the background holds
        # locks a new one waits for, which would blur both modes.
        for f in os.listdir(mdir):
            os.unlink(os.path.join(mdir, f))
        wait_gone(sock)
        # Throughput through a published port.
        with open(os.path.join(mdir, "iperf.toml"), "w") as f:
            f.write('command = ["iperf3", "-s", "-p", "5201"]\n[network]\nports = ["5201:5201"]\n')
        deadline = time.time() + 20
        addr = None
        while time.time() < deadline:
            wl = [w for w in benchlib.status(SUPERCTL, sock) if w["name"] == "iperf" and w["state"] == "running"]
            if wl:
                addr = wl[0]["address"]
                break
            time.sleep(0.05)
        if addr is None:
            raise RuntimeError("iperf3 workload did not start: " + open(os.path.join(work, "superd.log")).read())
        time.sleep(0.3)
        direct = iperf(proc.pid, addr, 5201)
        published = iperf(proc.pid, "127.0.0.1", 5201)
        direct2 = iperf(proc.pid, addr, 5201)
        return lat, (direct + direct2) / 2, published
    finally:
        sd.stop()


def main():
    if os.geteuid() != 0:
        sys.exit("network bench: run as root")
    work = tempfile.mkdtemp(prefix="superd-netbench-")
    try:
        lat, direct, published = run(work)
        none, bridge = statistics.median(lat["none"]), statistics.median(lat["bridge"])
        ms = lambda x: f"{x * 1000:.1f} ms"
        print(f"mode: {'quick' if QUICK else 'full'}   machine: {os.cpu_count()} cores")
        print(f"start latency, median of {N}: none {ms(none)} (min {ms(min(lat['none']))}), "
              f"bridge {ms(bridge)} (min {ms(min(lat['bridge']))})")
        print(f"  bridge adds {ms(bridge - none)} (target <= 5 ms)")
        print(f"TCP throughput, iperf3 {SECONDS}s: direct to container {direct:.2f} Gbit/s, "
              f"via published port 127.0.0.1:5201 {published:.2f} Gbit/s ({published / direct:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


main()
