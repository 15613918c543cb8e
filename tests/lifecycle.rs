//! Lifecycle against the real kernel: start, edit, invalid edit, delete, many at once, shutdown.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::api::State;
use superd::testing::privileged;

const SLEEPER: &str = r#"command = ["/bin/sleep", "1000"]"#;

#[test]
fn start_edit_invalid_edit_delete_and_clean_shutdown() {
    let Some(()) = privileged("start_edit_invalid_edit_delete_and_clean_shutdown") else {
        return;
    };
    let mut sb = Sandbox::start("lifecycle");
    // sd_notify: ready (Type=notify) once the control socket answers and the manifests are
    // watched (sent just after the socket starts answering).
    let mut ready = Vec::new();
    sb.wait_until("READY=1 on $NOTIFY_SOCKET", Duration::from_secs(10), |s| {
        ready.extend(s.notifications());
        ready.iter().any(|m| m.lines().any(|l| l == "READY=1"))
    });
    sb.write_manifest("web", SLEEPER);
    let w = sb.wait_running("web");
    let (pid, init_pid, hash) = (
        w.pid.unwrap(),
        w.init_pid.unwrap(),
        w.spec_hash.clone().unwrap(),
    );
    assert_ne!(
        pid, init_pid,
        "with init = true the shim and the workload are different processes"
    );
    // The shim is the workload's parent: PID 1 of the container.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, init_pid);
    let nspid = std::fs::read_to_string(format!("/proc/{init_pid}/status")).unwrap();
    assert!(
        nspid
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "{nspid}"
    );

    // A changed command recreates the workload with the new spec.
    sb.write_manifest("web", r#"command = ["/bin/sleep", "2000"]"#);
    let w2 = sb.wait_for("web", "recreated", Duration::from_secs(20), |w| {
        w.state == State::Running && w.pid.is_some() && w.pid != Some(pid)
    });
    assert_ne!(w2.spec_hash.as_deref(), Some(hash.as_str()));

    // An invalid edit leaves the running instance untouched and shows the error.
    sb.write_manifest("web", "command = [\n");
    let w3 = sb.wait_for(
        "web",
        "shows the manifest error",
        Duration::from_secs(10),
        |w| w.error.is_some(),
    );
    assert_eq!(w3.state, State::Running);
    assert_eq!(
        w3.pid, w2.pid,
        "an invalid edit must not touch the running instance"
    );
    let err = w3.error.unwrap();
    assert!(
        err.contains("web.toml:1:"),
        "error names file and line: {err}"
    );

    // A manifest that was never valid is listed as failed with its error.
    sb.write_manifest("broken", "command = []\nbogus = 1\n");
    let b = sb.wait_for("broken", "failed", Duration::from_secs(10), |w| {
        w.state == State::Failed
    });
    assert!(b.error.unwrap().contains("bogus"));

    // Delete stops and removes it.
    sb.remove_manifest("web");
    sb.wait_until("web is gone", Duration::from_secs(20), |s| {
        s.try_status()
            .map(|st| st.workloads.iter().all(|w| w.name != "web"))
            .unwrap_or(false)
    });
    assert!(!std::path::Path::new(&format!("/proc/{}", w2.pid.unwrap())).exists());
    assert!(
        !sb.cgroup_dir("memory", "web").exists(),
        "cgroup removed on stop"
    );
    sb.stop();
    let stopping = sb.notifications();
    assert!(
        stopping
            .iter()
            .any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1 to $NOTIFY_SOCKET: {stopping:?}"
    );
    sb.shutdown();
}

#[test]
fn fifty_manifests_at_once_all_run() {
    let Some(()) = privileged("fifty_manifests_at_once_all_run") else {
        return;
    };
    let mut sb = Sandbox::start("fifty");
    // Write them elsewhere and move them in, so they all appear at once.
    let staging = sb.dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    for i in 0..50 {
        std::fs::write(staging.join(format!("w{i:02}.toml")), SLEEPER).unwrap();
        common::set_mode(&staging.join(format!("w{i:02}.toml")), 0o644);
    }
    for i in 0..50 {
        let f = format!("w{i:02}.toml");
        std::fs::rename(staging.join(&f), sb.manifests.join(&f)).unwrap();
    }
    sb.wait_until("50 running", Duration::from_secs(60), |s| {
        s.try_status()
            .map(|st| {
                st.workloads
                    .iter()
                    .filter(|w| w.state == State::Running)
                    .count()
                    == 50
            })
            .unwrap_or(false)
    });
    let st = sb.status();
    let mut pids: Vec<u32> = st.workloads.iter().filter_map(|w| w.pid).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 50);
    sb.shutdown();
}

