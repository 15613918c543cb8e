//! Start order: `after` gates every start on the dependencies' state, `restart_with` stops a
//! dependent while a dependency is down, and stops to remove run in the reverse order.

use super::health::HealthStatus;
use super::{Action, AfterStop, Observed, Phase, Plan};
use crate::manifest::{Condition, Spec};
use std::collections::{BTreeMap, BTreeSet};

/// What `spec` still waits for, as shown to operators: `db (healthy)`.
pub(super) fn unmet(spec: &Spec, observed: &BTreeMap<String, Observed>) -> Vec<String> {
    spec.start_order
        .after
        .iter()
        .filter(|dep| {
            let phase = observed.get(dep.name.as_str()).map(|o| o.phase);
            let met = match (phase, dep.condition) {
                (Some(Phase::Running { .. }), Condition::Started) => true,
                (
                    Some(Phase::Running {
                        health: Some(h), ..
                    }),
                    Condition::Healthy,
                ) => h.status == HealthStatus::Healthy,
                _ => false,
            };
            !met
        })
        .map(|dep| format!("{} ({})", dep.name, dep.condition.as_str()))
        .collect()
}

/// A start whose dependencies are not all there yet becomes a wait (recorded in
/// [`Plan::waiting`]); every other action passes.
pub(super) fn gate(
    action: Option<Action>,
    observed: &BTreeMap<String, Observed>,
    plan: &mut Plan,
) -> Option<Action> {
    if let Some(Action::Start { name, spec }) = &action {
        let waits = unmet(spec, observed);
        if !waits.is_empty() {
            plan.waiting.insert(name.clone(), waits);
            return None;
        }
    }
    action
}

/// A running dependent under `restart_with` whose dependency is down: stop it, to start
/// again (through [`gate`]) once the dependency is back.
pub(super) fn restart_with(
    name: &str,
    spec: &Spec,
    observed: &BTreeMap<String, Observed>,
) -> Option<Action> {
    (spec.start_order.restart_with && !unmet(spec, observed).is_empty()).then(|| Action::Stop {
        name: name.to_string(),
        then: AfterStop::Await,
    })
}

/// Stops to remove go dependents first: a workload whose dependent is stopping, or is told
/// to stop in this plan, waits for the next plan. If that would hold every planned removal
/// while nothing is stopping (only a cycle does that), none is held.
pub(super) fn hold_stops(plan: &mut Plan, observed: &BTreeMap<String, Observed>) {
    let stopping_now: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let dependents_going = |name: &str| {
        observed.iter().any(|(other, o)| {
            other != name
                && o.spec
                    .start_order
                    .after
                    .iter()
                    .any(|d| d.name.as_str() == name)
                && (matches!(o.phase, Phase::Stopping { .. })
                    || stopping_now.contains(other.as_str()))
        })
    };
    let held: BTreeSet<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop {
                name,
                then: AfterStop::Remove,
            } if dependents_going(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    if held.is_empty() {
        return;
    }
    let removals = plan
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Stop {
                    then: AfterStop::Remove,
                    ..
                }
            )
        })
        .count();
    let anything_stopping = observed
        .values()
        .any(|o| matches!(o.phase, Phase::Stopping { .. }));
    if held.len() == removals && !anything_stopping {
        return;
    }
    plan.actions.retain(|a| match a {
        Action::Stop {
            name,
            then: AfterStop::Remove,
        } => !held.contains(name),
        _ => true,
    });
}

#[cfg(test)]
mod tests {
    use super::super::health::Health;
    use super::super::*;
    use crate::manifest::{Condition, Dependency, HealthCheck, Name, OnUnhealthy};
    use std::time::Duration;

    fn spec(name: &str, after: &[(&str, Condition)]) -> Spec {
        let mut s = Spec::with_defaults(Name::new(name).unwrap(), vec!["sleep".into()]);
        s.start_order.after = after
            .iter()
            .map(|&(n, condition)| Dependency {
                name: Name::new(n).unwrap(),
                condition,
            })
            .collect();
        s.health = Some(HealthCheck::tcp(80));
        s
    }

