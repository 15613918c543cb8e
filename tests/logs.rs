//! Workload logs against the real superd: records with timestamps and streams, written by the
//! init shim (or the logger of an `init = false` workload), bounded and rotated without losing
//! or repeating a line, and still written while superd is down.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::runtime::logfmt;
use superd::testing::privileged;

/// Every file of the workload's log, oldest first: `name.log.N` … `name.log.1`, `name.log`.
fn log_files(sb: &Sandbox, name: &str) -> Vec<std::path::PathBuf> {
    let dir = sb.state.join("logs");
    let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let rest = n.strip_prefix(&format!("{name}.log"))?;
            let gen = if rest.is_empty() {
                0
            } else {
                rest.strip_prefix('.')?.parse().ok()?
            };
            Some((gen, e.path()))
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files.into_iter().map(|(_, p)| p).collect()
}

fn manifest(rootfs: &std::path::Path, command: &str, extra: &str) -> String {
    format!(
        "command = [\"/bin/sh\", \"-c\", {command:?}]\n{extra}\n[rootfs]\npath = \"{}\"\n[network]\nmode = \"none\"\n",
        rootfs.display()
    )
}

#[test]
fn records_carry_a_timestamp_and_their_stream() {
    let Some(()) = privileged("records_carry_a_timestamp_and_their_stream") else {
        return;
    };
    let mut sb = Sandbox::start("logfmt");
    let rootfs = sb.busybox_rootfs();
    sb.write_manifest(
        "w",
        &manifest(
            &rootfs,
            "echo to-out; echo to-err >&2; printf no-newline; exec sleep 1000",
            "",
        ),
    );
    sb.wait_running("w");
    sb.wait_until("both lines", Duration::from_secs(20), |s| {
        s.workload_log_raw("w").contains("to-err")
    });
    let raw = sb.workload_log_raw("w");
    let records: Vec<_> = raw
        .lines()
        .map(|l| logfmt::parse_record(l).unwrap_or_else(|| panic!("not a record: {l:?}")))
        .collect();
    let find = |text: &str| {
        records
            .iter()
            .find(|r| r.text == text)
            .unwrap_or_else(|| panic!("{text}: {raw}"))
    };
    assert_eq!(find("to-out").stream, "stdout");
    assert_eq!(find("to-err").stream, "stderr");
    assert!(
        records.windows(2).all(|w| w[0].ts < w[1].ts),
        "timestamps not increasing: {raw}"
    );
    // `printf no-newline` left an unfinished line: it is written when the workload exits.
    sb.stop();
    let raw = sb.workload_log_raw("w");
    assert!(raw.contains(" stdout F no-newline\n"), "{raw}");
}

/// Prints `line-1` … `line-N` as fast as it can, then `done`, then sleeps.
fn counter(n: u32) -> String {
    format!(
        "i=1; while [ $i -le {n} ]; do echo line-$i; i=$((i+1)); done; echo done; exec sleep 1000"
    )
}

fn check_rotation(init: bool) {
    let mut sb = Sandbox::start(if init { "rotate" } else { "rotate-noinit" });
    let rootfs = sb.busybox_rootfs();
    // 8000 lines of ~50 bytes of record each: ~400 KB into 3 files of 64 KiB: the oldest are
    // dropped whole, nothing is lost or doubled within what is kept.
    let extra = format!(
        "init = {init}\n[stop]\ntimeout = \"1s\"\n[logs]\nmax_size = \"64K\"\nmax_files = 3\n"
    );
    sb.write_manifest("w", &manifest(&rootfs, &counter(8000), &extra));
    sb.wait_running("w");
    sb.wait_until("all lines written", Duration::from_secs(60), |s| {
        s.workload_log("w").contains("done\n")
    });
    let files = log_files(&sb, "w");
    assert_eq!(files.len(), 3, "{files:?}");
    let mut total = 0;
    let mut numbers = Vec::new();
    let mut last_ts = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        total += text.len();
        assert!(
            text.len() <= 64 << 10,
            "{} is {} bytes",
            f.display(),
            text.len()
        );
        for line in text.lines() {
            let r = logfmt::parse_record(line).unwrap();
            assert!(r.ts > last_ts, "out of order across files");
            last_ts = r.ts;
            if let Some(n) = r.text.strip_prefix("line-") {
                numbers.push(n.parse::<u32>().unwrap());
            }
        }
    }
    assert!(total <= 3 * (64 << 10), "{total} bytes kept");
    // What is kept is a contiguous tail ending at the last line: no gaps, no repeats.
    assert_eq!(numbers.last(), Some(&8000));
    let first = numbers[0];
    assert_eq!(numbers, (first..=8000).collect::<Vec<_>>());
    assert!(first > 1, "the cap was never reached");
    sb.shutdown();
}

