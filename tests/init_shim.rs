//! The init shim as PID 1: orphan reaping, signal forwarding, exit status pass-through,
//! restart backoff, and the stop timeout.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::api::{ExitReason, State};
use superd::testing::privileged;

fn zombies_in(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.rsplit(')').next().unwrap_or("").split_whitespace().next() == Some("Z"))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn orphans_of_a_double_forking_workload_are_reaped() {
    let Some(()) = privileged("orphans_of_a_double_forking_workload_are_reaped") else {
        return;
    };
    let mut sb = Sandbox::start("orphans");
    // 50 children that each fork a grandchild and exit at once: the grandchildren are orphaned
    // to PID 1 (the shim) and must be reaped when they exit.
    sb.write_manifest(
        "forker",
        r#"command = ["/bin/sh", "-c", "for i in $(seq 50); do (sleep 0.2 &) ; done; echo forked; exec sleep 1000"]"#,
    );
    sb.wait_running("forker");
    sb.wait_log("forker", "forked");
    let dir = sb.cgroup_dir("pids", "forker");
    sb.wait_until(
        "all orphans exited and were reaped",
        Duration::from_secs(20),
        |_| {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            procs.lines().count() == 2 && zombies_in(&dir).is_empty()
        },
    );
    sb.shutdown();
}