    fn now() -> Instant {
        Instant::now() + Duration::from_secs(3_600)
    }

    fn running(h: Option<HealthStatus>, t: Instant) -> Phase {
        Phase::Running {
            since: t,
            health: h.map(|status| Health {
                status,
                failures: 0,
                next_probe: t + Duration::from_secs(30),
                probing: false,
            }),
        }
    }

    fn obs(spec: &Spec, phase: Phase) -> (String, Observed) {
        let o = Observed {
            spec: Arc::new(spec.clone()),
            phase,
            failures: 0,
        };
        (spec.name.to_string(), o)
    }

    fn names(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .map(|a| match a {
                Action::Start { name, .. } => format!("start {name}"),
                Action::Stop { name, then } => format!("stop {name} {then:?}"),
                Action::Probe { name } => format!("probe {name}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_cold_start_goes_in_dependency_order_and_says_what_waits() {
        let t = now();
        let db = spec("db", &[]);
        let app = spec(
            "app",
            &[("db", Condition::Healthy), ("cache", Condition::Started)],
        );
        let cache = spec("cache", &[]);
        let desired: BTreeMap<String, Option<Arc<Spec>>> = [&db, &app, &cache]
            .iter()
            .map(|s| (s.name.to_string(), Some(Arc::new((*s).clone()))))
            .collect();
        // Nothing runs: the two without dependencies start, app waits for both.
        let p = plan(&desired, &BTreeMap::new(), t);
        assert_eq!(names(&p), ["start cache", "start db"]);
        assert_eq!(p.waiting["app"], ["db (healthy)", "cache (started)"]);
        // db runs but has no verdict yet; cache runs: app still waits for db.
        let observed = BTreeMap::from([
            obs(&db, running(Some(HealthStatus::Starting), t)),
            obs(&cache, running(None, t)),
        ]);
        let p = plan(&desired, &observed, t);
        assert!(names(&p).is_empty(), "{:?}", names(&p));
        assert_eq!(p.waiting["app"], ["db (healthy)"]);
        // db healthy: app starts.
        let observed = BTreeMap::from([
            obs(&db, running(Some(HealthStatus::Healthy), t)),
            obs(&cache, running(None, t)),
        ]);
        let p = plan(&desired, &observed, t);
        assert_eq!(names(&p), ["start app"]);
        assert!(p.waiting.is_empty());
    }

    #[test]
    fn a_restart_waits_for_the_dependency_and_restart_with_stops_the_dependent() {
        let t = now();
        let db = spec("db", &[]);
        let mut app = spec("app", &[("db", Condition::Started)]);
        let desired = |app: &Spec| -> BTreeMap<String, Option<Arc<Spec>>> {
            BTreeMap::from([
                ("db".to_string(), Some(Arc::new(db.clone()))),
                ("app".to_string(), Some(Arc::new(app.clone()))),
            ])
        };
        let db_down = obs(
            &db,
            Phase::Backoff {
                until: t + Duration::from_secs(1),
            },
        );
        // app's backoff is due but db is down: app waits.
        let observed = BTreeMap::from([obs(&app, Phase::Backoff { until: t }), db_down.clone()]);
        let p = plan(&desired(&app), &observed, t);
        assert!(names(&p).is_empty());
        assert_eq!(p.waiting["app"], ["db (started)"]);
        // A running app without restart_with keeps running while db is down.
        let observed = BTreeMap::from([obs(&app, running(None, t)), db_down.clone()]);
        assert!(names(&plan(&desired(&app), &observed, t)).is_empty());
        // With restart_with it is stopped, to start again once db is back.
        app.start_order.restart_with = true;
        let observed = BTreeMap::from([obs(&app, running(None, t)), db_down]);
        assert_eq!(
            names(&plan(&desired(&app), &observed, t)),
            ["stop app Await"]
        );
    }

    #[test]
    fn removals_stop_dependents_first_and_a_cycle_never_blocks() {
        let t = now();
        let db = spec("db", &[]);
        let app = spec("app", &[("db", Condition::Started)]);
        let web = spec("web", &[("app", Condition::Started)]);
        let none = BTreeMap::new();
        let all = |a: Phase, b: Phase, c: Phase| {
            BTreeMap::from([obs(&db, a), obs(&app, b), obs(&web, c)])
        };
        let r = || running(None, t);
        let stopping = Phase::Stopping {
            then: AfterStop::Remove,
            kill_at: Some(t + Duration::from_secs(5)),
        };
        // Shutdown: only web (nothing depends on it) is told to stop.
        assert_eq!(
            names(&plan(&none, &all(r(), r(), r()), t)),
            ["stop web Remove"]
        );
        // While web stops, app and db wait; once web is gone, app goes; then db.
        assert!(names(&plan(&none, &all(r(), r(), stopping), t)).is_empty());
        let without_web = BTreeMap::from([obs(&db, r()), obs(&app, r())]);
        assert_eq!(names(&plan(&none, &without_web, t)), ["stop app Remove"]);
        // A cycle (left by an old generation) does not hold every stop forever.
        let a = spec("a", &[("b", Condition::Started)]);
        let b = spec("b", &[("a", Condition::Started)]);
        let cyc = BTreeMap::from([obs(&a, r()), obs(&b, r())]);
        assert_eq!(
            names(&plan(&none, &cyc, t)),
            ["stop a Remove", "stop b Remove"]
        );
    }

    #[test]
    fn health_drives_probes_and_acts_on_unhealthy() {
        let t = now();
        let mut web = spec("web", &[]);
        let desired = |s: &Spec| BTreeMap::from([("web".to_string(), Some(Arc::new(s.clone())))]);
        let at = |status, next_probe: Instant, probing| Phase::Running {
            since: t,
            health: Some(Health {
                status,
                failures: 0,
                next_probe,
                probing,
            }),
        };
        let later = t + Duration::from_secs(2);
        // Not due: a wake-up at the probe time.
        let observed = BTreeMap::from([obs(&web, at(HealthStatus::Starting, later, false))]);
        let p = plan(&desired(&web), &observed, t);
        assert!(names(&p).is_empty());
        assert_eq!(p.wake_at, Some(later));
        // Due: probe; one in flight is not sent twice.
        let observed = BTreeMap::from([obs(&web, at(HealthStatus::Healthy, t, false))]);
        assert_eq!(names(&plan(&desired(&web), &observed, t)), ["probe web"]);
        let observed = BTreeMap::from([obs(&web, at(HealthStatus::Healthy, t, true))]);
        assert!(names(&plan(&desired(&web), &observed, t)).is_empty());
        // Unhealthy: restart (a failed run), stop for good, or only keep probing.
        for (on, want) in [
            (OnUnhealthy::Restart, "stop web Unhealthy"),
            (OnUnhealthy::Stop, "stop web GiveUp"),
            (OnUnhealthy::None, "probe web"),
        ] {
            if let Some(h) = web.health.as_mut() {
                h.on_unhealthy = on;
            }
            let observed = BTreeMap::from([obs(&web, at(HealthStatus::Unhealthy, t, false))]);
            assert_eq!(names(&plan(&desired(&web), &observed, t)), [want], "{on:?}");
        }
        // A run stopped as unhealthy is a failure for [restart] (on-failure restarts it).
        web.restart.policy = crate::manifest::RestartPolicy::OnFailure;
        let ended = Phase::Ended {
            end: RunEnd::Unhealthy,
            ran_for: Duration::from_secs(1),
        };
        let observed = BTreeMap::from([obs(&web, ended)]);
        let p = plan(&desired(&web), &observed, t);
        assert!(matches!(
            p.actions[..],
            [Action::ScheduleRestart { failures: 1, .. }]
        ));
    }
}
