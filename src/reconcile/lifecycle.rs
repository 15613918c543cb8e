//! An instance's lifecycle as one pure function: [`next`] takes the phase a workload is in,
//! something that happened to it and the time, and gives the phase it moves to.
//!
//! The supervisor never assigns a phase itself: it reports what happened (a spawn was issued,
//! the instance runs, it ended, a stop began, a probe answered, the planner scheduled a
//! restart) and stores what [`next`] returns. Every transition is therefore in the table
//! below and unit-tested without a runtime.

use super::health::{self, Health};
use super::{AfterStop, Phase, RunEnd};
use crate::manifest::HealthCheck;
use std::time::{Duration, Instant};

/// Something that happened to a workload, as far as its phase goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// The runtime accepted a start.
    Spawned,
    /// The runtime refused a start before anything ran.
    SpawnFailed,
    /// The workload's main process runs.
    Running,
    /// The instance is gone: its run ended with `end` after `ran_for`.
    Ended {
        /// How it ended.
        end: RunEnd,
        /// How long it ran.
        ran_for: Duration,
    },
    /// A stop signal was sent (or a stop re-targeted): kill what is left after `timeout`.
    StopBegun {
        /// What happens once it has stopped.
        then: AfterStop,
        /// Its `[stop] timeout`.
        timeout: Duration,
    },
    /// Every process was killed after the stop timeout.
    Killed,
    /// An operator asked for a restart.
    RestartRequested,
    /// The planner scheduled a restart at `until`.
    BackoffScheduled {
        /// When to start again.
        until: Instant,
    },
    /// The planner decided the workload is finished (`failed`: it gave up).
    Finished {
        /// True if it gave up after `max_retries`.
        failed: bool,
    },
    /// The planner put a workload that is not running to rest (an operator stopped it).
    Held,
    /// A health probe was sent.
    ProbeSent,
    /// A health probe answered (`ok`: it passed).
    Probed {
        /// The probe passed.
        ok: bool,
    },
}

/// The outcome of [`next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The workload moves to (or stays in) this phase.
    Phase(Phase),
    /// It stopped to be removed: drop it.
    Removed,
}

