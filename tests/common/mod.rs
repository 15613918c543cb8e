//! Shared sandbox for integration tests: starts the real `superd` binary in a network
//! namespace the test creates and holds (by fd), with its own manifest dir, state dir, socket
//! and a cgroup root below the test's own cgroup, and fails the test if anything it made is
//! left behind — links and nftables tables in that namespace included, which outlives superd.
#![allow(dead_code)]
// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use superd::api::{StatusResponse, WorkloadStatus};
use superd::ctl::Client;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One running superd and everything it was given.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub cgroup_root: String,
    child: Option<Child>,
    mounts_before: Vec<String>,
    seen_pids: Vec<u32>,
    netns: OwnedFd,
    net_before: String,
    extra_args: Vec<String>,
    /// The service manager's side of sd_notify: superd gets `NOTIFY_SOCKET` naming it.
    notify: std::os::unix::net::UnixDatagram,
    /// A shell script superd is started through (`exec "$0" "$@"` at its end), e.g. to
    /// mount something in a private mount namespace first; `None` starts superd directly.
    pub wrapper: Option<String>,
}

/// Creates a network namespace (on a throwaway thread, so the test's own threads stay in the
/// host's) with `lo` up, and returns an fd that keeps it alive.
pub fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        // SAFETY: unshare(2) affects only this thread, which ends right after.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            panic!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        }
        let fd: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net")
            .expect("opening the new netns")
            .into();
        fd
    })
    .join()
    .expect("netns thread")
}

/// Makes `cmd` run inside the network namespace `fd`.
pub fn in_netns(cmd: &mut Command, fd: &OwnedFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: setns(2) is async-signal-safe; `raw` stays open in the parent until spawn returns.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn mounts() -> Vec<String> {
    let mut m: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap_or("").to_string())
        .collect();
    m.sort();
    m
}

/// The directory of this process's cgroup in a v1 controller hierarchy.
pub fn own_cgroup_dir(controller: &str) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if ctrls.split(',').any(|c| c == controller) {
            return Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'));
        }
    }
    panic!("no {controller} hierarchy");
}

impl Sandbox {
    /// Starts superd with an empty manifest directory.
    pub fn start(test: &str) -> Sandbox {
        Sandbox::start_with(test, &[])
    }

    /// Starts superd with extra command-line arguments.
    pub fn start_with(test: &str, extra_args: &[&str]) -> Sandbox {
        Sandbox::start_in(test, &std::env::temp_dir(), extra_args)
    }

    /// Starts superd with its directories below `base` (e.g. outside /tmp, which a workload's
    /// own /tmp hides anyway).
    pub fn start_in(test: &str, base: &Path, extra_args: &[&str]) -> Sandbox {
        Sandbox::start_wrapped(test, base, extra_args, |_| None)
    }

    /// Starts superd through the shell script `wrapper` returns for the sandbox (see
    /// [`Sandbox::wrapper`]).
    pub fn start_wrapped(
        test: &str,
        base: &Path,
        extra_args: &[&str],
        wrapper: impl FnOnce(&Sandbox) -> Option<String>,
    ) -> Sandbox {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix(&format!("superd-{test}-"))
            .tempdir_in(base)
            .unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        // superd reads only a directory and files no one but root may write, whatever the
        // umask the tests run under.
        set_mode(&manifests, 0o755);
        let state = dir.path().join("state");
        let socket = dir.path().join("run/superd.sock");
        let cgroup_root = format!("superd-test-{}-{n}", std::process::id());
        let mounts_before = mounts();
        let netns = new_netns();
        let notify = std::os::unix::net::UnixDatagram::bind(dir.path().join("notify.sock"))
            .expect("binding the notify socket");
        notify
            .set_nonblocking(true)
            .expect("nonblocking notify socket");
        let mut sb = Sandbox {
            dir,
            manifests,
            state,
            socket,
            cgroup_root,
            child: None,
            mounts_before,
            seen_pids: Vec::new(),
            netns,
            net_before: String::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            notify,
            wrapper: None,
        };
        sb.cmd_ok(&["ip", "link", "set", "lo", "up"]);
        sb.net_before = sb.net_objects();
        sb.wrapper = wrapper(&sb);
        sb.spawn_superd();
        sb
    }