#[test]
fn sigterm_is_forwarded_and_exit_codes_pass_through() {
    let Some(()) = privileged("sigterm_is_forwarded_and_exit_codes_pass_through") else {
        return;
    };
    let mut sb = Sandbox::start("signals");
    sb.write_manifest(
        "trapper",
        "command = [\"/bin/sh\", \"-c\", \"trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.05; done\"]\n[restart]\npolicy = \"never\"\n",
    );
    let w = sb.wait_running("trapper");
    sb.wait_log("trapper", "ready");
    // Signal the container's PID 1 from outside: the shim must forward it to the workload.
    // SAFETY: kill(2) on the shim PID superd reported for our workload.
    unsafe { libc::kill(w.init_pid.unwrap() as i32, libc::SIGTERM) };
    let done = sb.wait_for("trapper", "exited", Duration::from_secs(10), |w| {
        w.state == State::Exited
    });
    let le = done.last_exit.unwrap();
    assert_eq!(
        (le.code, le.signal.as_deref(), le.reason),
        (Some(42), None, ExitReason::Exited)
    );
    assert!(sb.workload_log("trapper").contains("got-term"));

    // A workload killed by a signal reports the signal (not 128+N).
    sb.write_manifest(
        "killed",
        "command = [\"/bin/sh\", \"-c\", \"kill -9 $$\"]\n[restart]\npolicy = \"never\"\n",
    );
    let k = sb.wait_for("killed", "exited", Duration::from_secs(10), |w| {
        w.state == State::Exited
    });
    let le = k.last_exit.unwrap();
    assert_eq!(
        (le.code, le.signal.as_deref(), le.reason),
        (None, Some("SIGKILL"), ExitReason::Signaled)
    );
    // init = false: the workload is PID 1 and its own status is reported (a PID 1 cannot
    // SIGKILL itself, so the signal comes from outside).
    sb.write_manifest(
        "exit5",
        "command = [\"/bin/sh\", \"-c\", \"exit 5\"]\ninit = false\n[restart]\npolicy = \"never\"\n",
    );
    let e = sb.wait_for("exit5", "exited", Duration::from_secs(10), |w| {
        w.state == State::Exited
    });
    assert_eq!(e.last_exit.unwrap().code, Some(5));
    // init = false: the workload itself is PID 1.
    sb.write_manifest(
        "noinit",
        "command = [\"/bin/sleep\", \"1000\"]\ninit = false\n",
    );
    let n = sb.wait_running("noinit");
    assert_eq!(n.init_pid, None);
    let status = std::fs::read_to_string(format!("/proc/{}/status", n.pid.unwrap())).unwrap();
    assert!(status
        .lines()
        .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")));
    // SAFETY: kill(2) on the workload PID superd reported.
    unsafe { libc::kill(n.pid.unwrap() as i32, libc::SIGKILL) };
    let k = sb.wait_for("noinit", "restarted", Duration::from_secs(10), |w| {
        w.restarts == 1
    });
    let le = k.last_exit.unwrap();
    assert_eq!((le.code, le.signal.as_deref()), (None, Some("SIGKILL")));
    sb.shutdown();
}

#[test]
fn a_workload_that_ignores_sigterm_is_killed_after_its_timeout() {
    let Some(()) = privileged("a_workload_that_ignores_sigterm_is_killed_after_its_timeout") else {
        return;
    };
    let mut sb = Sandbox::start("stoptimeout");
    sb.write_manifest(
        "stubborn",
        "command = [\"/bin/sh\", \"-c\", \"trap '' TERM; echo ready; while true; do sleep 0.05; done\"]\n[stop]\ntimeout = \"300ms\"\n",
    );
    let w = sb.wait_running("stubborn");
    sb.wait_log("stubborn", "ready");
    assert!(sb.client().restart("stubborn").is_ok());
    let w2 = sb.wait_for(
        "stubborn",
        "restarted after the stop timeout",
        Duration::from_secs(20),
        |x| x.state == State::Running && x.pid != w.pid && x.pid.is_some(),
    );
    let le = w2.last_exit.unwrap();
    assert_eq!(le.reason, ExitReason::StopTimeout);
    assert_eq!(le.signal.as_deref(), Some("SIGKILL"));
    sb.shutdown();
}

#[test]
fn restart_backoff_grows_and_gives_up_after_max_retries() {
    let Some(()) = privileged("restart_backoff_grows_and_gives_up_after_max_retries") else {
        return;
    };
    let mut sb = Sandbox::start("backoff");
    sb.write_manifest(
        "crash",
        "command = [\"/bin/sh\", \"-c\", \"exit 7\"]\n[restart]\ninitial_delay = \"50ms\"\nmax_delay = \"400ms\"\nmax_retries = 4\n",
    );
    let (delays, w) = observe_backoff(&mut sb, "crash", |w, _| w.state == State::Failed);
    assert_eq!(w.restarts, 4);
    assert_eq!(w.last_exit.unwrap().code, Some(7));
    assert!(w.error.unwrap().contains("gave up"));
    // Delays double (50, 100, 200, 400 ms); allow for polling slack on the early ones.
    assert!(delays.len() >= 3, "{delays:?}");
    assert!(
        delays.last().unwrap() > &Duration::from_millis(250),
        "{delays:?}"
    );
    sb.shutdown();
}

#[test]
fn restart_backoff_resets_after_a_long_enough_run() {
    let Some(()) = privileged("restart_backoff_resets_after_a_long_enough_run") else {
        return;
    };
    let mut sb = Sandbox::start("backoffreset");
    // Every run lasts 300 ms, longer than reset_after, so each failure is the first again and
    // the delay stays at initial_delay instead of doubling (100, 200, 400, 800 ms).
    sb.write_manifest(
        "flaky",
        "command = [\"/bin/sh\", \"-c\", \"sleep 0.3; exit 1\"]\n[restart]\ninitial_delay = \"100ms\"\nmax_delay = \"10s\"\nreset_after = \"200ms\"\n",
    );
    let (delays, _) = observe_backoff(&mut sb, "flaky", |_, seen| seen >= 4);
    // Without the reset the fourth delay would be 800 ms.
    assert!(
        delays.iter().all(|d| *d <= Duration::from_millis(150)),
        "{delays:?}"
    );
    sb.shutdown();
}

/// Watches `name` and records each scheduled restart delay (next_restart_at minus the moment
/// the backoff was seen) until `done(status, delays seen)` holds; returns the delays and the
/// final status.
fn observe_backoff(
    sb: &mut Sandbox,
    name: &str,
    done: impl Fn(&superd::api::WorkloadStatus, usize) -> bool,
) -> (Vec<Duration>, superd::api::WorkloadStatus) {
    let mut delays = Vec::new();
    let mut last_restarts = u32::MAX;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < deadline, "{name}: {delays:?}");
        let Some(w) = sb.workload(name) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if done(&w, delays.len()) {
            return (delays, w);
        }
        if let (State::Backoff, Some(at)) = (w.state, w.next_restart_at.as_deref()) {
            if w.restarts != last_restarts {
                last_restarts = w.restarts;
                let at = humantime::parse_rfc3339(at).unwrap();
                delays.push(
                    at.duration_since(std::time::SystemTime::now())
                        .unwrap_or_default(),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
