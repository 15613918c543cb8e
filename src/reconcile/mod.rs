//! The decision engine: [`plan`] compares what the manifests ask for with what the supervisor
//! observes and says what to do next.
//!
//! Pure and deterministic: no I/O, no clock (the caller passes `now`), names handled in sorted
//! order. The supervisor executes the [`Action`]s, updates its [`Observed`] state from the results
//! and calls [`plan`] again on every event, or at [`Plan::wake_at`] if nothing else happens.
//!
//! Two invariants worth knowing before reading the rules in [`plan`]:
//! - an invalid manifest never stops or starts anything: the workload keeps its last good spec;
//! - only a deleted manifest removes a workload.

pub mod backoff;
pub mod change;
pub mod health;
pub mod lifecycle;
mod order;
pub mod rollout;
pub mod watchdog;

use crate::manifest::{OnUnhealthy, Spec};
use backoff::AfterEnd;
use change::ChangeClass;
use health::{Health, HealthStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a workload waiting for its changed spec's image is looked at again.
pub const PREPARE_POLL: Duration = Duration::from_secs(1);

/// How a run ended, as the plan needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEnd {
    /// The workload exited with this status.
    Exited(i32),
    /// The workload was killed by this signal number.
    Signaled(i32),
    /// The workload never ran: setting it up or spawning it failed.
    StartFailed,
    /// It was stopped because its health check failed (a failed run for `[restart]`).
    Unhealthy,
    /// It ended while no superd watched it and left no status (a failed run for
    /// `[restart]`: nothing says it succeeded).
    Lost,
}

impl RunEnd {
    /// True only for `Exited(0)`.
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, RunEnd::Exited(0))
    }
}

/// What happens once a stop completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AfterStop {
    /// Drop the workload (its manifest was deleted).
    Remove,
    /// Start the desired spec (a recreate or a restart request).
    Start,
    /// A dependency is down (`restart_with`): start again once it is back.
    Await,
    /// The health check failed: the run counts as failed and `[restart]` decides.
    Unhealthy,
    /// The health check failed under `on_unhealthy = "stop"`: stay failed.
    GiveUp,
    /// An operator stopped it (`superctl stop`): stay stopped until `superctl start`.
    Hold,
}

/// Where a workload is in its lifecycle, as the supervisor observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// A spawn was issued; waiting for it to run or fail.
    Starting,
    /// Running since the given time.
    Running {
        /// When the workload started running.
        since: Instant,
        /// Its health, when it has a `[health]` check.
        health: Option<Health>,
    },
    /// A stop is in progress.
    Stopping {
        /// What to do once it has stopped.
        then: AfterStop,
        /// When every process of the instance is killed if it has not ended by then (its
        /// `[stop] timeout` after the stop signal); `None` once that kill was sent.
        kill_at: Option<Instant>,
    },
    /// The last run ended and nothing has been decided yet.
    Ended {
        /// How it ended.
        end: RunEnd,
        /// How long it ran.
        ran_for: Duration,
    },
    /// Waiting to restart.
    Backoff {
        /// When to start again.
        until: Instant,
    },
    /// Finished under its policy ("exited" to operators).
    Done,
    /// Gave up after `[restart] max_retries`.
    Failed,
    /// Stopped by an operator (`superctl stop`) until `superctl start`.
    Held,
}

/// What the supervisor knows about one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The spec the workload runs (or last ran) with, including any live update.
    pub spec: Arc<Spec>,
    /// Where it is in its lifecycle.
    pub phase: Phase,
    /// Consecutive runs that counted toward backoff.
    pub failures: u32,
}

