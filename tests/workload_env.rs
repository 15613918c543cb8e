//! What a workload is given besides its rootfs: its own session, its own ports, rlimits,
//! cgroup files, tmpfs sizes and default limits — checked from inside real containers.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

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

/// `(soft, hard)` of a `/proc/PID/limits` row such as "Max open files".
fn limit_row(limits: &str, row: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no {row} in {limits}"));
    let f: Vec<&str> = line[row.len()..].split_whitespace().collect();
    (f[0].to_string(), f[1].to_string())
}

fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    bnd & (1 << 24) != 0 // CAP_SYS_RESOURCE
}

#[test]
fn rlimits_tmpfs_sizes_and_pids_have_explicit_defaults() {
    let Some(()) = privileged("rlimits_tmpfs_sizes_and_pids_have_explicit_defaults") else {
        return;
    };
    let mut sb = Sandbox::start("limits");
    let rootfs = sb.busybox_rootfs();
    let none = "[network]\nmode = \"none\"\n";
    let show = "cat /proc/self/limits; grep -E ' /(tmp|run|dev/shm) ' /proc/self/mountinfo; \
                echo END; exec sleep 1000";
    sb.write_manifest("dflt", &manifest(&rootfs, show, none));
    sb.write_manifest(
        "set",
        &manifest(
            &rootfs,
            show,
            &format!(
                "{none}[resources]\nnofile = 4096\npids = 100\n[resources.ulimits]\n\
                 core = \"unlimited\"\nnproc = \"500:600\"\n\
                 [tmpfs]\ntmp = \"1M\"\nrun = \"512K\"\nshm = \"2M\"\n"
            ),
        ),
    );
    sb.wait_running("dflt");
    sb.wait_running("set");
    let dflt = sb.wait_log("dflt", "END");
    let set = sb.wait_log("set", "END");
    // superd's own hard limit, which a default is lowered to without CAP_SYS_RESOURCE.
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) into a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) };
    let hard = if has_cap_sys_resource() {
        524_288
    } else {
        own.rlim_max.min(524_288)
    };
    assert_eq!(
        limit_row(&dflt, "Max open files"),
        ("1024".into(), hard.to_string()),
        "{dflt}"
    );
    assert_eq!(limit_row(&dflt, "Max core file size").0, "0");
    assert_eq!(
        limit_row(&dflt, "Max locked memory").0,
        (8u64 << 20).to_string()
    );
    assert_eq!(
        limit_row(&set, "Max open files"),
        ("4096".into(), "4096".into())
    );
    assert_eq!(limit_row(&set, "Max core file size").0, "unlimited");
    assert_eq!(
        limit_row(&set, "Max processes"),
        ("500".into(), "600".into())
    );
    assert!(dflt.contains("size=65536k"), "{dflt}");
    assert!(dflt.contains("size=16384k"), "{dflt}");
    for size in ["size=1024k", "size=512k", "size=2048k"] {
        assert!(set.contains(size), "{size}: {set}");
    }
    let pids_max =
        |name: &str| std::fs::read_to_string(sb.cgroup_dir("pids", name).join("pids.max")).unwrap();
    assert_eq!(pids_max("dflt").trim(), "2048");
    assert_eq!(pids_max("set").trim(), "100");
    // An explicit limit superd cannot grant is a start error that says why.
    if !has_cap_sys_resource() && own.rlim_max != libc::RLIM_INFINITY {
        let too_high = own.rlim_max + 1;
        sb.write_manifest(
            "high",
            &manifest(
                &rootfs,
                "exec sleep 1000",
                &format!("{none}[resources]\nnofile = {too_high}\n"),
            ),
        );
        let w = sb.wait_for("high", "start error", Duration::from_secs(20), |w| {
            w.error
                .as_deref()
                .is_some_and(|e| e.contains("CAP_SYS_RESOURCE"))
        });
        assert!(w.error.unwrap().contains("setting the nofile limit"));
    }
    sb.shutdown();
}

#[test]
fn the_workload_sees_its_own_cgroup_read_only_and_an_mqueue() {
    let Some(()) = privileged("the_workload_sees_its_own_cgroup_read_only_and_an_mqueue") else {
        return;
    };
    let mut sb = Sandbox::start("cgroupfs");
    let rootfs = sb.busybox_rootfs();
    let cmd = "cd /sys/fs/cgroup && echo dirs=$(ls | tr '\\n' ' '); \
               echo limit=$(cat memory/memory.limit_in_bytes) pids=$(cat pids/pids.max); \
               if mkdir memory/x 2>/dev/null; then echo mkdir=ok; else echo mkdir=refused; fi; \
               grep -q ' /dev/mqueue .* - mqueue ' /proc/self/mountinfo && echo mqueue=yes; \
               echo END; exec sleep 1000";
    sb.write_manifest(
        "jvm",
        &manifest(
            &rootfs,
            cmd,
            "[network]\nmode = \"none\"\n[resources]\nmemory = \"64M\"\n",
        ),
    );
    sb.wait_running("jvm");
    let log = sb.wait_log("jvm", "END");
    let dirs: Vec<&str> = log
        .lines()
        .find_map(|l| l.strip_prefix("dirs="))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for d in ["memory", "pids", "freezer", "devices"] {
        assert!(dirs.contains(&d), "{d}: {log}");
    }
    assert!(log.contains("limit=67108864 pids=2048"), "{log}");
    assert!(log.contains("mkdir=refused"), "{log}");
    assert!(log.contains("mqueue=yes"), "{log}");
    sb.shutdown();
}

