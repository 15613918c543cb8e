//! PID-1 mode on this machine: superd is PID 1 of a PID namespace the test creates (with its
//! own mount, UTS and network namespaces, so nothing it mounts, names or links reaches the
//! host). There `reboot(2)` ends the namespace with a signal that says which action was asked
//! for (SIGINT for power off and halt, SIGHUP for reboot), so the whole path — power signal or
//! `superctl poweroff`, orderly stop of every workload, `reboot(2)` — is observable. The real
//! machine-level path (mounts, modules, cgroup2, poweroff) is booted in a VM by the appliance
//! test.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use superd::api::State;
use superd::ctl::Client;
use superd::testing::privileged;

/// superd as PID 1 of fresh pid/mount/uts/net namespaces, started in a cgroup of its own so
/// that whatever it leaves (itself included, as the init of its namespace) is found, killed
/// and reported.
struct Init {
    dir: tempfile::TempDir,
    child: Option<Child>,
    cgroup_root: String,
    guard: common::Sibling,
}

impl Init {
    fn start(test: &str, extra: &[&str]) -> Init {
        // Under the default temp dir (/tmp), on purpose: PID-1 mode must not hide a /tmp that
        // holds files under a tmpfs of its own.
        let dir = tempfile::Builder::new()
            .prefix(&format!("superd-{test}-"))
            .tempdir()
            .unwrap();
        for d in ["manifests", "empty"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
            std::fs::set_permissions(
                dir.path().join(d),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
        let cgroup_root = format!("superd-pid1-{}-{test}", std::process::id());
        let log = std::fs::File::create(dir.path().join("superd.log")).unwrap();
        // The host's modules-load.d stays out of reach: an empty directory is bind-mounted
        // over it in the private mount namespace before superd (exec'ed as PID 1) reads it.
        let script = format!(
            "mount --bind {empty} /etc/modules-load.d 2>/dev/null; ip link set lo up; exec \"$0\" \"$@\"",
            empty = dir.path().join("empty").display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid",
            "--fork",
            "--mount",
            "--uts",
            "--net",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            env!("CARGO_BIN_EXE_superd"),
        ])
        .arg("--manifests")
        .arg(dir.path().join("manifests"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("superd.sock"))
        .arg("--cgroup-root")
        .arg(&cgroup_root)
        .args(extra)
        .env("SUPERD_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        let guard =
            common::Sibling::new(&format!("superd-pid1-guard-{}-{test}", std::process::id()));
        guard.enter_on_exec(&mut cmd);
        let child = cmd.spawn().expect("unshare");
        Init {
            dir,
            child: Some(child),
            cgroup_root,
            guard,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("superd.log")).unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::new(self.dir.path().join("superd.sock")).with_timeout(Duration::from_secs(5))
    }

    fn wait(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out: {what}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// The PID of superd as the host sees it (the child of `unshare --fork`); 0 when unknown.
    fn try_superd_host_pid(&self) -> i32 {
        let unshare = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
        let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The PID of superd as the host sees it. Never 0 or 1: kill(0, …) would signal the
    /// test's own process group, kill(1, …) the host's init.
    fn superd_host_pid(&self) -> i32 {
        let pid = self.try_superd_host_pid();
        assert!(
            pid > 1,
            "superd's PID is unknown ({pid})\nlog:\n{}",
            self.log()
        );
        pid
    }

    /// Waits for the namespace to end; returns unshare's exit status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("superd as PID 1 did not end\nlog:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cgroups_left(&self) -> Vec<PathBuf> {
        ["memory", "pids", "cpu", "freezer", "devices"]
            .iter()
            .map(|c| self.guard.dir(c).join(&self.cgroup_root))
            .filter(|p| p.exists())
            .collect()
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // unshare's child is superd; killing unshare alone would leave it. SIGKILL to PID
            // 1 of a namespace ends every process in it. unshare's `children` file does not
            // always list it, so every namespace init in the guard cgroup is found and killed.
            let mut inits = self.guard.namespace_inits();
            inits.push(self.try_superd_host_pid());
            for pid in inits.into_iter().filter(|&p| p > 1) {
                // SAFETY: kill(2) on a PID-namespace init this test started (it lives in the
                // test's own guard cgroup).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Killing PID 1 of the namespace ends every process in it (a large process takes a
        // moment to exit under load); anything still in the guard cgroup after that escaped
        // the kill, and fails the test.
        self.guard.wait_empty(Duration::from_secs(3));
        let left = self.guard.kill_leftovers();
        for p in self.cgroups_left() {
            let _ = std::fs::remove_dir(&p);
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!(
                "processes left behind (killed now): {left:?}\nlog:\n{}",
                self.log()
            );
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.toml"))).unwrap();
}

/// The signal that ended the namespace's init, as `unshare --fork` reports it.
fn ended_by(st: std::process::ExitStatus) -> Option<i32> {
    st.signal()
        .or_else(|| st.code().filter(|c| *c > 128).map(|c| c - 128))
}

#[test]
fn superctl_poweroff_stops_workloads_then_powers_off() {
    let Some(()) = privileged("superctl_poweroff_stops_workloads_then_powers_off") else {
        return;
    };
    let mut init = Init::start("pid1-poweroff", &[]);
    init.wait("control socket", |i| i.client().status(None).is_ok());
    // web ignores SIGTERM: its stop takes the whole 2 s timeout, a window in which a second
    // power request must be refused rather than acknowledged and dropped.
    write(
        &init.manifests(),
        "web",
        "command = [\"sh\", \"-c\", \"trap '' TERM; while :; do sleep 1; done\"]\n\
         [stop]\ntimeout = \"2s\"\n",
    );
    init.wait("web running", |i| {
        i.client().status(Some("web")).is_ok_and(|s| {
            s.workloads
                .first()
                .is_some_and(|w| w.state == State::Running)
        })
    });
    let ack = init
        .client()
        .power(superd::api::PowerAction::Poweroff)
        .expect("poweroff request");
    assert!(ack.message.contains("poweroff"), "{}", ack.message);
    let second = init.client().power(superd::api::PowerAction::Reboot);
    assert!(
        second
            .as_ref()
            .is_err_and(|e| e.to_string().contains("a poweroff is already under way")),
        "a reboot during a poweroff was not refused: {second:?}"
    );
    let st = init.wait_exit();
    let log = init.log();
    assert_eq!(ended_by(st), Some(libc::SIGINT), "{st:?}\n{log}");
    assert!(log.contains("poweroff requested"), "{log}");
    assert!(
        log.contains("superd: web removed signal=SIGKILL reason=stop-timeout"),
        "{log}"
    );
    assert!(log.contains("poweroff: syncing and unmounting"), "{log}");
    // Never the host's mounts: in a child PID namespace nothing is unmounted or remounted.
    assert!(
        log.contains("PID 1 of a child PID namespace: leaving the mounts as they are"),
        "{log}"
    );
    assert!(init.cgroups_left().is_empty(), "{:?}", init.cgroups_left());
}

#[test]
fn power_signals_of_both_families_map_to_their_actions() {
    let Some(()) = privileged("power_signals_of_both_families_map_to_their_actions") else {
        return;
    };
    // systemd's SIGRTMIN+5 asks for a reboot, which ends a PID namespace with SIGHUP;
    // busybox's SIGUSR2 and plain SIGTERM ask for poweroff (SIGINT).
    let rt = libc::SIGRTMIN();
    for (sig, ends_with, action) in [
        (rt + 5, libc::SIGHUP, "reboot"),
        (libc::SIGUSR2, libc::SIGINT, "poweroff"),
        (libc::SIGTERM, libc::SIGINT, "poweroff"),
    ] {
        let mut init = Init::start(&format!("pid1-sig{sig}"), &[]);
        init.wait("control socket", |i| i.client().status(None).is_ok());
        let pid = init.superd_host_pid();
        assert!(pid > 0);
        // SAFETY: kill(2) on the PID of the superd this test started.
        unsafe { libc::kill(pid, sig) };
        let st = init.wait_exit();
        let log = init.log();
        assert_eq!(ended_by(st), Some(ends_with), "signal {sig}: {st:?}\n{log}");
        assert!(log.contains(&format!("{action} requested")), "{log}");
    }
}

#[test]
fn a_fatal_error_as_pid1_never_exits_and_still_powers_off() {
    let Some(()) = privileged("a_fatal_error_as_pid1_never_exits_and_still_powers_off") else {
        return;
    };
    // The log directory cannot be created (its parent is a file): a fatal start error.
    let mut init = Init::start("pid1-fatal", &["--log-dir", "/dev/null/logs"]);
    init.wait("emergency mode", |i| i.log().contains("emergency mode"));
    std::thread::sleep(Duration::from_millis(300));
    let alive = init
        .child
        .as_mut()
        .map(|c| c.try_wait().ok().flatten().is_none());
    assert_eq!(alive, Some(true), "PID 1 exited:\n{}", init.log());
    assert!(
        init.log().contains("superd: FATAL: preparing state dir"),
        "{}",
        init.log()
    );
    let pid = init.superd_host_pid();
    // SAFETY: kill(2) on the PID of the superd this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let st = init.wait_exit();
    assert_eq!(ended_by(st), Some(libc::SIGINT), "{st:?}\n{}", init.log());
}

/// Children of every thread of `pid`, as the host sees them.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The process's command name, when it exists (a zombie has one too: its state is `Z`).
fn comm_and_state(pid: i32) -> Option<(String, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_string();
    Some((comm, tail.chars().next()?))
}

#[test]
fn orphans_that_reach_pid1_are_reaped() {
    let Some(()) = privileged("orphans_that_reach_pid1_are_reaped") else {
        return;
    };
    let init = Init::start("pid1-orphans", &[]);
    init.wait("control socket", |i| i.client().status(None).is_ok());
    let pid = init.superd_host_pid();
    assert!(pid > 0);
    // A process entering superd's PID namespace double-forks: the grandchildren's parent exits
    // at once, so the kernel hands them to the namespace's init — superd.
    let status = Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--pid", "--", "sh", "-c"])
        .arg("for i in 1 2 3 4 5; do (sleep 1 &); done")
        .status()
        .expect("nsenter");
    assert!(status.success(), "{status:?}");
    // superd has no children of its own here (no workloads): every child is an orphan. A
    // grandchild may still be between fork and exec, so wait for all five to show.
    let deadline = Instant::now() + Duration::from_secs(5);
    let orphans = loop {
        let children = children_of(pid);
        if children.len() >= 5 || Instant::now() > deadline {
            break children;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        orphans.len(),
        5,
        "the orphans were not reparented to superd: {orphans:?}"
    );
    // Each exits after a second; PID 1 must reap it (a zombie would stay in /proc as `Z`).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<(i32, Option<(String, char)>)> = orphans
            .iter()
            .map(|p| (*p, comm_and_state(*p)))
            .filter(|(_, s)| s.is_some())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphans not reaped by superd as PID 1: {left:?}\n{}",
            init.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_power_signal_skips_the_orderly_stop() {
    let Some(()) = privileged("a_second_power_signal_skips_the_orderly_stop") else {
        return;
    };
    let mut init = Init::start("pid1-twice", &[]);
    init.wait("control socket", |i| i.client().status(None).is_ok());
    // A workload whose orderly stop would take 60 s.
    write(
        &init.manifests(),
        "slow",
        "command = [\"sh\", \"-c\", \"trap '' TERM; while :; do sleep 1; done\"]\n\
         [stop]\ntimeout = \"60s\"\n",
    );
    init.wait("slow running", |i| {
        i.client().status(Some("slow")).is_ok_and(|s| {
            s.workloads
                .first()
                .is_some_and(|w| w.state == State::Running)
        })
    });
    let pid = init.superd_host_pid();
    // SAFETY: kill(2) on the PID of the superd this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    init.wait("the orderly stop began", |i| {
        i.log().contains("superd: slow stopping")
    });
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // wait_exit gives up after 30 s, half the stop timeout the second signal cuts short.
    let st = init.wait_exit();
    let log = init.log();
    assert_eq!(ended_by(st), Some(libc::SIGINT), "{st:?}\n{log}");
    assert!(
        log.contains("poweroff requested again: not waiting for the workloads to stop"),
        "{log}"
    );
    // Even then superd removed the workload cgroups it made (it may be a container's init).
    assert!(init.cgroups_left().is_empty(), "{:?}", init.cgroups_left());
}