/// One thing for the supervisor to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start `spec` now (the desired one, or the last good one of a broken manifest).
    Start {
        /// The workload.
        name: String,
        /// What to start.
        spec: Arc<Spec>,
    },
    /// Run the health probe of the running instance.
    Probe {
        /// The workload.
        name: String,
    },
    /// Begin a stop, or re-target one already in progress.
    Stop {
        /// The workload.
        name: String,
        /// What to do once it has stopped.
        then: AfterStop,
    },
    /// The changed spec's image is not in the store yet: fetch it. The running instance
    /// stays until the image is there (then the change is a stop and a start).
    Prepare {
        /// The workload.
        name: String,
    },
    /// A stopping instance outlived its stop timeout: kill every process it has.
    Kill {
        /// The workload.
        name: String,
    },
    /// Apply the desired `[resources]`, `[restart]` and `[stop]` to the running instance.
    UpdateLive {
        /// The workload.
        name: String,
    },
    /// Enter backoff: start again at `at`, recording `failures` consecutive failures.
    ScheduleRestart {
        /// The workload.
        name: String,
        /// When to start again.
        at: Instant,
        /// The new consecutive failure count.
        failures: u32,
    },
    /// Stop deciding: `Done` (`failed == false`) or `Failed` (gave up after max retries).
    Finish {
        /// The workload.
        name: String,
        /// True if the workload gave up rather than finished under its policy.
        failed: bool,
    },
    /// An operator stopped it and nothing runs: rest in `Held`.
    Hold {
        /// The workload.
        name: String,
    },
    /// Nothing runs and the manifest is gone: drop the entry.
    Forget {
        /// The workload.
        name: String,
    },
}

/// The output of [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Actions in workload-name order (at most one per workload).
    pub actions: Vec<Action>,
    /// The earliest time [`plan`] must run again if no other event arrives.
    pub wake_at: Option<Instant>,
    /// Workloads that would start but wait for their dependencies: what each waits for, as
    /// shown to operators (`db (healthy)`).
    pub waiting: BTreeMap<String, Vec<String>>,
}

impl Plan {
    /// Adds an action; a scheduled restart also becomes a wake-up time.
    fn push(&mut self, action: Option<Action>) {
        if let Some(Action::ScheduleRestart { at, .. }) = action {
            self.wake(at);
        }
        self.actions.extend(action);
    }

