//! Restart backoff: whether a workload whose run ended is started again, and after how long.
//!
//! The delay doubles per consecutive failure, starting at `[restart] initial_delay` and capped at
//! `[restart] max_delay`; a run of at least `reset_after` starts the count over, and
//! `max_retries` bounds it. Pure arithmetic: "now" is an input.

use super::RunEnd;
use crate::manifest::{Restart, RestartPolicy};
use std::time::{Duration, Instant};

/// The delay before the restart that follows `failures` consecutive counted failures.
///
/// `failures >= 1` gives `initial_delay * 2^(failures - 1)`, saturating instead of overflowing and
/// capped at `max_delay`; `failures == 0` gives [`Duration::ZERO`] (nothing has failed yet).
#[must_use]
pub fn delay(restart: &Restart, failures: u32) -> Duration {
    let Some(exponent) = failures.checked_sub(1) else {
        return Duration::ZERO;
    };
    let raw = match 1u32.checked_shl(exponent) {
        Some(factor) => restart.initial_delay.saturating_mul(factor),
        // 2^exponent does not fit a u32: anything non-zero has long passed every sane cap.
        None if restart.initial_delay.is_zero() => Duration::ZERO,
        None => Duration::MAX,
    };
    raw.min(restart.max_delay)
}

/// What follows a run that ended (rule 5 of [`super::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterEnd {
    /// Do not restart: `Done`, or `Failed` when the retries ran out.
    Finish { failed: bool },
    /// Restart at `at`, with `failures` consecutive failures counted.
    Restart { at: Instant, failures: u32 },
}

/// Decides what follows a run that ended with `end` after `ran_for`, under `restart`, with
/// `failures` consecutive failures counted before it.
///
/// A start failure is always retried, whatever the policy (the rootfs may simply not be mounted
/// yet); `max_retries` still bounds it.
pub(super) fn after_end(
    restart: &Restart,
    end: RunEnd,
    ran_for: Duration,
    failures: u32,
    now: Instant,
) -> AfterEnd {
    let should_restart = match (end, restart.policy) {
        (RunEnd::StartFailed, _) | (_, RestartPolicy::Always) => true,
        (_, RestartPolicy::OnFailure) => !end.is_success(),
        (_, RestartPolicy::Never) => false,
    };
    if !should_restart {
        return AfterEnd::Finish { failed: false };
    }
    let failures = if ran_for >= restart.reset_after {
        1
    } else {
        failures.saturating_add(1)
    };
    if restart.max_retries > 0 && failures > restart.max_retries {
        return AfterEnd::Finish { failed: true };
    }
    AfterEnd::Restart {
        at: add_saturating(now, delay(restart, failures)),
        failures,
    }
}

