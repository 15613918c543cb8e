"""Helpers shared by the benchmark scripts: a busybox-static rootfs and `superctl status`."""
import json, os, shutil, subprocess, sys, time


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


class Superd:
    """superd in a network namespace of its own, on `mdir` with state, log and socket in `work`.
    `wrap` is a shell snippet run in the namespace first (e.g. bringing lo up). With
    `own_net=False` superd shares the host's namespace (to reach a registry on the host's
    loopback): then it runs with --no-nat and its workloads must not be bridged."""

    def __init__(self, superd, superctl, work, mdir, cgroup_root, log_level="warn", wrap=None,
                 extra_args=(), own_net=True):
        self.superctl, self.work = superctl, work
        self.sock = os.path.join(work, "superd.sock")
        self.log_path = os.path.join(work, "superd.log")
        self.log = open(self.log_path, "w")
        args = [superd, "--manifests", mdir, "--state-dir", os.path.join(work, "state"),
                "--socket", self.sock, "--cgroup-root", cgroup_root, *extra_args]
        if own_net:
            cmd = ["unshare", "--net", *(["sh", "-c", wrap + ' && exec "$0" "$@"'] if wrap else []), *args]
        else:
            cmd = [*args, "--no-nat"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     env={**os.environ, "SUPERD_LOG": log_level})
        self.pid = self.proc.pid  # unshare without --fork (and sh) exec superd in place
        deadline = time.time() + 20
        while True:
            try:
                status(superctl, self.sock)
                return
            except Exception:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError("superd did not come up")
                time.sleep(0.02)

    def status(self):
        return status(self.superctl, self.sock)

    def wait_empty(self, timeout=60):
        deadline = time.time() + timeout
        while self.status() and time.time() < deadline:
            time.sleep(0.02)

    def stop(self):
        """SIGTERM, then the exit status; superd's log is printed and an error raised if it
        did not exit 0."""
        import signal
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        if rc != 0:
            print(open(self.log_path).read(), file=sys.stderr)
            raise RuntimeError(f"superd exited {rc}")