    fn wake(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// Decides what to do for every workload named in `desired` or `observed`, at time `now`.
///
/// `desired` maps each manifest name to `Some(spec)` when it is valid or `None` when it exists
/// but is invalid. Names are handled in sorted order; each yields at most one action:
///
/// 1. desired, not observed: `Start`.
/// 2. invalid manifest: nothing is started or stopped; a pending `Ended` is still decided (rule
///    5, with the observed spec) and an expired `Backoff` still starts (the last good spec).
/// 3. manifest deleted: a running or starting workload is stopped to be removed (a stop for a
///    recreate is re-targeted); anything that is not running is forgotten.
/// 4. spec changed: `UpdateLive` or `Stop { then: Start }` for a running workload (see
///    [`change::classify`]), or `Prepare` while the new spec's image is not ready (see
///    [`plan_with`]); a stop to remove is re-targeted to start; a workload that is not
///    running is started at once.
/// 5. spec unchanged and `Ended`: restart with backoff, finish, or give up, under the observed
///    spec's `[restart]` (see `backoff::after_end`).
/// 6. `Backoff` whose time has come: `Start`; otherwise it sets [`Plan::wake_at`].
/// 7. anything else: nothing.
///
/// Before these rules, a stop whose kill time has come yields `Kill` (the rules apply at the
/// next call), and one still waiting sets [`Plan::wake_at`].
#[must_use]
pub fn plan(
    desired: &BTreeMap<String, Option<Arc<Spec>>>,
    observed: &BTreeMap<String, Observed>,
    now: Instant,
) -> Plan {
    let none = BTreeSet::new();
    let gates = Gates {
        unready: &none,
        held: &none,
    };
    plan_with(desired, observed, &gates, now)
}

/// What holds workloads back besides their manifests, for [`plan_with`].
#[derive(Debug, Clone, Copy)]
pub struct Gates<'a> {
    /// Workloads whose desired spec's image is not in the store yet.
    pub unready: &'a BTreeSet<String>,
    /// Workloads an operator stopped (`superctl stop`): they are stopped and never started
    /// while their name is here, whatever their manifest says.
    pub held: &'a BTreeSet<String>,
}

/// [`plan`] with [`Gates`]: a running workload in `unready` that must be recreated gets
/// `Prepare` (and a wake-up after [`PREPARE_POLL`]) instead of a stop, so the old instance
/// serves until the new image is there; one in `held` whose manifest still exists is stopped
/// (`Stop { then: Hold }`) or rests (`Hold`) instead of any other rule.
#[must_use]
pub fn plan_with(
    desired: &BTreeMap<String, Option<Arc<Spec>>>,
    observed: &BTreeMap<String, Observed>,
    gates: &Gates<'_>,
    now: Instant,
) -> Plan {
    let unready = gates.unready;
    let mut plan = Plan::default();
    let names: BTreeSet<&String> = desired.keys().chain(observed.keys()).collect();
    for name in names {
        if let Some(Phase::Stopping {
            kill_at: Some(at), ..
        }) = observed.get(name).map(|o| o.phase)
        {
            if at <= now {
                plan.push(Some(Action::Kill { name: name.clone() }));
                continue;
            }
            plan.wake(at);
        }
        if desired.contains_key(name) && gates.held.contains(name) {
            plan.push(observed.get(name).and_then(|o| held(name.clone(), o.phase)));
            continue;
        }
        let action = match (desired.get(name), observed.get(name)) {
            (Some(Some(spec)), None) => Some(Action::Start {
                name: name.clone(),
                spec: Arc::clone(spec),
            }),
            // Invalid and never run, or in neither map: the supervisor shows the error.
            (_, None) => None,
            (None, Some(obs)) => deleted(name.clone(), obs.phase),
            (Some(None), Some(obs)) => unchanged(name.clone(), obs, observed, now, &mut plan),
            (Some(Some(spec)), Some(obs)) => match change::classify(&obs.spec, spec) {
                ChangeClass::Same => unchanged(name.clone(), obs, observed, now, &mut plan),
                ChangeClass::Recreate
                    if unready.contains(name)
                        && matches!(obs.phase, Phase::Running { .. } | Phase::Starting) =>
                {
                    plan.wake(now + PREPARE_POLL);
                    Some(Action::Prepare { name: name.clone() })
                }
                class => changed(name.clone(), spec, obs.phase, class),
            },
        };
        let action = order::gate(action, observed, &mut plan);
        plan.push(action);
    }
    order::hold_stops(&mut plan, observed);
    plan
}

/// An operator stopped the workload: stop it, then rest.
fn held(name: String, phase: Phase) -> Option<Action> {
    match phase {
        Phase::Running { .. }
        | Phase::Starting
        | Phase::Stopping {
            then:
                AfterStop::Remove
                | AfterStop::Start
                | AfterStop::Await
                | AfterStop::Unhealthy
                | AfterStop::GiveUp,
            ..
        } => Some(Action::Stop {
            name,
            then: AfterStop::Hold,
        }),
        Phase::Stopping {
            then: AfterStop::Hold,
            ..
        }
        | Phase::Held => None,
        Phase::Ended { .. } | Phase::Backoff { .. } | Phase::Done | Phase::Failed => {
            Some(Action::Hold { name })
        }
    }
}

/// Rule 3: the manifest was deleted.
fn deleted(name: String, phase: Phase) -> Option<Action> {
    use AfterStop::{Await, GiveUp, Hold, Remove, Start, Unhealthy};
    match phase {
        Phase::Running { .. }
        | Phase::Starting
        | Phase::Stopping {
            then: Start | Await | Unhealthy | GiveUp | Hold,
            ..
        } => Some(Action::Stop { name, then: Remove }),
        Phase::Stopping { then: Remove, .. } => None,
        Phase::Ended { .. } | Phase::Backoff { .. } | Phase::Done | Phase::Failed | Phase::Held => {
            Some(Action::Forget { name })
        }
    }
}

/// Rule 4: the desired spec differs from the observed one (`class` is `Live` or `Recreate`).
fn changed(name: String, spec: &Arc<Spec>, phase: Phase, class: ChangeClass) -> Option<Action> {
    use AfterStop::{Await, GiveUp, Hold, Remove, Start, Unhealthy};
    match (phase, class) {
        (_, ChangeClass::Same) | (Phase::Stopping { then: Start, .. }, _) => None,
        (Phase::Running { .. } | Phase::Starting, ChangeClass::Live) => {
            Some(Action::UpdateLive { name })
        }
        (Phase::Running { .. } | Phase::Starting, ChangeClass::Recreate)
        | (
            Phase::Stopping {
                then: Remove | Await | Unhealthy | GiveUp | Hold,
                ..
            },
            _,
        ) => Some(Action::Stop { name, then: Start }),
        (
            Phase::Ended { .. } | Phase::Backoff { .. } | Phase::Done | Phase::Failed | Phase::Held,
            _,
        ) => Some(Action::Start {
            name,
            spec: Arc::clone(spec),
        }),
    }
}

/// Rules 5–7: the spec is unchanged (or the manifest is invalid and the observed spec stands).
/// A backoff still waiting, and a health probe not yet due, become wake-up times in `plan`.
fn unchanged(
    name: String,
    obs: &Observed,
    observed: &BTreeMap<String, Observed>,
    now: Instant,
    plan: &mut Plan,
) -> Option<Action> {
    match obs.phase {
        Phase::Ended { end, ran_for } => {
            let next = backoff::after_end(&obs.spec.restart, end, ran_for, obs.failures, now);
            Some(match next {
                AfterEnd::Finish { failed } => Action::Finish { name, failed },
                AfterEnd::Restart { at, failures } => {
                    Action::ScheduleRestart { name, at, failures }
                }
            })
        }
        // A due backoff, or released by `superctl start`: start the spec it has.
        Phase::Backoff { until } if until <= now => Some(Action::Start {
            name,
            spec: Arc::clone(&obs.spec),
        }),
        Phase::Held => Some(Action::Start {
            name,
            spec: Arc::clone(&obs.spec),
        }),
        Phase::Backoff { until } => {
            plan.wake(until);
            None
        }
        Phase::Running { health, .. } => order::restart_with(&name, &obs.spec, observed)
            .or_else(|| health.and_then(|h| probe(name, &obs.spec, h, now, plan))),
        Phase::Starting => order::restart_with(&name, &obs.spec, observed),
        Phase::Stopping { .. } | Phase::Done | Phase::Failed => None,
    }
}

/// A running, checked workload: act on an unhealthy verdict, or probe when due.
fn probe(name: String, spec: &Spec, h: Health, now: Instant, plan: &mut Plan) -> Option<Action> {
    let on_unhealthy = spec.health.as_ref().map(|c| c.on_unhealthy);
    match (h.status, on_unhealthy) {
        (HealthStatus::Unhealthy, Some(OnUnhealthy::Restart)) => {
            return Some(Action::Stop {
                name,
                then: AfterStop::Unhealthy,
            })
        }
        (HealthStatus::Unhealthy, Some(OnUnhealthy::Stop)) => {
            return Some(Action::Stop {
                name,
                then: AfterStop::GiveUp,
            })
        }
        (_, None) => return None,
        _ => {}
    }
    if h.probing {
        None
    } else if h.next_probe <= now {
        Some(Action::Probe { name })
    } else {
        plan.wake(h.next_probe);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Name, RestartPolicy};
    use act::*;
    use AfterStop::{Remove, Start as Recreate};

    const WEB: &str = "web";

    #[rustfmt::skip]
    mod act {
        //! Short constructors for expected actions and phases.
        use super::super::*;
        pub fn start(n: &str) -> Action { start_with(n, &super::spec(n)) }
        pub fn start_with(n: &str, s: &Spec) -> Action { Action::Start { name: n.into(), spec: Arc::new(s.clone()) } }
        pub fn stop(n: &str, then: AfterStop) -> Action { Action::Stop { name: n.into(), then } }
        pub fn update(n: &str) -> Action { Action::UpdateLive { name: n.into() } }
        pub fn forget(n: &str) -> Action { Action::Forget { name: n.into() } }
        pub fn kill(n: &str) -> Action { Action::Kill { name: n.into() } }
        pub fn finish(n: &str, failed: bool) -> Action { Action::Finish { name: n.into(), failed } }
        pub fn schedule(n: &str, at: Instant, failures: u32) -> Action {
            Action::ScheduleRestart { name: n.into(), at, failures }
        }
        pub fn ms(n: u64) -> Duration { Duration::from_millis(n) }
        pub fn ended(end: RunEnd, ran_for_ms: u64) -> Phase { Phase::Ended { end, ran_for: ms(ran_for_ms) } }
        pub fn backoff(until: Instant) -> Phase { Phase::Backoff { until } }
    }

    fn spec(name: &str) -> Spec {
        Spec::with_defaults(Name::new(name).unwrap(), vec!["sleep".into(), "60".into()])
    }

    fn entry(name: &str, phase: Phase, failures: u32) -> (String, Observed) {
        let spec = Arc::new(spec(name));
        let obs = Observed {
            spec,
            phase,
            failures,
        };
        (name.to_string(), obs)
    }

    /// A base time far enough from the clock's origin that `now - x` never underflows.
    fn base_now() -> Instant {
        Instant::now() + Duration::from_secs(3_600)
    }

    /// The desired side of a single-workload row: `None` = manifest deleted, `Some(None)` =
    /// invalid, `Some(Some(spec))` = valid. The observed side always runs `spec(WEB)`.
    type Want = Option<Option<Spec>>;

    /// label, desired, observed (phase, failures), expected actions, expected wake-up.
    type Row<'a> = (
        &'a str,
        &'a Want,
        Option<(Phase, u32)>,
        Vec<Action>,
        Option<Instant>,
    );

