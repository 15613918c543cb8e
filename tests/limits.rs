//! cgroup limits against the real kernel: OOM kill reported, fork bomb contained, CPU throttled.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::api::{ExitReason, State};
use superd::testing::privileged;

fn keyed(path: &std::path::Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

#[test]
fn memory_limit_oom_kill_is_reported() {
    let Some(()) = privileged("memory_limit_oom_kill_is_reported") else {
        return;
    };
    let mut sb = Sandbox::start("oom");
    let rootfs = sb.busybox_rootfs();
    sb.write_manifest(
        "hog",
        &format!(
            "command = [\"/bin/sh\", \"-c\", \"x=a; while true; do x=$x$x; done\"]\n\
             [rootfs]\npath = \"{}\"\n[resources]\nmemory = \"16M\"\n[restart]\npolicy = \"never\"\n",
            rootfs.display()
        ),
    );
    let w = sb.wait_for("hog", "oom-killed", Duration::from_secs(30), |w| {
        w.state == State::Exited
    });
    let le = w.last_exit.unwrap();
    assert_eq!(le.reason, ExitReason::OomKilled, "{le:?}");
    assert_eq!(le.signal.as_deref(), Some("SIGKILL"));
    sb.shutdown();
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let Some(()) = privileged("pids_limit_contains_a_fork_bomb") else {
        return;
    };
    let mut sb = Sandbox::start("forkbomb");
    let rootfs = sb.busybox_rootfs();
    sb.write_manifest(
        "bomb",
        &format!(
            "command = [\"/bin/sh\", \"-c\", \"sleep 1000 & (while true; do sleep 1000 & done); echo contained; wait\"]\n\
             [rootfs]\npath = \"{}\"\n[resources]\npids = 20\n",
            rootfs.display()
        ),
    );
    sb.wait_running("bomb");
    let log = sb.wait_log("bomb", "contained");
    assert!(log.contains("can't fork"), "{log}");
    let dir = sb.cgroup_dir("pids", "bomb");
    let current: u64 = std::fs::read_to_string(dir.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 20, "pids.current = {current}");
    assert!(
        keyed(&dir.join("pids.events"), "max ") > 0,
        "the limit was hit"
    );
    // superd stays responsive and the workload keeps running.
    assert_eq!(sb.workload("bomb").unwrap().state, State::Running);
    sb.shutdown();
}

#[test]
fn cpu_quota_throttles_a_busy_loop() {
    let Some(()) = privileged("cpu_quota_throttles_a_busy_loop") else {
        return;
    };
    let mut sb = Sandbox::start("cpu");
    sb.write_manifest(
        "spin",
        "command = [\"/bin/sh\", \"-c\", \"while true; do :; done\"]\n[resources]\ncpus = 0.1\n",
    );
    sb.wait_running("spin");
    let dir = sb.cgroup_dir("cpu", "spin");
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "10000"
    );
    sb.wait_until(
        "the busy loop is throttled",
        Duration::from_secs(20),
        |_| {
            keyed(&dir.join("cpu.stat"), "nr_throttled ") >= 3
                && keyed(&dir.join("cpu.stat"), "throttled_time ") > 0
        },
    );
    sb.shutdown();
}
