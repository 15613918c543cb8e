"""Helpers shared by the benchmark scripts: a busybox-static rootfs and `superctl status`."""
import json, os, shutil, subprocess


def busybox_rootfs(root, etc_files=()):
    """bin/ with busybox and sh, sleep, echo, cat; etc/passwd and group; empty mount points.
    `etc_files` adds (name, text) pairs under etc/."""
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "run", "bench"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    bb = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(bb, os.path.join(root, "bin/busybox"))
    for a in ["sh", "sleep", "echo", "cat"]:
        os.symlink("busybox", os.path.join(root, "bin", a))
    files = [("passwd", "root:x:0:0:root:/:/bin/sh\n"), ("group", "root:x:0:\n"), *etc_files]
    for name, text in files:
        with open(os.path.join(root, "etc", name), "w") as fh:
            fh.write(text)


def status(superctl, sock):
    """The workloads of `superctl status --json`."""
    out = subprocess.run([superctl, "--socket", sock, "status", "--json"], capture_output=True, check=True)
    return json.loads(out.stdout)["workloads"]
