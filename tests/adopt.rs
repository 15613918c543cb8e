//! A superd that starts after its predecessor died (SIGKILL) adopts what it left running:
//! same PIDs, restart counts and start times, the published port answering throughout; it
//! acts only on what changed meanwhile, and reports what ended meanwhile with its status.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};
use superd::api::State;
use superd::testing::privileged;

const NO_NET: &str = "[network]\nmode = \"none\"\n";

/// A TCP server on port 80 that greets every connection.
const SERVER: &str = r#"command = ["python3", "-c", '''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(64)
while True:
    c, _ = s.accept(); c.sendall(b"hello\n"); c.close()
''']
[network]
ports = ["8080:80"]
"#;

fn greeting() -> std::io::Result<String> {
    let addr = (Ipv4Addr::LOCALHOST, 8080);
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn greeted(sb: &Sandbox, within: Duration) -> Result<String, String> {
    sb.in_sandbox_net(move || {
        let deadline = Instant::now() + within;
        loop {
            match greeting() {
                Ok(g) => return Ok(g),
                Err(e) if Instant::now() > deadline => return Err(e.to_string()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    })
}

fn status_of(sb: &Sandbox, name: &str) -> Option<superd::api::WorkloadStatus> {
    sb.try_status()?
        .workloads
        .into_iter()
        .find(|w| w.name == name)
}

fn alive(pid: u32) -> bool {
    superd::runtime::state::process_start_time(pid as i32).is_some()
}

#[test]
fn a_restarted_superd_adopts_what_runs_and_acts_only_on_what_changed() {
    let Some(()) = privileged("a_restarted_superd_adopts_what_runs_and_acts_only_on_what_changed")
    else {
        return;
    };
    let mut sb = Sandbox::start("adopt");
    let go = sb.dir.path().join("go");
    std::fs::create_dir(&go).unwrap();
    common::set_mode(&go, 0o755);
    sb.write_manifest("web", SERVER);
    sb.write_manifest(
        "plain",
        &format!("command = [\"/bin/sleep\", \"1000\"]\ninit = false\n{NO_NET}"),
    );
    sb.write_manifest(
        "changed",
        &format!("command = [\"/bin/sleep\", \"1000\"]\n{NO_NET}"),
    );
    sb.write_manifest(
        "removed",
        &format!("command = [\"/bin/sleep\", \"1000\"]\n{NO_NET}"),
    );
    sb.write_manifest(
        "job",
        &format!(
            "command = [\"/bin/sh\", \"-c\", \"while [ ! -e /mnt/now ]; do sleep 0.05; done; exit 3\"]\n\
             {NO_NET}[restart]\npolicy = \"never\"\n\
             [[mounts]]\nsource = \"{}\"\ntarget = \"/mnt\"\n",
            go.display()
        ),
    );
    for n in ["plain", "changed", "removed", "job"] {
        sb.wait_running(n);
    }
    // One restart, so that there is a count to keep.
    let first = sb.wait_running("web").pid;
    sb.client().restart("web").unwrap();
    sb.wait_until("web restarted", Duration::from_secs(20), |s| {
        status_of(s, "web")
            .is_some_and(|w| w.state == State::Running && w.pid != first && w.restarts == 1)
    });
    assert_eq!(greeted(&sb, Duration::from_secs(20)).unwrap(), "hello\n");
    let web = sb.workload("web").unwrap();
    let plain = sb.workload("plain").unwrap();
    let changed = sb.workload("changed").unwrap();
    let removed = sb.workload("removed").unwrap();
    let job_shim = sb.workload("job").unwrap().init_pid.unwrap();
    let removed_cgroup = sb.cgroup_dir("pids", "removed");

    sb.crash();
    // While no superd runs: the workloads run and the published port answers; the job
    // ends, one manifest changes and one goes.
    assert!(alive(web.pid.unwrap()) && alive(plain.pid.unwrap()));
    assert_eq!(greeted(&sb, Duration::from_secs(5)).unwrap(), "hello\n");
    std::fs::write(go.join("now"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(job_shim) {
        assert!(Instant::now() < deadline, "the job did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    sb.write_manifest(
        "changed",
        &format!("command = [\"/bin/sleep\", \"2000\"]\n{NO_NET}"),
    );
    sb.remove_manifest("removed");

    sb.spawn_superd();
    sb.wait_until("the changes are applied", Duration::from_secs(30), |s| {
        let by = |n: &str| status_of(s, n);
        by("removed").is_none()
            && by("changed").is_some_and(|w| w.state == State::Running && w.pid != changed.pid)
            && by("job").is_some_and(|w| w.last_exit.is_some())
    });
    // Unchanged: the same processes, restart count and start time.
    for (before, name) in [(&web, "web"), (&plain, "plain")] {
        let now = sb.workload(name).unwrap();
        assert_eq!(now.state, State::Running, "{name}\n{}", sb.superd_log());
        assert_eq!(
            (now.pid, now.init_pid, now.restarts, &now.started_at),
            (
                before.pid,
                before.init_pid,
                before.restarts,
                &before.started_at
            ),
            "{name}"
        );
        assert!(now.uptime_seconds.is_some(), "{name}");
    }
    assert_eq!(sb.workload("web").unwrap().restarts, 1);
    assert_eq!(greeted(&sb, Duration::from_secs(5)).unwrap(), "hello\n");
    // Removed while superd was down: stopped, its cgroup gone.
    assert!(!alive(removed.pid.unwrap()));
    assert!(!removed_cgroup.exists());
    // Ended while superd was down: seen with its real status.
    let job = sb.workload("job").unwrap();
    assert_eq!(
        job.last_exit.as_ref().and_then(|e| e.code),
        Some(3),
        "{job:?}"
    );
    let log = sb.superd_log();
    for name in ["web", "plain", "changed", "removed"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("{name} adopted pid="))),
            "{name} not adopted:\n{log}"
        );
    }
    // An adopted workload stops as any other, and leaves nothing behind.
    sb.remove_manifest("web");
    sb.wait_until("web is gone", Duration::from_secs(20), |s| {
        status_of(s, "web").is_none()
    });
    assert!(!alive(web.pid.unwrap()));
    sb.shutdown();
}

#[test]
fn superctl_reexec_replaces_superd_in_place_and_keeps_every_workload() {
    let Some(()) = privileged("superctl_reexec_replaces_superd_in_place_and_keeps_every_workload")
    else {
        return;
    };
    let mut sb = Sandbox::start("reexec");
    sb.write_manifest("web", SERVER);
    sb.write_manifest(
        "worker",
        &format!("command = [\"/bin/sleep\", \"1000\"]\ninit = false\n{NO_NET}"),
    );
    let web = sb.wait_running("web");
    let worker = sb.wait_running("worker");
    assert_eq!(greeted(&sb, Duration::from_secs(20)).unwrap(), "hello\n");
    let superd = sb.superd_pid();
    let out = sb.superctl(&["reexec", "--timeout", "60s"]);
    assert!(out.status.success(), "{out:?}\n{}", sb.superd_log());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("2 of its 2 workloads adopted"), "{said}");
    // The same process, a new image: the workloads are its children still.
    assert_eq!(sb.superd_pid(), superd);
    for (before, name) in [(&web, "web"), (&worker, "worker")] {
        let now = sb.workload(name).unwrap();
        assert_eq!(
            (now.state, now.pid, now.restarts, &now.started_at),
            (State::Running, before.pid, 0, &before.started_at),
            "{name}"
        );
        let init = now.init_pid.or(now.pid).unwrap();
        let ppid = std::fs::read_to_string(format!("/proc/{init}/stat"))
            .unwrap()
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1).map(str::to_string));
        assert_eq!(ppid, Some(superd.to_string()), "{name}'s init");
    }
    assert_eq!(greeted(&sb, Duration::from_secs(5)).unwrap(), "hello\n");
    // Its exit is seen with its status (reaped by the new image: without superd's init
    // there is no exit file) and it restarts as usual. It is PID 1 of its namespace: only
    // SIGKILL reaches it from outside.
    std::process::Command::new("kill")
        .arg("-KILL")
        .arg(worker.pid.unwrap().to_string())
        .status()
        .unwrap();
    sb.wait_until("worker restarted", Duration::from_secs(20), |s| {
        status_of(s, "worker")
            .is_some_and(|w| w.state == State::Running && w.pid != worker.pid && w.restarts == 1)
    });
    let exit = sb.workload("worker").unwrap().last_exit.unwrap();
    assert_eq!(exit.signal.as_deref(), Some("SIGKILL"), "{exit:?}");
    sb.shutdown();
}

#[test]
fn a_package_upgrade_re_executes_the_new_binary_and_restarts_no_workload() {
    let Some(()) =
        privileged("a_package_upgrade_re_executes_the_new_binary_and_restarts_no_workload")
    else {
        return;
    };
    // superd runs from a path of its own, as from /usr/bin/superd: the "upgrade" replaces
    // that file the way dpkg does (a new file renamed over the old one).
    let mut sb = Sandbox::start_wrapped("upgrade", &std::env::temp_dir(), &[], |sb| {
        let bin = sb.dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_superd"), bin.join("superd")).unwrap();
        Some(format!("exec {} \"$@\"", bin.join("superd").display()))
    });
    let installed = sb.dir.path().join("bin/superd");
    sb.write_manifest("web", SERVER);
    let web = sb.wait_running("web");
    let superd = sb.superd_pid();
    let exe = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let new = sb.dir.path().join("bin/superd.dpkg-new");
    std::fs::copy(env!("CARGO_BIN_EXE_superd"), &new).unwrap();
    std::fs::rename(&new, &installed).unwrap();
    assert!(exe(superd).to_string_lossy().ends_with(" (deleted)"));

    let superctl_dir = std::path::Path::new(env!("CARGO_BIN_EXE_superctl"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        superctl_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let postinst = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb/postinst");
    let out = std::process::Command::new(&postinst)
        .args(["configure", "0.0.1"])
        .env("PATH", path)
        .env("SUPERD_SOCKET", &sb.socket)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("re-executed"),
        "{out:?}\n{}",
        sb.superd_log()
    );
    // The same superd process runs the new file; the workload never stopped.
    assert_eq!(sb.superd_pid(), superd);
    assert_eq!(exe(superd), installed);
    let now = sb.workload("web").unwrap();
    assert_eq!(
        (now.state, now.pid, now.restarts),
        (State::Running, web.pid, 0)
    );
    assert_eq!(greeted(&sb, Duration::from_secs(5)).unwrap(), "hello\n");
    sb.shutdown();
}