    fn plan_one(want: &Want, obs: Option<(Phase, u32)>, now: Instant) -> Plan {
        let desired = want
            .iter()
            .map(|s| (WEB.to_string(), s.clone().map(Arc::new)));
        let observed = obs.map(|(phase, failures)| entry(WEB, phase, failures));
        plan(&desired.collect(), &observed.into_iter().collect(), now)
    }

    #[test]
    #[rustfmt::skip]
    fn single_workload_table() {
        let now = base_now();
        let running = Phase::Running { since: now - Duration::from_secs(5), health: None };
        let crashed = ended(RunEnd::Exited(1), 1_000);
        let soon = now + Duration::from_secs(2);
        let (waiting, due, overdue) = (backoff(soon), backoff(now), backoff(now - ms(1)));
        let (stop_rm, stop_re) = (Phase::Stopping { then: Remove, kill_at: None }, Phase::Stopping { then: Recreate, kill_at: None });
        let (same, invalid, absent): (Want, Want, Want) = (Some(Some(spec(WEB))), Some(None), None);
        let mut live = spec(WEB);
        live.resources.memory = Some(64 << 20);
        let mut recreate = spec(WEB);
        recreate.env.insert("MODE".into(), "new".into());
        let (lv, rc): (Want, Want) = (Some(Some(live.clone())), Some(Some(recreate.clone())));
        let none: Vec<Action> = vec![];
        let table: Vec<Row> = vec![
            ("1: new manifest starts", &same, None, vec![start(WEB)], None),
            ("2: invalid, never ran", &invalid, None, none.clone(), None),
            ("2: invalid edit keeps running", &invalid, Some((running, 0)), none.clone(), None),
            ("2: invalid edit keeps starting", &invalid, Some((Phase::Starting, 0)), none.clone(), None),
            ("2: invalid edit, stop to remove goes on", &invalid, Some((stop_rm, 0)), none.clone(), None),
            ("2: invalid edit, recreate goes on", &invalid, Some((stop_re, 0)), none.clone(), None),
            ("2: invalid edit, done stays done", &invalid, Some((Phase::Done, 0)), none.clone(), None),
            ("2: invalid edit, failed stays failed", &invalid, Some((Phase::Failed, 3)), none.clone(), None),
            ("2: invalid edit, ended still decided", &invalid, Some((crashed, 1)), vec![schedule(WEB, now + ms(200), 2)], Some(now + ms(200))),
            ("2: invalid edit, backoff waits", &invalid, Some((waiting, 1)), none.clone(), Some(soon)),
            ("2: invalid edit, backoff due starts", &invalid, Some((due, 1)), vec![start(WEB)], None),
            ("3: deleted while running", &absent, Some((running, 0)), vec![stop(WEB, Remove)], None),
            ("3: deleted while starting", &absent, Some((Phase::Starting, 0)), vec![stop(WEB, Remove)], None),
            ("3: deleted while stopping to recreate", &absent, Some((stop_re, 0)), vec![stop(WEB, Remove)], None),
            ("3: deleted while stopping to remove", &absent, Some((stop_rm, 0)), none.clone(), None),
            ("3: deleted after it ended", &absent, Some((crashed, 0)), vec![forget(WEB)], None),
            ("3: deleted during backoff", &absent, Some((waiting, 2)), vec![forget(WEB)], None),
            ("3: deleted with backoff due", &absent, Some((overdue, 2)), vec![forget(WEB)], None),
            ("3: deleted when done", &absent, Some((Phase::Done, 0)), vec![forget(WEB)], None),
            ("3: deleted when failed", &absent, Some((Phase::Failed, 3)), vec![forget(WEB)], None),
            ("4: live change, running", &lv, Some((running, 0)), vec![update(WEB)], None),
            ("4: live change, starting", &lv, Some((Phase::Starting, 0)), vec![update(WEB)], None),
            ("4: recreate, running", &rc, Some((running, 0)), vec![stop(WEB, Recreate)], None),
            ("4: recreate, starting", &rc, Some((Phase::Starting, 0)), vec![stop(WEB, Recreate)], None),
            ("4: recreated while stopping to remove", &rc, Some((stop_rm, 0)), vec![stop(WEB, Recreate)], None),
            ("4: live change while stopping to remove", &lv, Some((stop_rm, 0)), vec![stop(WEB, Recreate)], None),
            ("4: recreate while already recreating", &rc, Some((stop_re, 0)), none.clone(), None),
            ("4: live change while recreating", &lv, Some((stop_re, 0)), none.clone(), None),
            ("4: changed after it ended", &rc, Some((crashed, 4)), vec![start_with(WEB, &recreate)], None),
            ("4: changed during backoff", &lv, Some((waiting, 4)), vec![start_with(WEB, &live)], None),
            ("4: changed when done", &rc, Some((Phase::Done, 0)), vec![start_with(WEB, &recreate)], None),
            ("4: changed when failed", &lv, Some((Phase::Failed, 5)), vec![start_with(WEB, &live)], None),
            ("5: ended, same spec", &same, Some((crashed, 0)), vec![schedule(WEB, now + ms(100), 1)], Some(now + ms(100))),
            ("5: start failed, same spec", &same, Some((ended(RunEnd::StartFailed, 0), 2)), vec![schedule(WEB, now + ms(400), 3)], Some(now + ms(400))),
            ("6: backoff not yet due", &same, Some((waiting, 1)), none.clone(), Some(soon)),
            ("6: backoff due exactly now", &same, Some((due, 1)), vec![start(WEB)], None),
            ("6: backoff overdue", &same, Some((overdue, 1)), vec![start(WEB)], None),
            ("7: running", &same, Some((running, 0)), none.clone(), None),
            ("7: starting", &same, Some((Phase::Starting, 0)), none.clone(), None),
            ("7: stopping to remove", &same, Some((stop_rm, 0)), none.clone(), None),
            ("7: stopping to recreate", &same, Some((stop_re, 0)), none.clone(), None),
            ("7: done", &same, Some((Phase::Done, 0)), none.clone(), None),
            ("7: failed", &same, Some((Phase::Failed, 3)), none.clone(), None),
            ("kill: the stop timeout is due", &absent, Some((Phase::Stopping { then: Remove, kill_at: Some(now) }, 0)), vec![kill(WEB)], None),
            ("kill: due beats a re-target", &rc, Some((Phase::Stopping { then: Remove, kill_at: Some(now - ms(1)) }, 0)), vec![kill(WEB)], None),
            ("kill: not yet, wakes then", &absent, Some((Phase::Stopping { then: Remove, kill_at: Some(soon) }, 0)), none.clone(), Some(soon)),
            ("kill: not yet, re-target goes on", &rc, Some((Phase::Stopping { then: Remove, kill_at: Some(soon) }, 0)), vec![stop(WEB, Recreate)], Some(soon)),
        ];
        for (label, want, obs, actions, wake_at) in table {
            let expected = Plan { actions, wake_at, ..Plan::default() };
            assert_eq!(plan_one(want, obs, now), expected, "{label}");
        }
    }