    /// Makes `cmd` run inside the sandbox's network namespace (e.g. a test registry that
    /// must listen only there).
    pub fn in_net(&self, cmd: &mut Command) {
        in_netns(cmd, &self.netns);
    }

    /// Runs a program inside the sandbox's network namespace and returns its output.
    pub fn cmd(&self, argv: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]);
        in_netns(&mut cmd, &self.netns);
        cmd.output()
            .unwrap_or_else(|e| panic!("running {argv:?}: {e}"))
    }

    /// Like [`Sandbox::cmd`], but panics unless it succeeds; returns stdout.
    pub fn cmd_ok(&self, argv: &[&str]) -> String {
        let out = self.cmd(argv);
        assert!(
            out.status.success(),
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread inside the sandbox's network namespace (sockets it opens live
    /// there).
    pub fn in_sandbox_net<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let fd = self.netns.try_clone().expect("dup netns fd");
        std::thread::spawn(move || {
            // SAFETY: setns(2) on this thread only; the thread ends after `f`.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                panic!("setns: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Links and nftables tables in the sandbox namespace, for the leftover check.
    pub fn net_objects(&self) -> String {
        let links = self.cmd_ok(&["ip", "-o", "link", "show"]);
        let mut names: Vec<String> = links
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect();
        names.sort();
        let tables = self.cmd_ok(&["nft", "list", "tables"]);
        format!("links: {}\ntables: {}", names.join(" "), tables.trim())
    }

    /// Stops superd (checking it exits cleanly) and starts a new one on the same directories
    /// and namespace.
    pub fn restart(&mut self) {
        self.shutdown_inner(true);
        self.spawn_superd();
    }

    /// Stops superd (checking it exits cleanly and leaves nothing behind); `spawn_superd`
    /// starts a successor on the same directories.
    pub fn stop(&mut self) {
        self.shutdown_inner(true);
    }

    /// Kills superd with SIGKILL (a crash); `spawn_superd` starts a successor.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts superd on this sandbox and waits for its control socket.
    pub fn spawn_superd(&mut self) {
        self.spawn_superd_in(None);
    }

    /// The command that starts superd on this sandbox (not spawned).
    pub fn superd_command(&self) -> Command {
        let mut cmd = match &self.wrapper {
            Some(script) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c", script])
                    .arg(env!("CARGO_BIN_EXE_superd"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_superd")),
        };
        cmd.arg("--manifests")
            .arg(&self.manifests)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .args(&self.extra_args);
        in_netns(&mut cmd, &self.netns);
        cmd
    }

    /// Starts superd in `cgroup` (a [`Sibling`] of the test's own cgroup), or in the test's
    /// own cgroup, and waits for its control socket.
    pub fn spawn_superd_in(&mut self, cgroup: Option<&Sibling>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("superd.log"))
            .unwrap();
        // superd runs in the test's namespace: nothing it does to links touches the host.
        let mut cmd = self.superd_command();
        cmd.env("SUPERD_LOG", "debug")
            .env("NOTIFY_SOCKET", self.dir.path().join("notify.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(sib) = cgroup {
            sib.enter_on_exec(&mut cmd);
        }
        self.child = Some(cmd.spawn().expect("spawning superd"));
        self.wait_until("control socket is up", Duration::from_secs(20), |s| {
            s.try_status().is_some()
        });
    }

    /// Runs superctl against this sandbox's superd.
    pub fn superctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_superctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running superctl")
    }

    /// The sd_notify messages superd sent since the last call, one string per datagram.
    pub fn notifications(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket).with_timeout(Duration::from_secs(5))
    }

    pub fn try_status(&self) -> Option<StatusResponse> {
        self.client().status(None).ok()
    }

    pub fn status(&mut self) -> StatusResponse {
        let s = self.client().status(None).expect("status");
        for w in &s.workloads {
            self.seen_pids.extend(w.pid);
            self.seen_pids.extend(w.init_pid);
        }
        s
    }

    pub fn workload(&mut self, name: &str) -> Option<WorkloadStatus> {
        self.status().workloads.into_iter().find(|w| w.name == name)
    }

    /// Writes a manifest atomically (write a temp file, rename over).
    pub fn write_manifest(&self, name: &str, text: &str) {
        let tmp = self.manifests.join(format!(".{name}.toml.tmp"));
        std::fs::write(&tmp, text).unwrap();
        set_mode(&tmp, 0o644);
        std::fs::rename(&tmp, self.manifests.join(format!("{name}.toml"))).unwrap();
    }

    pub fn remove_manifest(&self, name: &str) {
        std::fs::remove_file(self.manifests.join(format!("{name}.toml"))).unwrap();
    }

    /// Polls `cond` every 20 ms until it holds or the deadline passes (then panics with `what`
    /// and superd's log).
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for: {what}\nsuperd log:\n{}",
                    self.superd_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until workload `name` satisfies `pred` and returns its status.
    pub fn wait_for(
        &mut self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&WorkloadStatus) -> bool,
    ) -> WorkloadStatus {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(w) = self.workload(name) {
                if pred(&w) {
                    return w;
                }
                last = Some(w);
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {name}: {what}\nlast status: {last:#?}\nsuperd log:\n{}\nworkload log:\n{}",
                    self.superd_log(),
                    self.workload_log(name)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_running(&mut self, name: &str) -> WorkloadStatus {
        self.wait_for(name, "running", Duration::from_secs(20), |w| {
            w.state == superd::api::State::Running
        })
    }

    pub fn superd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("superd.log")).unwrap_or_default()
    }

    /// The text the workload wrote (the payloads of its current log file's records, a
    /// line each; lines that are not records are kept as they are).
    pub fn workload_log(&self, name: &str) -> String {
        let raw = self.workload_log_raw(name);
        let mut out = String::new();
        for line in raw.lines() {
            match superd::runtime::logfmt::parse_record(line) {
                Some(r) => {
                    out.push_str(r.text);
                    if !r.partial {
                        out.push('\n');
                    }
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The workload's current log file as written.
    pub fn workload_log_raw(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// Waits until the workload's log contains `needle`.
    pub fn wait_log(&self, name: &str, needle: &str) -> String {
        self.wait_until(
            &format!("`{needle}` in {name}.log"),
            Duration::from_secs(20),
            |s| s.workload_log(name).contains(needle),
        );
        self.workload_log(name)
    }

    /// The workload's cgroup directory in a v1 hierarchy.
    pub fn cgroup_dir(&self, controller: &str, name: &str) -> PathBuf {
        own_cgroup_dir(controller)
            .join(&self.cgroup_root)
            .join(name)
    }

    /// A busybox-static rootfs inside this sandbox's temp dir (removed with it).
    pub fn busybox_rootfs(&self) -> PathBuf {
        let root = self.dir.path().join("rootfs");
        if !root.join("bin/busybox").exists() {
            build_busybox_rootfs(&root);
        }
        root
    }

    pub fn superd_pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERMs superd and checks that it exits 0 and leaves nothing behind.
    pub fn shutdown(mut self) {
        self.shutdown_inner(true);
    }

    fn shutdown_inner(&mut self, check: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the PID of the superd we started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut problems = Vec::new();
        if status.map(|s| s.success()) != Some(true) {
            problems.push(format!("superd did not exit 0 after SIGTERM: {status:?}"));
        }
        // Leftovers: cgroup dirs, processes, mounts.
        for ctrl in ["memory", "pids", "cpu", "freezer", "devices"] {
            let root = own_cgroup_dir(ctrl).join(&self.cgroup_root);
            if root.exists() {
                problems.push(format!("cgroup root left behind: {}", root.display()));
                force_remove_cgroup(&root);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for pid in &self.seen_pids {
            // PID reuse: only complain about our own shim or workload processes.
            let cmdline =
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.contains("superd-init") {
                problems.push(format!("process {pid} left behind: {cmdline}"));
            }
        }
        if mounts() != self.mounts_before {
            problems.push("mount table changed".into());
        }
        let net_after = self.net_objects();
        if net_after != self.net_before {
            problems.push(format!(
                "network objects left behind:\nbefore: {}\nafter:  {net_after}",
                self.net_before
            ));
        }
        if check && !problems.is_empty() {
            panic!(
                "{}\nsuperd log:\n{}",
                problems.join("\n"),
                self.superd_log()
            );
        }
    }
}

/// A cgroup beside the test's own (`<own>/<name>` in each v1 hierarchy superd uses), removed
/// on drop: for starting superd from somewhere else than its predecessor.
pub struct Sibling {
    dirs: Vec<PathBuf>,
    procs: Vec<std::fs::File>,
}

impl Sibling {
    pub fn new(name: &str) -> Sibling {
        let dirs: Vec<PathBuf> = ["memory", "pids", "cpu", "freezer", "devices"]
            .iter()
            .map(|c| own_cgroup_dir(c).join(name))
            .collect();
        let mut procs = Vec::new();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
            procs.push(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("cgroup.procs"))
                    .unwrap(),
            );
        }
        Sibling { dirs, procs }
    }

    /// Kills every process left anywhere in the sibling's tree (PID-namespace inits
    /// included) and returns `pid comm` of each one it had to kill.
    /// Waits until no process is left in the cgroup (processes already SIGKILLed take a moment
    /// to leave it), at most `timeout`; true if it emptied.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pids_below(&self.dir("pids")).is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn kill_leftovers(&self) -> Vec<String> {
        let mut killed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = pids_below(&self.dir("pids"));
            if pids.is_empty() || Instant::now() > deadline {
                return killed;
            }
            for pid in pids {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let entry = format!("{pid} {}", comm.trim());
                if !killed.contains(&entry) {
                    killed.push(entry);
                }
                // SAFETY: kill(2) on a PID inside the test's own cgroup subtree.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The processes in the sibling's tree that are PID 1 of a namespace of their own.
    pub fn namespace_inits(&self) -> Vec<i32> {
        pids_below(&self.dir("pids"))
            .into_iter()
            .filter(|pid| {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .map(|ids| {
                        let ids: Vec<&str> = ids.split_whitespace().collect();
                        ids.len() >= 2 && ids.last() == Some(&"1")
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// The sibling's directory in the `controller` hierarchy.
    pub fn dir(&self, controller: &str) -> PathBuf {
        own_cgroup_dir(controller).join(self.dirs[0].file_name().unwrap())
    }

    /// Makes `cmd`'s process join this cgroup before it executes.
    pub fn enter_on_exec(&self, cmd: &mut Command) {
        let fds: Vec<i32> = self.procs.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: write(2) is async-signal-safe; the fds stay open in the parent until spawn
        // returns.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        for d in &self.dirs {
            force_remove_cgroup(d);
        }
    }
}

/// Every PID in the cgroup `dir` and its descendants.
fn pids_below(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                pids.extend(pids_below(&e.path()));
            }
        }
    }
    pids
}

/// chmod, independent of the umask.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Last-resort cleanup after a failed test: kill what is in the cgroups, remove them.
fn force_remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                force_remove_cgroup(&e.path());
            }
        }
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) on a PID inside the test's own cgroup subtree.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // A test that panicked still cleans up (without a second panic).
        if self.child.is_some() {
            let panicking = std::thread::panicking();
            self.shutdown_inner(!panicking);
        } else {
            // After a crash (`crash`) nobody stops the workloads it left: their cgroups go
            // with what runs in them.
            for ctrl in ["memory", "pids", "cpu", "freezer", "devices"] {
                let root = own_cgroup_dir(ctrl).join(&self.cgroup_root);
                if root.exists() {
                    force_remove_cgroup(&root);
                }
            }
        }
    }
}

/// Builds a busybox rootfs at `root` (bin/ with every applet, etc/passwd and group, the usual
/// empty mount points).
pub fn build_busybox_rootfs(root: &Path) {
    let _ = std::fs::remove_dir_all(root);
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "home/app", "data",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed (packaging/deps.sh installs it)");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n",
    )
    .unwrap();
}

/// Runs one of the repository's scripts (`packaging/appliance/build.sh`, …) from the
/// repository's root; returns its exit code and its stdout and stderr together.
pub fn run_script(script: &str, args: &[&str]) -> (Option<i32>, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join(script))
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