#[test]
fn live_resource_change_keeps_the_instance() {
    let Some(()) = privileged("live_resource_change_keeps_the_instance") else {
        return;
    };
    let mut sb = Sandbox::start("live");
    sb.write_manifest("w", &format!("{SLEEPER}\n[resources]\nmemory = \"64M\"\n"));
    let w = sb.wait_running("w");
    let limit = sb.cgroup_dir("memory", "w").join("memory.limit_in_bytes");
    assert_eq!(
        std::fs::read_to_string(&limit).unwrap().trim(),
        (64u64 << 20).to_string()
    );
    sb.write_manifest(
        "w",
        &format!("{SLEEPER}\n[resources]\nmemory = \"32M\"\npids = 10\n"),
    );
    sb.wait_until("limit applied", Duration::from_secs(10), |_| {
        std::fs::read_to_string(&limit)
            .map(|s| s.trim() == (32u64 << 20).to_string())
            .unwrap_or(false)
    });
    let w2 = sb.workload("w").unwrap();
    assert_eq!(
        w2.pid, w.pid,
        "a [resources] change is applied without a restart"
    );
    assert_ne!(w2.spec_hash, w.spec_hash);
    let pids_max = sb.cgroup_dir("pids", "w").join("pids.max");
    assert_eq!(std::fs::read_to_string(pids_max).unwrap().trim(), "10");
    sb.shutdown();
}

#[test]
fn superctl_status_and_restart() {
    let Some(()) = privileged("superctl_status_and_restart") else {
        return;
    };
    let mut sb = Sandbox::start("superctl");
    sb.write_manifest("web", SLEEPER);
    let w = sb.wait_running("web");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["status", "web", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["workloads"][0]["name"], "web");
    assert_eq!(v["workloads"][0]["state"], "running");
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["status", "nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    let restart = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["restart", "web"])
        .output()
        .unwrap();
    assert!(restart.status.success(), "{restart:?}");
    let w2 = sb.wait_for("web", "restarted", Duration::from_secs(30), |x| {
        x.state == State::Running && x.pid != w.pid && x.pid.is_some()
    });
    assert_eq!(w2.restarts, 1);
    sb.shutdown();
}

#[test]
fn a_live_update_the_kernel_refuses_is_reported_as_a_restart() {
    let Some(()) = privileged("a_live_update_the_kernel_refuses_is_reported_as_a_restart") else {
        return;
    };
    let mut sb = Sandbox::start("refused");
    let rootfs = sb.busybox_rootfs();
    // 30 MiB in its tmpfs /tmp: memory the kernel cannot reclaim without swap.
    let manifest = |memory: &str| {
        format!(
            "command = [\"/bin/sh\", \"-c\", \"dd if=/dev/zero of=/tmp/fill bs=1M count=30 2>/dev/null; echo filled; exec sleep 1000\"]\n\
             [rootfs]\npath = \"{}\"\n[network]\nmode = \"none\"\n[resources]\nmemory = \"{memory}\"\n",
            rootfs.display()
        )
    };
    sb.write_manifest("fill", &manifest("64M"));
    let before = sb.wait_running("fill").pid;
    sb.wait_log("fill", "filled");
    // v1 refuses to lower memory.limit_in_bytes below the usage (EBUSY).
    sb.write_manifest("fill", &manifest("16M"));
    let w = sb.wait_for(
        "fill",
        "the refusal noticed",
        Duration::from_secs(20),
        |w| w.notice.is_some(),
    );
    let notice = w.notice.unwrap();
    assert!(notice.contains("live update refused"), "{notice}");
    assert!(
        notice.contains("restarted it to apply the new manifest"),
        "{notice}"
    );
    sb.wait_for("fill", "a new instance", Duration::from_secs(20), |w| {
        w.pid.is_some() && w.pid != before
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .args(["--socket"])
        .arg(&sb.socket)
        .arg("status")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("fill: live update refused"), "{table}");
    assert!(sb.superd_log().contains("live update refused"));
    sb.shutdown();
}