/// `now + delay`, or the latest instant that can be represented if the sum overflows.
fn add_saturating(now: Instant, mut delay: Duration) -> Instant {
    loop {
        if let Some(at) = now.checked_add(delay) {
            return at;
        }
        // Terminates: a zero delay always fits.
        delay /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restart(initial_ms: u64, max_ms: u64) -> Restart {
        Restart {
            policy: RestartPolicy::Always,
            initial_delay: Duration::from_millis(initial_ms),
            max_delay: Duration::from_millis(max_ms),
            reset_after: Duration::from_secs(10),
            max_retries: 0,
        }
    }

    #[test]
    fn doubles_from_initial_and_caps_at_max() {
        let r = restart(100, 1_000);
        let table: &[(u32, u64)] = &[
            (0, 0),
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000), // 1600 capped
            (6, 1_000),
            (20, 1_000),
        ];
        for &(failures, want_ms) in table {
            assert_eq!(
                delay(&r, failures),
                Duration::from_millis(want_ms),
                "failures = {failures}"
            );
        }
    }

    #[test]
    fn default_restart_section_doubles_to_thirty_seconds() {
        let r = Restart::default();
        assert_eq!(delay(&r, 1), Duration::from_millis(100));
        assert_eq!(delay(&r, 9), Duration::from_millis(25_600));
        assert_eq!(delay(&r, 10), Duration::from_secs(30));
    }

    #[test]
    fn saturates_with_huge_failure_counts() {
        let r = restart(100, 30_000);
        for failures in [31, 32, 33, 64, 1_000, u32::MAX - 1, u32::MAX] {
            assert_eq!(
                delay(&r, failures),
                Duration::from_secs(30),
                "failures = {failures}"
            );
        }
        // Even an unbounded cap saturates rather than overflowing or panicking.
        let unbounded = Restart {
            max_delay: Duration::MAX,
            ..restart(100, 0)
        };
        assert_eq!(delay(&unbounded, 200), Duration::MAX);
        assert_eq!(delay(&unbounded, u32::MAX), Duration::MAX);
        let huge_initial = Restart {
            initial_delay: Duration::MAX,
            max_delay: Duration::MAX,
            ..restart(0, 0)
        };
        assert_eq!(delay(&huge_initial, 2), Duration::MAX);
    }

    #[test]
    fn zero_initial_delay_stays_zero() {
        let r = restart(0, 30_000);
        for failures in [0, 1, 2, 32, u32::MAX] {
            assert_eq!(delay(&r, failures), Duration::ZERO, "failures = {failures}");
        }
    }

    #[test]
    fn cap_below_initial_wins() {
        let r = restart(500, 200);
        assert_eq!(delay(&r, 1), Duration::from_millis(200));
        assert_eq!(delay(&r, 3), Duration::from_millis(200));
    }

    /// One row of the end-of-run table: what happened, and what must follow.
    struct EndCase {
        label: &'static str,
        policy: RestartPolicy,
        max_retries: u32,
        end: RunEnd,
        ran_for_ms: u64,
        failures: u32,
        /// `Err(failed)` = finish; `Ok((delay_ms, failures))` = restart.
        want: Result<(u64, u32), bool>,
    }

    #[test]
    fn after_end_table() {
        use RestartPolicy::{Always, Never, OnFailure};
        use RunEnd::{Exited, Signaled, StartFailed};
        #[rustfmt::skip]
        let table = [
            // policies
            EndCase { label: "always, exit 0", policy: Always, max_retries: 0, end: Exited(0), ran_for_ms: 1_000, failures: 0, want: Ok((100, 1)) },
            EndCase { label: "always, exit 1", policy: Always, max_retries: 0, end: Exited(1), ran_for_ms: 1_000, failures: 1, want: Ok((200, 2)) },
            EndCase { label: "always, signal", policy: Always, max_retries: 0, end: Signaled(9), ran_for_ms: 1_000, failures: 2, want: Ok((400, 3)) },
            EndCase { label: "always, capped", policy: Always, max_retries: 0, end: Exited(1), ran_for_ms: 0, failures: 10, want: Ok((1_000, 11)) },
            EndCase { label: "on-failure, exit 0", policy: OnFailure, max_retries: 0, end: Exited(0), ran_for_ms: 1_000, failures: 3, want: Err(false) },
            EndCase { label: "on-failure, exit 3", policy: OnFailure, max_retries: 0, end: Exited(3), ran_for_ms: 1_000, failures: 0, want: Ok((100, 1)) },
            EndCase { label: "on-failure, exit -1", policy: OnFailure, max_retries: 0, end: Exited(-1), ran_for_ms: 1_000, failures: 0, want: Ok((100, 1)) },
            EndCase { label: "on-failure, SIGTERM", policy: OnFailure, max_retries: 0, end: Signaled(15), ran_for_ms: 1_000, failures: 1, want: Ok((200, 2)) },
            EndCase { label: "never, exit 0", policy: Never, max_retries: 0, end: Exited(0), ran_for_ms: 1_000, failures: 0, want: Err(false) },
            EndCase { label: "never, exit 1", policy: Never, max_retries: 0, end: Exited(1), ran_for_ms: 1_000, failures: 0, want: Err(false) },
            EndCase { label: "never, SIGKILL", policy: Never, max_retries: 0, end: Signaled(9), ran_for_ms: 1_000, failures: 0, want: Err(false) },
            // a start error is retried whatever the policy
            EndCase { label: "never, start failed", policy: Never, max_retries: 0, end: StartFailed, ran_for_ms: 0, failures: 0, want: Ok((100, 1)) },
            EndCase { label: "never, start failed again", policy: Never, max_retries: 0, end: StartFailed, ran_for_ms: 0, failures: 4, want: Ok((1_000, 5)) },
            EndCase { label: "on-failure, start failed", policy: OnFailure, max_retries: 0, end: StartFailed, ran_for_ms: 0, failures: 1, want: Ok((200, 2)) },
            // reset_after (10 s)
            EndCase { label: "ran exactly reset_after", policy: Always, max_retries: 0, end: Exited(1), ran_for_ms: 10_000, failures: 7, want: Ok((100, 1)) },
            EndCase { label: "ran longer than reset_after", policy: Always, max_retries: 0, end: Signaled(9), ran_for_ms: 60_000, failures: 7, want: Ok((100, 1)) },
            EndCase { label: "ran just under reset_after", policy: Always, max_retries: 0, end: Exited(1), ran_for_ms: 9_999, failures: 2, want: Ok((400, 3)) },
            EndCase { label: "long clean run, on-failure", policy: OnFailure, max_retries: 0, end: Exited(0), ran_for_ms: 60_000, failures: 7, want: Err(false) },
            // max_retries = 2: the third failure gives up
            EndCase { label: "retries 2, first failure", policy: Always, max_retries: 2, end: Exited(1), ran_for_ms: 0, failures: 0, want: Ok((100, 1)) },
            EndCase { label: "retries 2, second failure", policy: Always, max_retries: 2, end: Exited(1), ran_for_ms: 0, failures: 1, want: Ok((200, 2)) },
            EndCase { label: "retries 2, third failure", policy: Always, max_retries: 2, end: Exited(1), ran_for_ms: 0, failures: 2, want: Err(true) },
            EndCase { label: "retries 2, third start failure", policy: Never, max_retries: 2, end: StartFailed, ran_for_ms: 0, failures: 2, want: Err(true) },
            EndCase { label: "retries 2, long run resets", policy: Always, max_retries: 2, end: Exited(1), ran_for_ms: 10_000, failures: 2, want: Ok((100, 1)) },
            EndCase { label: "retries 2, clean exit, on-failure", policy: OnFailure, max_retries: 2, end: Exited(0), ran_for_ms: 0, failures: 2, want: Err(false) },
            EndCase { label: "retries 1, second failure", policy: Always, max_retries: 1, end: Exited(1), ran_for_ms: 0, failures: 1, want: Err(true) },
            // 0 = never give up, even at the end of the counter
            EndCase { label: "retries 0, huge count", policy: Always, max_retries: 0, end: Exited(1), ran_for_ms: 0, failures: u32::MAX, want: Ok((1_000, u32::MAX)) },
        ];
        let now = Instant::now();
        for case in table {
            let r = Restart {
                policy: case.policy,
                max_retries: case.max_retries,
                ..restart(100, 1_000)
            };
            let ran_for = Duration::from_millis(case.ran_for_ms);
            let got = after_end(&r, case.end, ran_for, case.failures, now);
            let want = match case.want {
                Ok((delay_ms, failures)) => AfterEnd::Restart {
                    at: now + Duration::from_millis(delay_ms),
                    failures,
                },
                Err(failed) => AfterEnd::Finish { failed },
            };
            assert_eq!(got, want, "{}", case.label);
        }
    }

    #[test]
    fn after_end_never_overflows_instant() {
        let r = Restart {
            max_delay: Duration::MAX,
            ..restart(100, 0)
        };
        let now = Instant::now();
        match after_end(&r, RunEnd::Exited(1), Duration::ZERO, u32::MAX - 1, now) {
            AfterEnd::Restart { at, failures } => {
                assert!(at > now + Duration::from_secs(86_400 * 365));
                assert_eq!(failures, u32::MAX);
            }
            other => panic!("expected a restart, got {other:?}"),
        }
    }
}