#[test]
fn logs_rotate_within_their_bounds_without_losing_or_repeating_lines() {
    let Some(()) = privileged("logs_rotate_within_their_bounds_without_losing_or_repeating_lines")
    else {
        return;
    };
    check_rotation(true);
}

#[test]
fn init_false_workloads_are_bounded_too() {
    let Some(()) = privileged("init_false_workloads_are_bounded_too") else {
        return;
    };
    check_rotation(false);
}

#[test]
fn logs_keep_flowing_while_superd_is_down() {
    let Some(()) = privileged("logs_keep_flowing_while_superd_is_down") else {
        return;
    };
    let mut sb = Sandbox::start("logflow");
    let rootfs = sb.busybox_rootfs();
    sb.write_manifest(
        "w",
        &manifest(
            &rootfs,
            "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.05; done",
            "",
        ),
    );
    sb.wait_running("w");
    sb.wait_log("w", "tick-3");
    sb.crash();
    let before = sb.workload_log("w").lines().count();
    std::thread::sleep(Duration::from_millis(600));
    let after = sb.workload_log("w").lines().count();
    assert!(
        after > before + 3,
        "the log stopped with superd: {before} -> {after}"
    );
    sb.spawn_superd();
    sb.wait_running("w");
    sb.shutdown();
}

fn superctl(sb: &Sandbox, args: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn superctl_logs_tail_since_timestamps_and_follow() {
    let Some(()) = privileged("superctl_logs_tail_since_timestamps_and_follow") else {
        return;
    };
    let mut sb = Sandbox::start("superctl-logs");
    let rootfs = sb.busybox_rootfs();
    sb.write_manifest(
        "w",
        &manifest(
            &rootfs,
            "for i in 1 2 3 4 5; do echo l$i; done; echo e1 >&2; \
             i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.01; done",
            "[logs]\nmax_size = \"16K\"\nmax_files = 2\n",
        ),
    );
    sb.wait_running("w");
    sb.wait_log("w", "tick-5");
    // stderr records go to stderr (asked at once: 32 KiB of ticks rotate e1 out in seconds).
    let (out, err) = superctl(&sb, &["logs", "w", "--since", "1h"]);
    assert!(err.contains("e1\n") && !out.contains("e1"), "{out}\n{err}");
    // The whole log (what the two kept files still hold) ...
    let (out, err) = superctl(&sb, &["logs", "w", "--tail", "3", "--timestamps"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| logfmt::parse_timestamp(l.split(' ').next().unwrap()).is_some()),
        "{out}"
    );
    assert!(lines.iter().all(|l| l.contains(" tick-")), "{out}");
    assert!(!err.contains("tick"), "{err}");
    // ... and following: every tick once, in order, across rotations of a 16 KiB log (the two
    // files hold about 5 s of ticks: room for a slow poll on a loaded machine).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["logs", "-f", "--since", "1h", "w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut ticks = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("tick-") {
                ticks.push(n.parse::<u64>().unwrap());
                if ticks.len() >= 400 {
                    break;
                }
            }
        }
        ticks
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill(); // the superctl we started
    let _ = child.wait();
    let ticks = reader.join().unwrap();
    assert!(ticks.len() >= 400, "followed only {} ticks", ticks.len());
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap or a repeat: {ticks:?}"
    );
    sb.shutdown();
}

#[test]
fn a_full_disk_is_reported_instead_of_silently_dropping() {
    let Some(()) = privileged("a_full_disk_is_reported_instead_of_silently_dropping") else {
        return;
    };
    // The log directory on a 256 KiB tmpfs, mounted in superd's own mount namespace.
    let mut sb = Sandbox::start_wrapped("logfull", &std::env::temp_dir(), &[], |sb| {
        let logs = sb.state.join("logs");
        Some(format!(
            "mkdir -p {0} && mount -t tmpfs -o size=256k superd-test-logs {0} && exec \"$0\" \"$@\"",
            logs.display()
        ))
    });
    let rootfs = sb.busybox_rootfs();
    sb.write_manifest(
        "w",
        &manifest(
            &rootfs,
            "yes 0123456789012345678901234567890123456789 | head -c 2000000; exec sleep 1000",
            "[logs]\nmax_size = \"1M\"\nmax_files = 2\n",
        ),
    );
    let w = sb.wait_for(
        "w",
        "the full disk reported",
        Duration::from_secs(30),
        |w| {
            w.notice
                .as_deref()
                .is_some_and(|n| n.contains("cannot be written"))
        },
    );
    let notice = w.notice.unwrap();
    assert!(notice.contains("No space left on device"), "{notice}");
    assert!(sb.superd_log().contains("its log cannot be written"));
    sb.shutdown();
}
