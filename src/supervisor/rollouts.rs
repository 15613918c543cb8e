//! Every workload's rollout state (see [`reconcile::rollout`](crate::reconcile::rollout)),
//! kept across superd restarts and reboots in `<state-dir>/rollout/<name>.json`, each written
//! atomically (tmp + fsync + rename + fsync of the directory): the last good spec (its image
//! pinned by digest, so that going back needs no network), the change that failed, and the
//! spec on trial when superd last stopped.

use crate::manifest::{Rootfs, Spec};
use crate::reconcile::rollout::{Failure, Track};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The largest rollout file read back.
const MAX_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    #[serde(default)]
    good: Option<serde_json::Value>,
    #[serde(default)]
    good_hash: Option<String>,
    #[serde(default)]
    failed: Option<SavedFailure>,
    #[serde(default)]
    trying: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedFailure {
    hash: String,
    reason: String,
}

/// The rollout state of every workload, and where it is kept.
#[derive(Debug, Default)]
pub struct Rollouts {
    dir: Option<PathBuf>,
    tracks: BTreeMap<String, Track>,
    /// Specs that were on trial when the last superd stopped, by workload.
    interrupted: BTreeMap<String, String>,
}

impl Rollouts {
    /// Reads what `dir` holds (a file that cannot be read is reported and ignored).
    pub fn load(dir: PathBuf) -> Rollouts {
        let mut r = Rollouts {
            dir: Some(dir.clone()),
            ..Rollouts::default()
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return r;
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".json").filter(|n| !n.starts_with('.')) else {
                continue;
            };
            let saved = crate::runtime::sys::read_regular(&e.path(), MAX_FILE_BYTES, true)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Saved>(&b).map_err(|e| e.to_string()));
            let saved = match saved {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(workload = %name, "its rollout state {} is unreadable ({err}); it has no last good spec", e.path().display());
                    continue;
                }
            };
            let good = match (saved.good, saved.good_hash) {
                (Some(v), Some(h)) => match serde_json::from_value::<Spec>(v) {
                    Ok(s) => Some((Arc::new(s), h)),
                    Err(err) => {
                        tracing::warn!(workload = %name, "its last good spec is unreadable ({err})");
                        None
                    }
                },
                _ => None,
            };
            let track = Track {
                good,
                trial: None,
                failed: saved.failed.map(|f| Failure {
                    hash: f.hash,
                    reason: f.reason,
                }),
            };
            if let Some(h) = saved.trying {
                r.interrupted.insert(name.to_string(), h);
            }
            r.tracks.insert(name.to_string(), track);
        }
        r
    }

    /// The track of `name`, created empty.
    pub fn track(&mut self, name: &str) -> &mut Track {
        self.tracks.entry(name.to_string()).or_default()
    }

    /// The track of `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<&Track> {
        self.tracks.get(name)
    }

    /// Every track.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Track)> {
        self.tracks.iter()
    }

    /// Writes `name`'s state (logs a failure: the state in memory stays right, only a
    /// restart would miss it).
    pub fn save(&self, name: &str) {
        let (Some(dir), Some(t)) = (&self.dir, self.tracks.get(name)) else {
            return;
        };
        let saved = Saved {
            good: t
                .good
                .as_ref()
                .and_then(|(s, _)| serde_json::to_value(&**s).ok()),
            good_hash: t.good.as_ref().map(|(_, h)| h.clone()),
            failed: t.failed.as_ref().map(|f| SavedFailure {
                hash: f.hash.clone(),
                reason: f.reason.clone(),
            }),
            trying: t.trial.as_ref().map(|t| t.hash.clone()),
        };
        let res = std::fs::create_dir_all(dir).and_then(|()| {
            let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
            crate::durable::write_atomic(dir, &format!("{name}.json"), &bytes, 0o600)
        });
        if let Err(e) = res {
            tracing::warn!(workload = %name, "saving its rollout state: {e}; a restart of superd would not know its last good spec");
        }
    }

    /// A removed workload's state goes with it.
    pub fn forget(&mut self, name: &str) {
        self.tracks.remove(name);
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(format!("{name}.json")));
        }
    }
}

