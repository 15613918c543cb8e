//! Hostile and careless input to the manifest directory, against the real superd: what an
//! error may cost, files that are not files, and files that anybody could have written.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::api::State;
use superd::testing::privileged;

/// Peak resident memory of a process, from `/proc/PID/status` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A single-line manifest just under the 1 MiB cap whose every `env` value is wrong.
fn one_line_of_errors(bytes: usize) -> String {
    let mut s = String::from("command = [\"/bin/true\"]\nenv = { ");
    let mut i = 0;
    while s.len() + 32 < bytes {
        s.push_str(&format!("a{i} = 1, "));
        i += 1;
    }
    s.push_str("z = 1 }\n");
    s
}

#[test]
fn malformed_manifests_cost_bounded_memory_log_and_status() {
    let Some(()) = privileged("malformed_manifests_cost_bounded_memory_log_and_status") else {
        return;
    };
    let mut sb = Sandbox::start("malformed");
    sb.write_manifest(
        "good",
        "command = [\"/bin/sleep\", \"1000\"]\n[network]\nmode = \"none\"\n",
    );
    let pid = sb.wait_running("good").pid;
    let idle = peak_rss_kib(sb.superd_pid());
    // Three 1 MiB one-liners (refused as too complex before they are parsed), three of
    // 3 000 bad values each (parsed: twenty errors shown, the rest counted), 194 small ones.
    let big = one_line_of_errors((1 << 20) - 64);
    let many = one_line_of_errors(24_000);
    for i in 0..200 {
        let text = if i < 3 {
            big.clone()
        } else if i < 6 {
            many.clone()
        } else {
            format!("command = [\"/bin/true\"]\n[resources]\nmemory = \"{i}Q\"\npids = -1\n")
        };
        sb.write_manifest(&format!("bad{i:03}"), &text);
    }
    sb.wait_until("200 errors listed", Duration::from_secs(60), |s| {
        s.try_status().is_some_and(|st| {
            st.workloads
                .iter()
                .filter(|w| w.state == State::Failed && w.error.is_some())
                .count()
                == 200
        })
    });
    let st = sb.status();
    let reply = serde_json::to_vec(&st).unwrap().len();
    assert!(reply < 4 << 20, "status reply of {reply} bytes");
    let error_of = |name: &str| {
        let w = st.workloads.iter().find(|w| w.name == name).unwrap();
        w.error.clone().unwrap_or_default()
    };
    assert!(
        error_of("bad000").contains("too complex"),
        "{}",
        error_of("bad000")
    );
    let err = error_of("bad003");
    assert!(err.contains("more errors"), "{err}");
    assert!(err.len() < 32 << 10, "{} bytes of error", err.len());
    let good = sb.workload("good").unwrap();
    assert_eq!(
        (good.state, good.pid),
        (State::Running, pid),
        "the good workload was disturbed"
    );
    let log = sb.superd_log().len();
    assert!(log < 8 << 20, "superd wrote {log} bytes of log");
    // A safety net against the old behaviour (hundreds of MiB); the real figure (≤ 2× idle)
    // is measured by benches/malformed.sh.
    let peak = peak_rss_kib(sb.superd_pid());
    eprintln!("superd peak RSS: idle {idle} KiB, after 200 malformed files {peak} KiB");
    assert!(
        peak < idle + (128 << 10),
        "superd's peak RSS grew from {idle} KiB to {peak} KiB"
    );
    sb.shutdown();
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn a_fifo_swapped_in_for_a_manifest_never_wedges_the_watcher() {
    let Some(()) = privileged("a_fifo_swapped_in_for_a_manifest_never_wedges_the_watcher") else {
        return;
    };
    let mut sb = Sandbox::start("fifo");
    let text = "command = [\"/bin/sleep\", \"1000\"]\n[network]\nmode = \"none\"\n";
    sb.write_manifest("swap", text);
    sb.wait_running("swap");
    // Swap a FIFO and a regular file in and out under the same name, so that some re-reads
    // list a regular file and then find a FIFO (the old stat-then-open race), with SIGHUPs
    // forcing more re-reads.
    let (fifo, file) = (sb.dir.path().join("fifo"), sb.dir.path().join("file"));
    let target = sb.manifests.join("swap.toml");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut n = 0u32;
    while std::time::Instant::now() < deadline {
        mkfifo(&fifo);
        std::fs::rename(&fifo, &target).unwrap();
        std::fs::write(&file, text).unwrap();
        common::set_mode(&file, 0o644);
        std::fs::rename(&file, &target).unwrap();
        n += 1;
        if n.is_multiple_of(50) {
            // SAFETY: kill(2) on the superd we started.
            unsafe { libc::kill(sb.superd_pid() as i32, libc::SIGHUP) };
        }
    }
    mkfifo(&fifo);
    std::fs::rename(&fifo, &target).unwrap();
    // The watcher still sees new manifests, and the control socket answers.
    sb.write_manifest("after", text);
    sb.wait_running("after");
    // SIGTERM finishes within the stop timeouts (shutdown() fails the test otherwise).
    sb.shutdown();
}

#[test]
fn manifests_others_could_write_never_run() {
    let Some(()) = privileged("manifests_others_could_write_never_run") else {
        return;
    };
    let mut sb = Sandbox::start("trust");
    let text = "command = [\"/bin/sleep\", \"1000\"]\n[network]\nmode = \"none\"\n";
    sb.write_manifest("kept", text);
    let pid = sb.wait_running("kept").pid;
    let chown = |path: &std::path::Path, uid: u32| {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: lchown(2) with a valid C string.
        assert_eq!(unsafe { libc::lchown(c.as_ptr(), uid, uid) }, 0, "lchown");
    };
    // Each file is prepared outside and renamed in, so that superd never sees a valid
    // version of it (one it saw valid would keep running on that last good spec).
    let staged = |name: &str, uid: u32, mode: u32| {
        let tmp = sb.dir.path().join(format!("{name}.staged"));
        std::fs::write(&tmp, text).unwrap();
        common::set_mode(&tmp, mode);
        chown(&tmp, uid);
        std::fs::rename(&tmp, sb.manifests.join(format!("{name}.toml"))).unwrap();
    };
    // A file owned by an unprivileged user.
    staged("user", 1000, 0o644);
    // A file anyone may write.
    staged("open", 0, 0o666);
    // A root-owned symlink to a user-owned file.
    let outside = sb.dir.path().join("users-file.toml");
    std::fs::write(&outside, text).unwrap();
    common::set_mode(&outside, 0o644);
    chown(&outside, 1000);
    std::os::unix::fs::symlink(&outside, sb.manifests.join("linked.toml")).unwrap();
    // A running workload whose file becomes writable keeps running on its last good spec.
    common::set_mode(&sb.manifests.join("kept.toml"), 0o646);
    // SAFETY: kill(2) on the superd we started (chmod and chown raise no inotify event
    // superd acts on; SIGHUP re-reads).
    unsafe { libc::kill(sb.superd_pid() as i32, libc::SIGHUP) };
    for (name, needle) in [
        ("user", "owned by uid 1000, not by root"),
        ("open", "writable by everyone (mode 0666)"),
        (
            "linked",
            "the file this symlink points to is owned by uid 1000",
        ),
        ("kept", "writable by everyone (mode 0646)"),
    ] {
        let w = sb.wait_for(name, needle, Duration::from_secs(20), |w| {
            w.error.as_deref().is_some_and(|e| e.contains(needle))
        });
        if name == "kept" {
            assert_eq!((w.state, w.pid), (State::Running, pid), "{w:?}");
        } else {
            assert_eq!((w.state, w.pid), (State::Failed, None), "{w:?}");
        }
    }
    // superctl validate says the same about the directory.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("validate")
        .arg(&sb.manifests)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("owned by uid 1000, not by root"), "{text}");
    assert!(
        text.contains("4 manifests checked: 0 valid, 4 invalid"),
        "{text}"
    );
    sb.shutdown();
}

#[test]
fn a_large_valid_manifest_starts_at_once() {
    let Some(()) = privileged("a_large_valid_manifest_starts_at_once") else {
        return;
    };
    let mut sb = Sandbox::start("bigenv");
    // ~900 KB of environment in nine variables (each below the kernel's 128 KiB per string).
    let mut text = String::from(
        "command = [\"/bin/sh\", \"-c\", \"echo len=${#BIG8}; exec sleep 1000\"]\n\
         [network]\nmode = \"none\"\n[env]\n",
    );
    for i in 0..9 {
        text.push_str(&format!("BIG{i} = \"{}\"\n", "x".repeat(100_000)));
    }
    assert!(text.len() > 900_000 && text.len() < 1 << 20);
    sb.write_manifest("big", &text);
    // (It used to sit in `starting` for a minute, then report a setup timeout.)
    sb.wait_running("big");
    sb.wait_log("big", "len=100000");
    sb.shutdown();
}
