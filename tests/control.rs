//! The control socket against the real superd: `--socket-group` members (primary or
//! supplementary) may read but not restart or power off, and no pile of idle connections
//! locks root out.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;
use superd::testing::privileged;

const GROUP: u32 = 4242;

/// superctl run as uid 1000 with primary group `gid` and supplementary `groups`.
fn superctl_as(sb: &Sandbox, gid: u32, groups: &'static [u32], args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_superctl"));
    cmd.arg("--socket").arg(&sb.socket).args(args);
    // SAFETY: setgroups/setgid/setuid are async-signal-safe; `groups` is 'static.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(1000) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn group_members_read_only_root_always_gets_through() {
    let Some(()) = privileged("group_members_read_only_root_always_gets_through") else {
        return;
    };
    let mut sb = Sandbox::start_with("control", &["--socket-group", &GROUP.to_string()]);
    // The uid-1000 client must reach the socket through the sandbox directory.
    common::set_mode(sb.dir.path(), 0o711);
    sb.write_manifest(
        "web",
        "command = [\"/bin/sleep\", \"1000\"]\n[network]\nmode = \"none\"\n",
    );
    let pid = sb.wait_running("web").pid;
    // A member through a supplementary group (`usermod -aG`) may read...
    let (code, out) = superctl_as(&sb, 1000, &[GROUP], &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("web"), "{out}");
    // ...but neither a supplementary nor a primary member may restart.
    for (gid, groups) in [(1000, &[GROUP][..]), (GROUP, &[][..])] {
        let groups: &'static [u32] = if groups.is_empty() { &[] } else { &[GROUP] };
        let (code, out) = superctl_as(&sb, gid, groups, &["restart", "web"]);
        assert_ne!(code, 0, "{out}");
        assert!(out.contains("restart needs root"), "{out}");
    }
    // Nobody else gets anything (the socket's mode stops them first).
    let (code, out) = superctl_as(&sb, 1000, &[], &["status"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.to_lowercase().contains("permission denied"), "{out}");
    assert_eq!(sb.workload("web").unwrap().pid, pid, "web was restarted");

    // 40 idle connections of a member, then 40 of root: root's superctl still gets through.
    let socket = sb.socket.clone();
    let member_idle: Vec<std::os::unix::net::UnixStream> = (0..40)
        .filter_map(|_| {
            let s = socket.clone();
            std::thread::spawn(move || {
                // SAFETY: setgroups/setgid/setuid on this thread only (Linux credentials are
                // per thread at the syscall level), which ends right after connecting.
                unsafe {
                    let g = [GROUP];
                    libc::syscall(libc::SYS_setgroups, 1, g.as_ptr());
                    libc::syscall(libc::SYS_setgid, 1000);
                    libc::syscall(libc::SYS_setuid, 1000);
                }
                std::os::unix::net::UnixStream::connect(&s).ok()
            })
            .join()
            .unwrap()
        })
        .collect();
    assert!(!member_idle.is_empty());
    let root_idle: Vec<_> = (0..40)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let st = sb.client().status(None);
    assert!(st.is_ok(), "root was locked out: {st:?}");
    drop((member_idle, root_idle));
    sb.shutdown();
}
