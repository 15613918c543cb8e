//! One superd per state directory, and what a successor does with what its predecessor
//! started: a second instance changes nothing; after a crash, a superd started from another
//! cgroup root cannot adopt them and stops every recorded instance (even one named `daemon`)
//! before starting its own; a workload that ended meanwhile leaves its status (adoption
//! itself: tests/adopt.rs).

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Sandbox, Sibling};
use std::time::{Duration, Instant};
use superd::api::State;
use superd::testing::privileged;

const SLEEPER: &str = "command = [\"/bin/sleep\", \"1000\"]\n";

fn alive(pid: u32) -> bool {
    // A zombie is as good as gone; /proc/PID/stat's state field tells.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn a_second_superd_exits_at_once_and_changes_nothing() {
    let Some(()) = privileged("a_second_superd_exits_at_once_and_changes_nothing") else {
        return;
    };
    let mut sb = Sandbox::start("second");
    sb.write_manifest(
        "web",
        &format!("{SLEEPER}[network]\nports = [\"8080:80\"]\n"),
    );
    let before = sb.wait_running("web");
    let net_before = sb.net_objects();
    let t0 = Instant::now();
    let out = sb
        .superd_command()
        .output()
        .expect("running a second superd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("another superd (PID {})", sb.superd_pid())),
        "{stderr}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "it took {:?}",
        t0.elapsed()
    );
    // The first one's workload, bridge, veth and nftables table are untouched.
    assert_eq!(sb.net_objects(), net_before);
    let after = sb.workload("web").unwrap();
    assert_eq!((after.state, after.pid), (State::Running, before.pid));
    assert!(sb.cgroup_dir("pids", "web").exists());
    sb.shutdown();
}

#[test]
fn after_a_crash_a_superd_in_another_cgroup_stops_every_recorded_instance() {
    let Some(()) =
        privileged("after_a_crash_a_superd_in_another_cgroup_stops_every_recorded_instance")
    else {
        return;
    };
    let mut sb = Sandbox::start("crashed");
    let none = "[network]\nmode = \"none\"\n";
    sb.write_manifest("web", &format!("{SLEEPER}{none}"));
    sb.write_manifest("daemon", &format!("{SLEEPER}{none}"));
    let old: Vec<(u32, u32)> = ["web", "daemon"]
        .iter()
        .map(|n| {
            let w = sb.wait_running(n);
            (w.pid.unwrap(), w.init_pid.unwrap())
        })
        .collect();
    let old_dirs = [
        sb.cgroup_dir("pids", "web"),
        sb.cgroup_dir("pids", "daemon"),
    ];
    sb.crash();
    for (pid, shim) in &old {
        assert!(
            alive(*pid) && alive(*shim),
            "a crash leaves the workloads running"
        );
    }
    let elsewhere = Sibling::new(&format!("superd-test-elsewhere-{}", std::process::id()));
    sb.spawn_superd_in(Some(&elsewhere));
    let new: Vec<u32> = ["web", "daemon"]
        .iter()
        .map(|n| sb.wait_running(n).pid.unwrap())
        .collect();
    for (pid, shim) in &old {
        let deadline = Instant::now() + Duration::from_secs(10);
        while (alive(*pid) || alive(*shim)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(*pid) && !alive(*shim),
            "{pid}/{shim} of the crashed superd still run"
        );
    }
    for (n, (pid, _)) in new.iter().zip(&old) {
        assert_ne!(n, pid);
    }
    let log = sb.superd_log();
    for name in ["web", "daemon"] {
        assert!(
            log.lines().any(
                |l| l.contains("left running by a superd that ended, but its cgroup")
                    && l.contains(&format!("workload={name}"))
            ),
            "{log}"
        );
    }
    for d in &old_dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    // The new superd lives (and makes its cgroups) in the sibling; the crashed one's root is
    // empty now, and only a directory superd could not know about remains.
    assert!(elsewhere
        .dir("pids")
        .join(&sb.cgroup_root)
        .join("web")
        .exists());
    for c in ["memory", "pids", "cpu", "freezer", "devices"] {
        let _ = std::fs::remove_dir(common::own_cgroup_dir(c).join(&sb.cgroup_root));
    }
    sb.stop();
    for c in ["memory", "pids", "cpu", "freezer", "devices"] {
        assert!(!elsewhere.dir(c).join(&sb.cgroup_root).exists());
    }
}

#[test]
fn a_failed_start_prints_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superd"))
        .arg("--state-dir")
        .arg(file.join("state"))
        .arg("--manifests")
        .arg(dir.path())
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("creating the state directory"), "{stderr}");
    assert_eq!(last.matches("os error").count(), 1, "{last}");
}

#[test]
fn a_workload_that_ends_while_superd_is_down_leaves_its_status_in_the_exit_file() {
    let Some(()) =
        privileged("a_workload_that_ends_while_superd_is_down_leaves_its_status_in_the_exit_file")
    else {
        return;
    };
    let mut sb = Sandbox::start("exitfile");
    // It waits for a file the test creates after superd is gone, then exits 7.
    let go = sb.dir.path().join("go");
    std::fs::create_dir(&go).unwrap();
    common::set_mode(&go, 0o755);
    sb.write_manifest(
        "job",
        &format!(
            "command = [\"/bin/sh\", \"-c\", \"while [ ! -e /mnt/now ]; do sleep 0.05; done; exit 7\"]\n\
             [network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n\
             [[mounts]]\nsource = \"{}\"\ntarget = \"/mnt\"\n",
            go.display()
        ),
    );
    let w = sb.wait_running("job");
    let shim = w.init_pid.unwrap();
    let instances = sb.state.join("instances");
    let exit_file = || {
        std::fs::read_dir(&instances)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "exit"))
    };
    let file = exit_file().expect("an exit file for the running instance");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "", "written early");

    sb.crash();
    std::fs::write(go.join("now"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(shim) {
        assert!(Instant::now() < deadline, "the shim did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    // exit 7 is the raw wait status 7 << 8.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1792\n");

    // A successor says how it ended, and cleans the record and its exit file up.
    sb.spawn_superd();
    sb.wait_until("the record is gone", Duration::from_secs(20), |_| {
        exit_file().is_none()
    });
    let log = sb.superd_log();
    assert!(
        log.lines().any(
            |l| l.contains("ended while no superd was running: exit code 7")
                && l.contains("workload=job")
        ),
        "{log}"
    );
    sb.shutdown();
}