    #[test]
    fn a_recreate_waits_for_the_new_image_and_a_live_change_does_not() {
        let now = base_now();
        let running = Phase::Running {
            since: now,
            health: None,
        };
        let mut recreate = spec(WEB);
        recreate.env.insert("MODE".into(), "new".into());
        let mut live = spec(WEB);
        live.resources.memory = Some(64 << 20);
        let unready: BTreeSet<String> = [WEB.to_string()].into();
        let run = |want: &Spec, phase: Phase, unready: &BTreeSet<String>| {
            let desired = [(WEB.to_string(), Some(Arc::new(want.clone())))].into();
            let observed = [entry(WEB, phase, 0)].into();
            let gates = Gates {
                unready,
                held: &BTreeSet::new(),
            };
            plan_with(&desired, &observed, &gates, now)
        };
        let prepare = Plan {
            actions: vec![Action::Prepare { name: WEB.into() }],
            wake_at: Some(now + PREPARE_POLL),
            ..Plan::default()
        };
        assert_eq!(run(&recreate, running, &unready), prepare);
        assert_eq!(run(&recreate, Phase::Starting, &unready), prepare);
        // Ready now: the usual stop, then start.
        assert_eq!(
            run(&recreate, running, &BTreeSet::new()).actions,
            [stop(WEB, Recreate)]
        );
        // Nothing runs: it starts at once (and waits for its image as a start error).
        assert_eq!(
            run(&recreate, Phase::Failed, &unready).actions,
            [start_with(WEB, &recreate)]
        );
        // A live change never needs a new image.
        assert_eq!(run(&live, running, &unready).actions, [update(WEB)]);
    }