/// `spec` with its image pinned to `digest` (what the instance ran), so that going back to it
/// needs no registry and no tag can move under it.
pub fn pinned(spec: &Arc<Spec>, digest: Option<&str>) -> Arc<Spec> {
    let (Rootfs::Image { image, .. }, Some(d)) = (&spec.rootfs, digest) else {
        return Arc::clone(spec);
    };
    if image.digest.as_deref() == Some(d) {
        return Arc::clone(spec);
    }
    let mut s = (**spec).clone();
    if let Rootfs::Image { image, .. } = &mut s.rootfs {
        image.written = format!("{}@{d}", image.name);
        image.digest = Some(d.to_string());
    }
    Arc::new(s)
}

impl super::Supervisor {
    /// How long `spec` is on trial after a change: its `[rollout] bake`, else the daemon's.
    pub(super) fn bake_of(&self, spec: &Spec) -> std::time::Duration {
        spec.rollout.bake.unwrap_or(self.default_bake)
    }

    /// After the adoption: a spec on trial when the last superd stopped goes on with its
    /// trial (from now) if its instance was adopted running; otherwise (a reboot, a start
    /// that never finished) the change failed, and the last good spec runs.
    pub(super) fn resume_trials(&mut self) {
        for (name, hash) in std::mem::take(&mut self.rollouts.interrupted) {
            let running = self
                .workloads
                .get(&name)
                .filter(|w| w.instance.is_some())
                .map(|w| (w.spec.hash(), self.bake_of(&w.spec)));
            let track = self.rollouts.track(&name);
            match running {
                Some((h, bake)) if h == hash => track.started(&hash, bake, super::now()),
                _ if track.good.as_ref().is_some_and(|(_, g)| *g != hash) => {
                    let reason = "superd (or the machine) restarted before the change had run \
                                  for its bake time"
                        .to_string();
                    tracing::warn!(workload = %name, "{reason}: the last good spec runs");
                    track.failed = Some(Failure { hash, reason });
                }
                _ => {}
            }
            self.rollouts.save(&name);
        }
    }

    /// The desired set with the last good spec standing in for each manifest that is broken
    /// while nothing of it runs (an edit before a reboot), as a running workload keeps its
    /// spec through a broken edit; `None` when there is none (the common case: no copy).
    pub(super) fn fallbacks(&self) -> Option<crate::manifest::Desired> {
        let broken: Vec<(&String, &Arc<Spec>)> = self
            .desired
            .iter()
            .filter(|(name, e)| e.spec.is_err() && !self.workloads.contains_key(*name))
            .filter_map(|(name, _)| {
                let good = self.rollouts.tracks.get(name)?.good.as_ref()?;
                Some((name, &good.0))
            })
            .collect();
        if broken.is_empty() {
            return None;
        }
        let mut d = self.desired.clone();
        for (name, good) in broken {
            if let Some(e) = d.get_mut(name) {
                tracing::info!(workload = %name, "its manifest is invalid: starting its last good spec");
                e.spec = Ok(Arc::clone(good));
            }
        }
        Some(d)
    }

    /// Gives the planner the last good spec of each workload whose manifest is the change
    /// that failed, and forgets the failure once the manifest says something else.
    pub(super) fn aim(&mut self, desired: &mut BTreeMap<String, Option<Arc<Spec>>>) {
        for (name, spec) in desired.iter_mut() {
            let Some(s) = spec else { continue };
            let Some(track) = self.rollouts.tracks.get_mut(name) else {
                continue;
            };
            let Some(failed) = &track.failed else {
                continue;
            };
            let hash = s.hash();
            if failed.hash != hash {
                tracing::info!(workload = %name, "the manifest changed again: trying it");
                track.failed = None;
                self.rollouts.save(name);
                if let Some(w) = self.workloads.get_mut(name) {
                    w.notice = None;
                }
                continue;
            }
            let reason = failed.reason.clone();
            let aimed = track.aim(s, || hash.clone());
            if Arc::ptr_eq(&aimed, s) {
                continue;
            }
            *spec = Some(aimed);
            let file = self
                .desired
                .get(name)
                .map(|e| e.file.display().to_string())
                .unwrap_or_default();
            if let Some(w) = self.workloads.get_mut(name) {
                w.notice = Some(format!(
                    "running the previous spec: the change at {file} (sha256 {}) failed: {reason}",
                    &hash[..12.min(hash.len())]
                ));
            }
        }
    }

