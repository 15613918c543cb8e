//! Health-gated rollback of manifest changes, as pure bookkeeping per workload.
//!
//! A spec that starts and is not the workload's last good one is on trial for its `bake`
//! time. If its run ends (a crash, any exit superd did not ask for) or it turns unhealthy
//! before then, the change has failed: the planner is given the last good spec instead of the
//! manifest's until the manifest changes again (a later edit is tried afresh). A trial that
//! lasts (and is healthy, when the workload has a check) makes its spec the good one.

use crate::manifest::Spec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One workload's rollout state.
#[derive(Debug, Clone, Default)]
pub struct Track {
    /// The last spec that lasted its bake time (its image pinned to the digest it ran), and
    /// its hash.
    pub good: Option<(Arc<Spec>, String)>,
    /// The spec on trial now.
    pub trial: Option<Trial>,
    /// The change that failed: its spec hash and why. Kept until the manifest changes.
    pub failed: Option<Failure>,
}

/// A spec on trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// Its hash.
    pub hash: String,
    /// It is good if it runs (healthy) until then.
    pub until: Instant,
}

/// A change that failed its trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The hash of the spec that failed.
    pub hash: String,
    /// What happened, for the operator.
    pub reason: String,
}

/// What a step of the bookkeeping decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Nothing,
    /// The spec on trial is good now.
    Good,
    /// The spec on trial failed: the last good one runs instead.
    RolledBack(String),
}

impl Track {
    /// The spec the planner aims at for the manifest's `desired` (whose hash is
    /// `desired_hash`): the last good one while `desired` is the change that failed.
    pub fn aim(&self, desired: &Arc<Spec>, desired_hash: impl FnOnce() -> String) -> Arc<Spec> {
        match (&self.failed, &self.good) {
            (Some(f), Some((good, _))) if f.hash == desired_hash() => Arc::clone(good),
            _ => Arc::clone(desired),
        }
    }

    /// A run of the spec `hash` started at `now`: a trial begins unless it is the good spec
    /// or `bake` is zero. Without a good spec yet, the trial only decides when the first one
    /// is good (there is nothing to go back to).
    pub fn started(&mut self, hash: &str, bake: Duration, now: Instant) {
        let good = self.good.as_ref().map(|(_, h)| h.as_str());
        self.trial = (!bake.is_zero() && good != Some(hash)).then(|| Trial {
            hash: hash.to_string(),
            until: now + bake,
        });
    }

    /// The run of spec `hash` ended by itself or turned unhealthy at `now` (`what` says
    /// how): during its trial, with a good spec to go back to, the change failed.
    pub fn run_failed(&mut self, hash: &str, what: &str, now: Instant) -> Verdict {
        match (&self.trial, &self.good) {
            (Some(t), Some((_, good))) if t.hash == hash && now < t.until && good != hash => {
                self.trial = None;
                self.failed = Some(Failure {
                    hash: hash.to_string(),
                    reason: what.to_string(),
                });
                Verdict::RolledBack(what.to_string())
            }
            _ => Verdict::Nothing,
        }
    }

    /// Time passed: a trial of `running` (the spec of the instance that runs now, `healthy`
    /// when its check passes or it has none) that lasted until `now` makes it good; `pinned`
    /// is that spec with its image pinned to the digest it runs.
    pub fn tick(
        &mut self,
        running: &str,
        healthy: bool,
        now: Instant,
        pinned: impl FnOnce() -> Arc<Spec>,
    ) -> Verdict {
        match &self.trial {
            Some(t) if t.hash == running && now >= t.until && healthy => {
                self.good = Some((pinned(), t.hash.clone()));
                self.trial = None;
                self.failed = None;
                Verdict::Good
            }
            _ => Verdict::Nothing,
        }
    }

    /// The manifest now says `desired_hash`: a failure of another spec is forgotten (a later
    /// edit is tried afresh).
    pub fn desired(&mut self, desired_hash: &str) {
        if self.failed.as_ref().is_some_and(|f| f.hash != desired_hash) {
            self.failed = None;
        }
    }

    /// When the trial ends, for the supervisor's next wake-up.
    pub fn deadline(&self) -> Option<Instant> {
        self.trial.as_ref().map(|t| t.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Name;

    fn spec(cmd: &str) -> Arc<Spec> {
        Arc::new(Spec::with_defaults(
            Name::new("web").expect("a name"),
            vec![cmd.to_string()],
        ))
    }

    #[test]
    fn a_change_that_crashes_during_its_bake_goes_back_to_the_last_good_spec() {
        let t0 = Instant::now();
        let bake = Duration::from_secs(30);
        let (v1, v2) = (spec("v1"), spec("v2"));
        let mut t = Track::default();
        // The first spec becomes good once it has lasted.
        t.started("h1", bake, t0);
        assert_eq!(
            t.run_failed("h1", "exit 1", t0),
            Verdict::Nothing,
            "nothing to go back to"
        );
        t.started("h1", bake, t0);
        assert_eq!(t.tick("h1", true, t0 + bake, || v1.clone()), Verdict::Good);
        assert_eq!(t.good.as_ref().map(|g| g.1.as_str()), Some("h1"));
        // Its own restarts are no trial.
        t.started("h1", bake, t0 + bake);
        assert_eq!(t.trial, None);
        // A change crashes within its bake: the planner gets v1 while the manifest says v2.
        t.started("h2", bake, t0 + bake);
        assert_eq!(
            t.run_failed(
                "h2",
                "exited with code 1",
                t0 + bake + Duration::from_secs(5)
            ),
            Verdict::RolledBack("exited with code 1".into())
        );
        assert!(Arc::ptr_eq(&t.aim(&v2, || "h2".into()), &v1));
        // The same file again changes nothing; another edit is tried afresh.
        t.desired("h2");
        assert!(Arc::ptr_eq(&t.aim(&v2, || "h2".into()), &v1));
        t.desired("h3");
        let v3 = spec("v3");
        assert!(Arc::ptr_eq(&t.aim(&v3, || "h3".into()), &v3));
    }

    #[test]
    fn a_trial_decides_only_within_its_bake_and_when_healthy() {
        let t0 = Instant::now();
        let bake = Duration::from_secs(10);
        let v1 = spec("v1");
        let mut t = Track {
            good: Some((v1.clone(), "h1".into())),
            ..Track::default()
        };
        t.started("h2", bake, t0);
        assert_eq!(t.deadline(), Some(t0 + bake));
        // Not yet, and not while unhealthy or still starting.
        assert_eq!(
            t.tick("h2", true, t0 + Duration::from_secs(9), || v1.clone()),
            Verdict::Nothing
        );
        assert_eq!(
            t.tick("h2", false, t0 + bake, || v1.clone()),
            Verdict::Nothing
        );
        // A failure after the bake is an ordinary failure: no rollback.
        assert_eq!(t.run_failed("h2", "exit 1", t0 + bake), Verdict::Nothing);
        // Without a bake time there is no trial.
        t.started("h3", Duration::ZERO, t0);
        assert_eq!(t.trial, None);
    }
}
