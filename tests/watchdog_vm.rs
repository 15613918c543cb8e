//! The hardware watchdog in the VM: QEMU's i6300esb (Debian's generic kernel carries its
//! driver) with superd as PID 1 (`superd.watchdog=/dev/watchdog`, a 4 s timeout). A critical
//! workload that stays healthy keeps the VM up past several timeouts, across a `superctl
//! reexec`, and the orderly poweroff disarms the device; one that turns unhealthy for longer than its grace stops the
//! petting, and the device resets the VM.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::run_script;
use std::path::Path;
use superd::testing::privileged;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_watchdog_keeps_a_healthy_machine_up_and_resets_one_whose_critical_workload_fails() {
    let Some(()) = privileged(
        "the_watchdog_keeps_a_healthy_machine_up_and_resets_one_whose_critical_workload_fails",
    ) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_superd")).parent().unwrap();
    let manifests = repo().join("tests/appliance/watchdog");
    let (code, log) = run_script(
        "packaging/appliance/build.sh",
        &[
            "--bin",
            bin.to_str().unwrap(),
            "--manifests",
            manifests.to_str().unwrap(),
            "--kernel",
            "generic",
            "--module",
            "i6300esb",
            out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "build.sh:\n{log}");
    let boot = |mode: &str| {
        let append =
            format!("superd.watchdog=/dev/watchdog superd.watchdog_timeout=4 wd.mode={mode}");
        let (code, log) = run_script(
            "packaging/appliance/boot.sh",
            &[
                out.path().to_str().unwrap(),
                "--watchdog",
                "--timeout",
                "150",
                "--append",
                &append,
            ],
        );
        let console = std::fs::read_to_string(out.path().join("console.log"))
            .unwrap_or_default()
            .replace('\r', "");
        (code, log, console)
    };

    // Healthy: up past several timeouts (16 s against 4 s), a re-exec of PID 1 in the middle
    // (the new image opens the device again), then a clean poweroff.
    let (code, log, console) = boot("keep");
    assert_eq!(code, Some(0), "{log}\n{console}");
    let has = |c: &str, needle: &str| c.lines().any(|l| l.contains(needle));
    let armed = console
        .lines()
        .filter(|l| l.contains("watchdog /dev/watchdog armed with a 4s timeout"))
        .count();
    assert_eq!(
        armed, 2,
        "armed by the first image and the re-executed one:\n{console}"
    );
    assert!(has(&console, "re-executed"), "{console}");
    assert!(has(&console, "CHECK kept-up"), "{console}");
    assert!(!has(&console, "not petting the watchdog"), "{console}");
    assert!(
        has(&console, "watchdog /dev/watchdog disarmed"),
        "{console}"
    );

    // Unhealthy past its grace: superd stops petting, and the device resets the VM.
    let (code, log, console) = boot("fail");
    assert_eq!(code, Some(3), "expected a reset:\n{log}\n{console}");
    assert!(has(&console, "CHECK breaking-web"), "{console}");
    assert!(
        has(
            &console,
            "not petting the watchdog: the critical workload web has not run healthy"
        ),
        "{console}"
    );
    assert!(!has(&console, "CHECK not-reset"), "{console}");
    assert!(!has(&console, "disarmed"), "{console}");
}
