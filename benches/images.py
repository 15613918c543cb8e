#!/usr/bin/env python3
"""Image benchmark: pull + unpack of the same image from the same loopback registry by
superd, `podman pull`, `skopeo copy` + `umoci unpack`, and the floor (decompress + write
every layer with tar); start latency of a workload from an image vs from the same tree as a
plain directory; the disk 10 workloads on one image use. Each tool is invoked directly, with
the same idle gap before every sample; the samples are interleaved and paired ratios printed.

    images.py SUPERD SUPERCTL [--quick]
"""
import json, os, select, shutil, socket, statistics, subprocess, sys, tempfile, time

import benchlib

SUPERD, SUPERCTL = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv
ROUNDS = 2 if QUICK else 7
GAP = 0.5
HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..", "tests", "images")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def du(path):
    out = subprocess.run(["du", "-sb", path], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def drop_caches():
    subprocess.run(["sync"])


def big_image(work):
    """A realistic image from this machine's files: Python's standard library, then Perl's
    (two layers, tens of MB, thousands of files)."""
    lay = os.path.join(work, "big")
    run(["umoci", "init", "--layout", lay])
    run(["umoci", "new", "--image", lay + ":base"])
    b = os.path.join(work, "bb")
    run(["umoci", "unpack", "--image", lay + ":base", b])
    shutil.copytree("/usr/lib/python3.11", os.path.join(b, "rootfs/usr/lib/python3.11"), symlinks=True)
    run(["umoci", "repack", "--image", lay + ":l1", b])
    shutil.rmtree(b)
    run(["umoci", "unpack", "--image", lay + ":l1", b])
    shutil.copytree("/usr/share/perl", os.path.join(b, "rootfs/usr/share/perl"), symlinks=True)
    run(["umoci", "repack", "--image", lay + ":final", b])
    shutil.rmtree(b)
    run(["umoci", "gc", "--layout", lay])
    return lay


def only_final(layout, out):
    """The `final` image alone as a layout push.py can push."""
    idx = json.load(open(os.path.join(layout, "index.json")))
    m = next(m for m in idx["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "final")
    shutil.copytree(layout, out)
    json.dump({"schemaVersion": 2, "manifests": [m]}, open(os.path.join(out, "index.json"), "w"))
    return out


class Registry:
    def __init__(self, work):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        cfg = os.path.join(work, "registry.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {work}/regdata\nhttp:\n  addr: {self.addr}\n")
        self.p = subprocess.Popen(["docker-registry", "serve", cfg],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the registry did not start")

    def push(self, layout, repo, tag):
        out = subprocess.run(["python3", os.path.join(TESTS, "push.py"), layout, self.addr, repo, tag],
                             check=True, capture_output=True, text=True).stdout
        return out.strip()

    def close(self):
        self.p.kill()
        self.p.wait()


def layers_of(layout):
    idx = json.load(open(os.path.join(layout, "index.json")))
    blob = lambda d: os.path.join(layout, "blobs", "sha256", d.split(":")[1])
    m = json.load(open(blob(idx["manifests"][0]["digest"])))
    return [blob(l["digest"]) for l in m["layers"]]


class SuperdPull:
    name = "superd"

    def __init__(self, work, registry):
        self.work, self.reg = work, registry
        self.n = 0

    def sample(self, ref):
        self.n += 1
        state = os.path.join(self.work, f"sd-{self.n}")
        mdir = os.path.join(state, "manifests")
        os.makedirs(mdir)
        os.chmod(mdir, 0o755)
        sd = benchlib.Superd(SUPERD, SUPERCTL, state, mdir, f"superd-bench-img-{os.getpid()}-{self.n}",
                             extra_args=["--insecure-registry", self.reg.addr], own_net=False)
        try:
            drop_caches()
            time.sleep(GAP)
            t0 = time.perf_counter()
            subprocess.run([SUPERCTL, "--socket", sd.sock, "image", "pull", ref], check=True,
                           stdout=subprocess.DEVNULL)
            took = time.perf_counter() - t0
        finally:
            sd.stop()
        shutil.rmtree(state, ignore_errors=True)
        return took


class PodmanPull:
    name = "podman pull"

    def __init__(self, work):
        self.work = work
        self.n = 0

    def sample(self, ref):
        self.n += 1
        root = os.path.join(self.work, f"podman-{self.n}")
        args = ["podman", "--root", root + "/root", "--runroot", root + "/run",
                "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
        drop_caches()
        time.sleep(GAP)
        t0 = time.perf_counter()
        run(args + ["pull", "-q", "--tls-verify=false", ref])
        took = time.perf_counter() - t0
        subprocess.run(args + ["system", "reset", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "-R", root + "/root/overlay"], stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)
        return took


class SkopeoUmoci:
    name = "skopeo+umoci"

    def __init__(self, work):
        self.work = work
        self.n = 0

    def sample(self, ref):
        self.n += 1
        d = os.path.join(self.work, f"skopeo-{self.n}")
        os.makedirs(d)
        drop_caches()
        time.sleep(GAP)
        t0 = time.perf_counter()
        run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{d}/oci:x"])
        run(["umoci", "unpack", "--image", f"{d}/oci:x", f"{d}/bundle"])
        run(["sync", "-f", d])
        took = time.perf_counter() - t0
        shutil.rmtree(d, ignore_errors=True)
        return took


class Floor:
    """gzip -d | tar -x of every layer blob (already on disk) into its own directory, then
    syncfs: the decompress + write a pull cannot avoid (no network, no checks)."""
    name = "floor (tar -xz)"

    def __init__(self, work, layout):
        self.work, self.blobs = work, layers_of(layout)
        self.n = 0

    def sample(self, _ref):
        self.n += 1
        d = os.path.join(self.work, f"floor-{self.n}")
        drop_caches()
        time.sleep(GAP)
        t0 = time.perf_counter()
        for i, b in enumerate(self.blobs):
            os.makedirs(f"{d}/{i}")
            run(["tar", "-xzf", b, "-C", f"{d}/{i}"])
        run(["sync", "-f", d])
        took = time.perf_counter() - t0
        shutil.rmtree(d, ignore_errors=True)
        return took


def pulls(work, reg, layout, ref, label):
    tools = [SuperdPull(work, reg), PodmanPull(work), SkopeoUmoci(work), Floor(work, layout)]
    res = {t.name: [] for t in tools}
    for _ in range(ROUNDS):
        for t in tools:
            res[t.name].append(t.sample(ref))
    print(f"\npull + unpack of {label} ({ROUNDS} interleaved rounds, {GAP}s idle before each):")
    sd = res["superd"]
    for name, xs in res.items():
        ratio = statistics.median([a / b for a, b in zip(sd, xs)])
        print(f"  {name:<16} median {statistics.median(xs) * 1000:8.1f} ms   superd/this (paired) {ratio:5.2f}")
    return res


def start_latency(work, store_layout, tree_layout):
    """Workload start from an image vs from the same tree as a directory."""
    state = os.path.join(work, "sl")
    mdir = os.path.join(state, "manifests")
    os.makedirs(mdir)
    os.chmod(mdir, 0o755)
    store = os.path.join(state, "state", "images")
    run([SUPERD, "image", "import", "--store", store, store_layout])
    tree = os.path.join(work, "tree")
    run(["umoci", "unpack", "--image", tree_layout + ":final", tree])
    sd = benchlib.Superd(SUPERD, SUPERCTL, state, mdir, f"superd-bench-sl-{os.getpid()}")
    bench = os.path.join(work, "fifos")
    os.makedirs(bench)
    res = {"image": [], "directory": []}
    try:
        n = 0
        for _ in range(3 if QUICK else 20):
            for kind in ("image", "directory"):
                n += 1
                fifo = os.path.join(bench, f"f{n}")
                os.mkfifo(fifo)
                root = ('image = "superd-test/busybox:oci"' if kind == "image"
                        else f'path = "{tree}/rootfs"')
                text = (f'command = ["/bin/sh", "-c", "echo x > /bench/f{n}; exec sleep 1000"]\nuser = "0:0"\n'
                        f'[rootfs]\n{root}\n[network]\nmode = "none"\n'
                        f'[[mounts]]\nsource = "{bench}"\ntarget = "/bench"\n')
                stage = os.path.join(work, f"w{n}.toml")
                with open(stage, "w") as f:
                    f.write(text)
                os.chmod(stage, 0o644)
                fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                time.sleep(GAP)
                t0 = time.perf_counter()
                os.rename(stage, os.path.join(mdir, f"w{n}.toml"))
                if not poller.poll(30_000):
                    raise SystemExit(f"the {kind} workload did not start:\n{open(sd.log_path).read()}")
                res[kind].append(time.perf_counter() - t0)
                os.close(fd)
                os.unlink(os.path.join(mdir, f"w{n}.toml"))
                sd.wait_empty()
        # Disk for 10 workloads on one image: the store holds one copy.
        before = du(store)
        for i in range(10):
            p = os.path.join(mdir, f"ten{i}.toml")
            with open(p, "w") as f:
                f.write('command = ["/bin/sleep", "1000"]\n[rootfs]\nimage = "superd-test/busybox:oci"\n'
                        '[network]\nmode = "none"\n')
            os.chmod(p, 0o644)
        for _ in range(200):
            wl = benchlib.status(SUPERCTL, sd.sock)
            if sum(1 for w in wl if w["state"] == "running") == 10:
                break
            time.sleep(0.1)
        after = du(store)
        for i in range(10):
            os.unlink(os.path.join(mdir, f"ten{i}.toml"))
        sd.wait_empty()
    finally:
        sd.stop()
    img, d = res["image"], res["directory"]
    diff = statistics.median([a - b for a, b in zip(img, d)])
    print(f"\nstart latency ({len(img)} pairs): image median {statistics.median(img) * 1000:.1f} ms, "
          f"directory {statistics.median(d) * 1000:.1f} ms, paired difference {diff * 1000:+.1f} ms "
          f"(target: at most +1 ms)")
    print(f"disk of the store with 10 workloads on one image: {after / 1e6:.2f} MB "
          f"(before they ran: {before / 1e6:.2f} MB; target: one copy of the layers)")


def main():
    work = tempfile.mkdtemp(prefix="superd-bench-img-")
    reg = None
    try:
        fx = os.path.join(work, "fx")
        run([os.path.join(TESTS, "mkimage.sh"), fx])
        reg = Registry(work)
        reg.push(os.path.join(fx, "oci-only"), "bench/small", "1")
        pulls(work, reg, os.path.join(fx, "oci-only"), f"{reg.addr}/bench/small:1",
              "the test image (4 layers, 1 MB compressed)")
        if not QUICK:
            big = only_final(big_image(work), os.path.join(work, "big-final"))
            reg.push(big, "bench/big", "1")
            files = sum(len(f) for _, _, f in os.walk("/usr/lib/python3.11")) + \
                sum(len(f) for _, _, f in os.walk("/usr/share/perl"))
            size = sum(os.path.getsize(b) for b in layers_of(big))
            pulls(work, reg, big, f"{reg.addr}/bench/big:1",
                  f"python3.11 + perl (2 layers, {size / 1e6:.0f} MB compressed, {files} files)")
        start_latency(work, os.path.join(fx, "oci-only"), os.path.join(fx, "oci"))
    finally:
        if reg:
            reg.close()
        subprocess.run(["umount", "-R", work], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


main()
