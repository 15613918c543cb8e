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