    /// A run of `name`'s `spec` failed (`what` says how): during its trial, the change is
    /// rolled back, and said everywhere. Without a trial (rollback off) it costs a lookup.
    pub(super) fn run_failed(&mut self, name: &str, spec: &Spec, what: impl FnOnce() -> String) {
        let Some(track) = self
            .rollouts
            .tracks
            .get_mut(name)
            .filter(|t| t.trial.is_some())
        else {
            return;
        };
        let hash = spec.hash();
        let hash = hash.as_str();
        let verdict = track.run_failed(hash, &what(), super::now());
        if let crate::reconcile::rollout::Verdict::RolledBack(reason) = verdict {
            self.rollouts.save(name);
            let file = self
                .desired
                .get(name)
                .map(|e| e.file.display().to_string())
                .unwrap_or_default();
            let text = format!(
                "the change at {file} (sha256 {}) failed within its bake time: {reason}; \
                 going back to the last good spec",
                &hash[..12.min(hash.len())]
            );
            tracing::warn!("{name} rolled back: {text}");
            self.events
                .emit(crate::api::EventKind::Rollout, Some(name), |e| {
                    e.message = Some(text.clone());
                });
        }
    }

    /// Trials that lasted make their spec good (with its image pinned).
    pub(super) fn bake_ticks(&mut self) {
        let now = super::now();
        let due: Vec<String> = self
            .rollouts
            .iter()
            .filter(|(_, t)| t.trial.as_ref().is_some_and(|t| t.until <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let Some(w) = self.workloads.get(&name) else {
                continue;
            };
            let (crate::reconcile::Phase::Running { .. }, Some(inst)) = (w.phase, &w.instance)
            else {
                continue;
            };
            let healthy = match w.health_status() {
                None => true,
                Some(h) => h == crate::reconcile::health::HealthStatus::Healthy,
            };
            let (hash, spec, digest) = (w.spec.hash(), w.spec.clone(), inst.image_digest());
            let track = self.rollouts.track(&name);
            let verdict = track.tick(&hash, healthy, now, || pinned(&spec, digest.as_deref()));
            if verdict == crate::reconcile::rollout::Verdict::Good {
                tracing::info!(workload = %name, "ran for its bake time: its spec is the last good one now");
                self.rollouts.save(&name);
                self.events
                    .emit(crate::api::EventKind::Rollout, Some(&name), |e| {
                        e.message =
                            Some("the spec lasted its bake time: it is the last good one".into());
                    });
            }
        }
    }

    /// When the next trial ends.
    pub(super) fn trial_deadline(&self) -> Option<std::time::Instant> {
        self.rollouts.iter().filter_map(|(_, t)| t.deadline()).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ImageRef, Name, Pull, Writable};

    #[test]
    fn a_good_image_spec_is_pinned_to_the_digest_it_ran() {
        let mut s = Spec::with_defaults(Name::new("web").expect("a name"), Vec::new());
        s.rootfs = Rootfs::Image {
            image: ImageRef {
                written: "nginx:1.27".into(),
                name: "docker.io/library/nginx:1.27".into(),
                digest: None,
            },
            writable: Writable::Tmpfs,
            pull: Pull::Missing,
        };
        let s = Arc::new(s);
        let d = format!("sha256:{}", "ab".repeat(32));
        let p = pinned(&s, Some(&d));
        let Rootfs::Image { image, .. } = &p.rootfs else {
            panic!("not an image spec");
        };
        let parsed = crate::images::reference::ImageName::parse(&image.written)
            .expect("the pinned reference parses");
        assert_eq!(parsed.digest.map(|d| d.to_string()), Some(d.clone()));
        assert_eq!(parsed.name, "docker.io/library/nginx:1.27");
        // Without a digest (no image, or none known), the spec stays as it is.
        assert!(Arc::ptr_eq(&pinned(&s, None), &s));
    }
}