    #[test]
    fn invalid_manifest_never_stops_starts_or_forgets_a_live_workload() {
        let now = base_now();
        let phases = [
            Phase::Starting,
            Phase::Running {
                since: now,
                health: None,
            },
            Phase::Stopping {
                then: Remove,
                kill_at: None,
            },
            Phase::Stopping {
                then: Recreate,
                kill_at: Some(now + ms(5)),
            },
            ended(RunEnd::Signaled(9), 5),
            backoff(now + ms(1)),
            Phase::Done,
            Phase::Failed,
        ];
        for phase in phases {
            let p = plan_one(&Some(None), Some((phase, 0)), now);
            let bad = p.actions.iter().any(|a| {
                use Action::{Forget, Start, Stop};
                matches!(a, Stop { .. } | Start { .. } | Forget { .. })
            });
            assert!(!bad, "{phase:?} -> {:?}", p.actions);
        }
    }

    #[test]
    fn ended_is_decided_with_the_observed_restart_section() {
        let now = base_now();
        let (name, mut obs) = entry(WEB, ended(RunEnd::Exited(1), 10), 0);
        let mut last_good = spec(WEB);
        last_good.restart.policy = RestartPolicy::Never;
        obs.spec = Arc::new(last_good);
        let desired_spec = Some(obs.spec.clone());
        let observed = BTreeMap::from([(name, obs)]);
        // Invalid manifest, or the same (policy = never) spec: the observed policy decides.
        for desired in [None, desired_spec] {
            let desired = BTreeMap::from([(WEB.to_string(), desired)]);
            let p = plan(&desired, &observed, now);
            assert_eq!(p.actions, vec![finish(WEB, false)]);
            assert_eq!(p.wake_at, None);
        }
    }

