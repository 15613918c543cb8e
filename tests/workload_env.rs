//! What a workload is given besides its rootfs: its own session, its own ports, rlimits,
//! cgroup files, tmpfs sizes and default limits — checked from inside real containers.

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::api::State;
use superd::testing::privileged;

fn manifest(rootfs: &std::path::Path, command: &str, extra: &str) -> String {
    format!(
        "command = [\"/bin/sh\", \"-c\", {command:?}]\n{extra}\n[rootfs]\npath = \"{}\"\n",
        rootfs.display()
    )
}

/// Fields 5 (pgrp) and 6 (session) of `/proc/PID/stat`.
fn pgrp_and_session(pid: u32) -> (u32, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    (after[2].parse().unwrap(), after[3].parse().unwrap())
}

#[test]
fn every_workload_has_its_own_session_and_kill_zero_stays_inside() {
    let Some(()) = privileged("every_workload_has_its_own_session_and_kill_zero_stays_inside")
    else {
        return;
    };
    let mut sb = Sandbox::start("session");
    let rootfs = sb.busybox_rootfs();
    let none = "[network]\nmode = \"none\"\n";
    sb.write_manifest("bystander", &manifest(&rootfs, "exec sleep 1000", none));
    let by = sb.wait_running("bystander");
    // As PID 1 of its namespace the workload ignores the SIGTERM it sends itself.
    sb.write_manifest(
        "killer",
        &manifest(
            &rootfs,
            "kill -TERM 0; echo sent; exec sleep 1000",
            &format!("init = false\n{none}[stop]\ntimeout = \"1s\"\n"),
        ),
    );
    let killer = sb.wait_running("killer");
    sb.wait_log("killer", "sent");
    std::thread::sleep(Duration::from_millis(200));
    let k = killer.pid.unwrap();
    assert_eq!(pgrp_and_session(k), (k, k), "init = false: its own session");
    let shim = by.init_pid.unwrap();
    assert_eq!(
        pgrp_and_session(shim),
        (shim, shim),
        "the shim: its own session"
    );
    assert!(
        sb.try_status().is_some(),
        "superd survived kill(0, SIGTERM)"
    );
    let by_now = sb.workload("bystander").unwrap();
    assert_eq!((by_now.state, by_now.pid), (State::Running, by.pid));
    // Text logs carry no colour codes when they do not go to a terminal.
    assert!(
        !sb.superd_log().contains('\u{1b}'),
        "ANSI escapes in the log"
    );
    sb.shutdown();
}

#[test]
fn a_non_root_workload_binds_port_80_in_its_own_namespace() {
    let Some(()) = privileged("a_non_root_workload_binds_port_80_in_its_own_namespace") else {
        return;
    };
    let mut sb = Sandbox::start("lowport");
    let rootfs = sb.busybox_rootfs();
    let cmd = "nc -l -p 80 </dev/null >/dev/null 2>/tmp/err & sleep 0.3; \
               if grep -q ':0050 ' /proc/net/tcp /proc/net/tcp6; then echo LISTENING-80; \
               else echo NOT-LISTENING; cat /tmp/err; fi; exec sleep 1000";
    sb.write_manifest(
        "web",
        &manifest(
            &rootfs,
            cmd,
            "user = \"1000\"\n[network]\nmode = \"none\"\n",
        ),
    );
    sb.wait_running("web");
    sb.wait_until("the port check", Duration::from_secs(20), |s| {
        s.workload_log("web").contains("LISTEN")
    });
    let log = sb.workload_log("web");
    assert!(log.contains("LISTENING-80"), "{log}");
    sb.shutdown();
}