#[test]
fn host_root_workloads_do_not_see_host_secrets_or_superds_files() {
    let Some(()) = privileged("host_root_workloads_do_not_see_host_secrets_or_superds_files")
    else {
        return;
    };
    // Outside /tmp, which a workload's own /tmp would hide anyway.
    let base = tempfile::Builder::new()
        .prefix("superd-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut sb = Sandbox::start_in("secrets", base.path(), &[]);
    let state = sb.state.display().to_string();
    let show = format!(
        "echo shadow=$(wc -c < /etc/shadow) root=$(ls -A /root | wc -l) \
         state=$(ls -A {state} | wc -l) manifests=$(ls -A {} | wc -l); echo END; \
         exec sleep 1000",
        sb.manifests.display()
    );
    let host = |extra: &str| {
        format!("command = [\"/bin/sh\", \"-c\", {show:?}]\n[network]\nmode = \"none\"\n{extra}")
    };
    sb.write_manifest("plain", &host(""));
    sb.write_manifest(
        "granted",
        &host("[[mounts]]\nsource = \"/etc/shadow\"\ntarget = \"/etc/shadow\"\nreadonly = true\n"),
    );
    sb.wait_running("plain");
    let plain = sb.wait_log("plain", "END");
    let granted = sb.wait_log("granted", "END");
    assert!(
        plain.contains("shadow=0 root=0 state=0 manifests=0"),
        "{plain}"
    );
    let shadow_len = std::fs::metadata("/etc/shadow").unwrap().len();
    assert!(
        granted.contains(&format!("shadow={shadow_len} ")),
        "{granted}"
    );
    sb.shutdown();
}

#[test]
fn a_writable_host_root_keeps_its_changes_to_itself_until_the_restart() {
    let Some(()) = privileged("a_writable_host_root_keeps_its_changes_to_itself_until_the_restart")
    else {
        return;
    };
    // Outside /tmp, which a workload's own /tmp would hide anyway.
    let base = tempfile::Builder::new()
        .prefix("superd-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    // A host mount of its own (in superd's private mount namespace): it must be there,
    // read-only, over the overlay of the root filesystem.
    let extra = base.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    let sb = Sandbox::start_wrapped("hostrw", base.path(), &[], |_| {
        Some(format!(
            "mount -t tmpfs superd-test-extra {0} && echo from-mount > {0}/f && exec \"$0\" \"$@\"",
            extra.display()
        ))
    });
    let marker = format!("/etc/superd-test-hostrw-{}", std::process::id());
    let show = format!(
        "test -e {marker} && echo STALE; echo changed > {marker} && echo wrote=$(cat {marker}); \
         echo extra=$(cat {0}/f); (echo x > {0}/g) 2>/dev/null && echo extra-writable || \
         echo extra-readonly; echo shadow=$(wc -c < /etc/shadow); echo END; exec sleep 1000",
        extra.display()
    );
    sb.write_manifest(
        "hostrw",
        &format!(
            "command = [\"/bin/sh\", \"-c\", {show:?}]\n[rootfs]\nwritable = \"tmpfs\"\n[network]\nmode = \"none\"\n"
        ),
    );
    let log = sb.wait_log("hostrw", "END");
    for want in [
        "wrote=changed",
        "extra=from-mount",
        "extra-readonly",
        "shadow=0",
    ] {
        assert!(log.contains(want), "{want}: {log}");
    }
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the write reached the host's /etc"
    );
    // [tmpfs] root bounds what the root takes.
    sb.write_manifest(
        "small",
        "command = [\"/bin/sh\", \"-c\", \"(head -c 2097152 /dev/zero > /etc/big) 2>&1; echo rc=$?; echo END; exec sleep 1000\"]\n[rootfs]\nwritable = \"tmpfs\"\n[tmpfs]\nroot = \"1M\"\n[network]\nmode = \"none\"\n",
    );
    let small = sb.wait_log("small", "END");
    assert!(
        small.contains("No space left on device") && small.contains("rc=1"),
        "{small}"
    );
    // A new instance starts from the host's root again.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["restart", "hostrw"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    sb.wait_until("a second instance", Duration::from_secs(20), |sb| {
        sb.workload_log("hostrw").matches("END").count() >= 2
    });
    let log = sb.workload_log("hostrw");
    assert!(!log.contains("STALE"), "{log}");
    sb.shutdown();
}