    type Maps = (
        BTreeMap<String, Option<Arc<Spec>>>,
        BTreeMap<String, Observed>,
    );

    /// A mixed fleet: names spread over desired-only, observed-only and both.
    fn fleet(now: Instant) -> Maps {
        let want = |name: &str| (name.to_string(), Some(Arc::new(spec(name))));
        let mut changed = spec("d-changed");
        changed.command = vec!["other".into()];
        let desired = BTreeMap::from([
            want("b-new"),
            ("c-broken".to_string(), None),
            ("d-changed".to_string(), Some(Arc::new(changed))),
            want("e-crashed"),
            want("f-waiting"),
            want("g-waiting"),
            want("h-running"),
        ]);
        let observed = BTreeMap::from([
            entry(
                "a-deleted",
                Phase::Running {
                    since: now,
                    health: None,
                },
                0,
            ),
            entry(
                "d-changed",
                Phase::Running {
                    since: now,
                    health: None,
                },
                0,
            ),
            entry("e-crashed", ended(RunEnd::Exited(2), 1), 3),
            entry("f-waiting", backoff(now + Duration::from_secs(5)), 2),
            entry("g-waiting", backoff(now + ms(300)), 2),
            entry(
                "h-running",
                Phase::Running {
                    since: now,
                    health: None,
                },
                0,
            ),
        ]);
        (desired, observed)
    }