/// The phase that follows `phase` when `what` happens at `now`; `check` is the workload's
/// `[health]`, if any.
///
/// Events that do not apply to a phase leave it unchanged (a late `Running` for a stopping
/// instance, a probe answer after the run ended).
#[must_use]
pub fn next(phase: Phase, what: Happened, check: Option<&HealthCheck>, now: Instant) -> Next {
    use Happened as H;
    let phase = match (phase, what) {
        (_, H::Spawned) => Phase::Starting,
        (_, H::SpawnFailed) => Phase::Ended {
            end: RunEnd::StartFailed,
            ran_for: Duration::ZERO,
        },
        (Phase::Starting, H::Running) => Phase::Running {
            since: now,
            health: check.map(|c| Health::new(c, now)),
        },
        (Phase::Stopping { then, .. }, H::Ended { ran_for, .. }) => match then {
            AfterStop::Remove => return Next::Removed,
            AfterStop::Start | AfterStop::Await => Phase::Backoff { until: now },
            AfterStop::Unhealthy => Phase::Ended {
                end: RunEnd::Unhealthy,
                ran_for,
            },
            AfterStop::GiveUp => Phase::Failed,
            AfterStop::Hold => Phase::Held,
        },
        (_, H::Ended { end, ran_for }) => Phase::Ended { end, ran_for },
        (Phase::Stopping { kill_at, .. }, H::StopBegun { then, .. }) => {
            Phase::Stopping { then, kill_at }
        }
        (Phase::Starting | Phase::Running { .. }, H::StopBegun { then, timeout }) => {
            Phase::Stopping {
                then,
                kill_at: Some(now + timeout),
            }
        }
        (Phase::Stopping { then, .. }, H::Killed) => Phase::Stopping {
            then,
            kill_at: None,
        },
        (Phase::Stopping { kill_at, .. }, H::RestartRequested) => Phase::Stopping {
            then: AfterStop::Start,
            kill_at,
        },
        (
            Phase::Ended { .. } | Phase::Backoff { .. } | Phase::Done | Phase::Failed,
            H::RestartRequested,
        ) => Phase::Backoff { until: now },
        (Phase::Ended { .. } | Phase::Backoff { .. }, H::BackoffScheduled { until }) => {
            Phase::Backoff { until }
        }
        (Phase::Ended { .. } | Phase::Backoff { .. } | Phase::Done | Phase::Failed, H::Held) => {
            Phase::Held
        }
        (Phase::Ended { .. }, H::Finished { failed }) => {
            if failed {
                Phase::Failed
            } else {
                Phase::Done
            }
        }
        (
            Phase::Running {
                since,
                health: Some(h),
            },
            H::ProbeSent,
        ) => Phase::Running {
            since,
            health: Some(Health { probing: true, ..h }),
        },
        (
            Phase::Running {
                since,
                health: Some(h),
            },
            H::Probed { ok },
        ) => match check {
            Some(c) => Phase::Running {
                since,
                health: Some(health::after_probe(c, h, since, ok, now)),
            },
            None => Phase::Running {
                since,
                health: None,
            },
        },
        (phase, _) => phase,
    };
    Next::Phase(phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::health::HealthStatus;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    #[rustfmt::skip]
    fn transitions() {
        let now = Instant::now() + Duration::from_secs(3_600);
        let t0 = now - Duration::from_secs(5);
        let running = Phase::Running { since: t0, health: None };
        let stopping = |then| Phase::Stopping { then, kill_at: Some(now + ms(5)) };
        let ended = Phase::Ended { end: RunEnd::Exited(3), ran_for: ms(7) };
        let end = Happened::Ended { end: RunEnd::Exited(3), ran_for: ms(7) };
        let stop = |then| Happened::StopBegun { then, timeout: ms(5) };
        let p = Next::Phase;
        let table: Vec<(&str, Phase, Happened, Next)> = vec![
            ("spawn from an ended run", ended, Happened::Spawned, p(Phase::Starting)),
            ("spawn refused", Phase::Backoff { until: now }, Happened::SpawnFailed,
                p(Phase::Ended { end: RunEnd::StartFailed, ran_for: Duration::ZERO })),
            ("runs", Phase::Starting, Happened::Running, p(Phase::Running { since: now, health: None })),
            ("a late running report while stopping", stopping(AfterStop::Remove), Happened::Running, p(stopping(AfterStop::Remove))),
            ("crash", running, end, p(ended)),
            ("ends while starting", Phase::Starting, end, p(ended)),
            ("stopped to be removed", stopping(AfterStop::Remove), end, Next::Removed),
            ("stopped to recreate: start now", stopping(AfterStop::Start), end, p(Phase::Backoff { until: now })),
            ("stopped as unhealthy: a failed run", stopping(AfterStop::Unhealthy), end,
                p(Phase::Ended { end: RunEnd::Unhealthy, ran_for: ms(7) })),
            ("stopped as unhealthy for good", stopping(AfterStop::GiveUp), end, p(Phase::Failed)),
            ("stop a running one", running, stop(AfterStop::Remove), p(stopping(AfterStop::Remove))),
            ("stop a starting one", Phase::Starting, stop(AfterStop::Start), p(stopping(AfterStop::Start))),
            ("re-target keeps the deadline", Phase::Stopping { then: AfterStop::Start, kill_at: Some(now - ms(1)) },
                stop(AfterStop::Remove), p(Phase::Stopping { then: AfterStop::Remove, kill_at: Some(now - ms(1)) })),
            ("stop of an ended one does nothing", ended, stop(AfterStop::Remove), p(ended)),
            ("killed", stopping(AfterStop::Remove), Happened::Killed, p(Phase::Stopping { then: AfterStop::Remove, kill_at: None })),
            ("kill of a running one does nothing", running, Happened::Killed, p(running)),
            ("restart while stopping to remove", stopping(AfterStop::Remove), Happened::RestartRequested, p(stopping(AfterStop::Start))),
            ("restart a failed one", Phase::Failed, Happened::RestartRequested, p(Phase::Backoff { until: now })),
            ("restart a done one", Phase::Done, Happened::RestartRequested, p(Phase::Backoff { until: now })),
            ("restart a running one is a stop first", running, Happened::RestartRequested, p(running)),
            ("backoff", ended, Happened::BackoffScheduled { until: now + ms(100) }, p(Phase::Backoff { until: now + ms(100) })),
            ("done", ended, Happened::Finished { failed: false }, p(Phase::Done)),
            ("gave up", ended, Happened::Finished { failed: true }, p(Phase::Failed)),
            ("finish of a running one does nothing", running, Happened::Finished { failed: true }, p(running)),
            ("probe answer without a check", running, Happened::Probed { ok: false }, p(running)),
            ("probe answer after the end", ended, Happened::Probed { ok: true }, p(ended)),
            ("stopped by an operator", stopping(AfterStop::Hold), end, p(Phase::Held)),
            ("put to rest", Phase::Failed, Happened::Held, p(Phase::Held)),
            ("a running one is stopped first", running, Happened::Held, p(running)),
            ("a restart of a held one is a start", Phase::Held, Happened::RestartRequested, p(Phase::Held)),
        ];
        for (label, phase, what, want) in table {
            assert_eq!(next(phase, what, None, now), want, "{label}");
        }
    }

    #[test]
    fn a_checked_workload_runs_with_its_health_starting_and_probes_update_it() {
        let now = Instant::now() + Duration::from_secs(3_600);
        let check = crate::manifest::HealthCheck::tcp(5432);
        let Next::Phase(running) = next(Phase::Starting, Happened::Running, Some(&check), now)
        else {
            panic!("removed")
        };
        let Phase::Running {
            health: Some(h), ..
        } = running
        else {
            panic!("{running:?}")
        };
        assert_eq!(h.status, HealthStatus::Starting);
        assert!(!h.probing);
        let Next::Phase(sent) = next(running, Happened::ProbeSent, Some(&check), now) else {
            panic!("removed")
        };
        assert!(matches!(sent, Phase::Running { health: Some(h), .. } if h.probing));
        let later = now + ms(10);
        let Next::Phase(ok) = next(sent, Happened::Probed { ok: true }, Some(&check), later) else {
            panic!("removed")
        };
        let Phase::Running {
            health: Some(h), ..
        } = ok
        else {
            panic!("{ok:?}")
        };
        assert_eq!(h.status, HealthStatus::Healthy);
        assert!(!h.probing);
        assert_eq!(h.next_probe, later + check.interval);
    }
}