    #[test]
    fn mixed_fleet_in_name_order_with_earliest_wake() {
        let now = base_now();
        let (desired, observed) = fleet(now);
        let actions = vec![
            stop("a-deleted", Remove),
            start("b-new"),
            stop("d-changed", Recreate),
            schedule("e-crashed", now + ms(800), 4),
        ];
        let wake_at = Some(now + ms(300));
        let expected = Plan {
            actions,
            wake_at,
            ..Plan::default()
        };
        assert_eq!(plan(&desired, &observed, now), expected);
    }

    #[test]
    fn wake_at_is_the_earliest_of_backoffs_and_new_restarts() {
        let now = base_now();
        let (desired, mut observed) = fleet(now);
        // A first failure restarts after 100 ms: earlier than either backoff.
        if let Some(e) = observed.get_mut("e-crashed") {
            e.failures = 0;
        }
        assert_eq!(plan(&desired, &observed, now).wake_at, Some(now + ms(100)));
        // With nothing waiting, there is no wake-up.
        observed.retain(|_, o| !matches!(o.phase, Phase::Backoff { .. } | Phase::Ended { .. }));
        assert_eq!(plan(&desired, &observed, now).wake_at, None);
    }

    #[test]
    fn deterministic() {
        let now = base_now();
        let (desired, observed) = fleet(now);
        let first = plan(&desired, &observed, now);
        for _ in 0..10 {
            assert_eq!(plan(&desired, &observed, now), first);
        }
        // Insertion order is irrelevant: rebuilding the maps in reverse gives the same plan.
        let desired_rev: BTreeMap<_, _> = desired.into_iter().rev().collect();
        let observed_rev: BTreeMap<_, _> = observed.into_iter().rev().collect();
        assert_eq!(plan(&desired_rev, &observed_rev, now), first);
    }

    #[test]
    fn run_end_success_is_exit_zero_only() {
        assert!(RunEnd::Exited(0).is_success());
        let failures = [
            RunEnd::Exited(1),
            RunEnd::Exited(-1),
            RunEnd::Signaled(0),
            RunEnd::StartFailed,
        ];
        for end in failures {
            assert!(!end.is_success(), "{end:?}");
        }
    }
}
