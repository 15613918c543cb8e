//! The supervisor: the single owner of all workload state.
//!
//! One tokio task receives every input as a message — the desired set from the watcher, events
//! from instance drivers, stop timeouts, control requests, shutdown — updates its state, asks
//! the pure planner what to do (`reconcile::plan`) and carries the actions out through the
//! runtime. Nothing else mutates workload state.

mod adoption;
pub mod events;
pub mod netstate;
pub mod overrides;
mod requests;
pub mod rollouts;
pub mod seam;
pub mod workload;

#[cfg(test)]
mod tests;

use crate::api::{self, LastExit, Request, Response, State};
use crate::manifest::{Desired, NetworkMode, Signal, Spec};
use crate::pid1::power::{PowerLatch, PowerMsg};
use crate::reconcile::lifecycle::{Happened, Next};
use crate::reconcile::{self, Action, AfterStop, Observed, Phase, RunEnd};
use crate::runtime::Event;
use netstate::NetState;
use seam::WorkloadRuntime;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};
use workload::Workload;

/// Inputs of the supervisor.
#[derive(Debug)]
pub enum Msg {
    /// The whole desired set, re-read from the manifest directory.
    Desired(Desired),
    /// Stop everything, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// The supervisor's state. Create with [`Supervisor::new`], then [`Supervisor::run`] it.
pub struct Supervisor {
    runtime: Arc<dyn WorkloadRuntime>,
    desired: Desired,
    workloads: BTreeMap<String, Workload>,
    events_tx: mpsc::UnboundedSender<Event>,
    wake_at: Option<Instant>,
    shutdown: Vec<oneshot::Sender<()>>,
    shutting_down: bool,
    next_gen: u64,
    net: NetState,
    /// The watcher has delivered a desired set: before that, an empty `desired` means "not
    /// read yet", and admitting against it would drop every persisted lease.
    desired_loaded: bool,
    /// Where `superctl poweroff|reboot|halt` goes (PID-1 mode only), and the latch that
    /// says whether a power action was already decided (by a signal or a request).
    power: Option<(mpsc::Sender<PowerMsg>, PowerLatch)>,
    /// What each workload held back by its start order waits for (from the last plan).
    waiting: BTreeMap<String, Vec<String>>,
    /// Workloads `superctl stop` stopped.
    overrides: overrides::Overrides,
    /// Everything that happened, for `superctl events`.
    events: Arc<events::EventHub>,
    /// When it was created (the origin of `monotonic_ns` in stats).
    epoch: Instant,
    /// The last event needs no plan (see `on_event`).
    quiet: bool,
    /// The binary `superctl reexec` executes (None: this superd does not re-execute).
    reexec: Option<std::path::PathBuf>,
    /// A re-exec was asked for: it happens once no workload is starting or stopping, and
    /// not before this time (the answer to the request must reach superctl first).
    reexec_at: Option<Instant>,
    /// When this superd started (wall clock), and how many instances it adopted.
    started_wall: SystemTime,
    adopted: usize,
    /// Last good specs, trials and failed changes (health-gated rollback).
    rollouts: rollouts::Rollouts,
    /// `--rollout-bake`: the bake time of manifests without `[rollout] bake`.
    default_bake: std::time::Duration,
    /// Since when each `[watchdog] critical` workload has not run healthy.
    critical_bad: BTreeMap<String, Instant>,
}

/// The receiving ends the supervisor task drains.
pub struct Inbox {
    /// Watcher, timers, shutdown.
    pub msgs: mpsc::Receiver<Msg>,
    /// Instance drivers.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Control requests.
    pub api: mpsc::Receiver<(Request, oneshot::Sender<Response>)>,
}

impl Supervisor {
    /// Builds a supervisor; `events_tx` must be the sender of `inbox.events` (instances
    /// report there).
    pub fn new(runtime: Arc<dyn WorkloadRuntime>, events_tx: mpsc::UnboundedSender<Event>) -> Self {
        Supervisor {
            net: NetState::new(runtime.network().map(|n| &**n)),
            runtime,
            desired: Desired::new(),
            workloads: BTreeMap::new(),
            events_tx,
            wake_at: None,
            shutdown: Vec::new(),
            shutting_down: false,
            next_gen: 1,
            desired_loaded: false,
            power: None,
            waiting: BTreeMap::new(),
            overrides: overrides::Overrides::default(),
            events: Arc::new(events::EventHub::new()),
            epoch: now(),
            quiet: false,
            reexec: None,
            reexec_at: None,
            started_wall: SystemTime::now(),
            adopted: 0,
            rollouts: rollouts::Rollouts::default(),
            default_bake: std::time::Duration::ZERO,
            critical_bad: BTreeMap::new(),
        }
    }

    /// Trials every manifest change for `bake` unless its `[rollout] bake` says otherwise.
    pub fn with_rollout_bake(mut self, bake: std::time::Duration) -> Self {
        self.default_bake = bake;
        self
    }

    /// Lets `superctl reexec` execute `exe` (superd's own path) in place.
    pub fn with_reexec(mut self, exe: std::path::PathBuf) -> Self {
        self.reexec = Some(exe);
        self
    }

    /// Records events in `hub` (which the control server reads).
    pub fn with_events(mut self, hub: Arc<events::EventHub>) -> Self {
        self.events = hub;
        self
    }

    /// Keeps `superctl stop` overrides in `state_dir` (and reads those left there).
    pub fn with_state_dir(mut self, state_dir: std::path::PathBuf) -> Self {
        self.rollouts = rollouts::Rollouts::load(state_dir.join("rollout"));
        self.overrides = overrides::Overrides::load(state_dir);
        self
    }

    /// Accepts power requests (PID-1 mode): the first to claim `latch` is sent to `tx`.
    pub fn with_power(mut self, tx: mpsc::Sender<PowerMsg>, latch: PowerLatch) -> Self {
        self.power = Some((tx, latch));
        self
    }

    /// Runs until a shutdown request has stopped every workload.
    pub async fn run(mut self, mut inbox: Inbox) {
        // Before the image collector runs: adopted instances hold their layers.
        for a in self.runtime.adopt(&self.events_tx) {
            if matches!(a.run, seam::AdoptedRun::Running { .. }) {
                self.adopted += 1;
            }
            self.take_over(a);
        }
        self.resume_trials();
        if let Some(store) = self.runtime.images() {
            store.set_gc_trigger(crate::images::gc::spawn_collector(Arc::clone(store)));
        }
        loop {
            let wake = [self.wake_at, self.reexec_at, self.trial_deadline()]
                .into_iter()
                .flatten()
                .min()
                .map(tokio::time::Instant::from_std);
            let mut dirty = true;
            tokio::select! {
                Some(msg) = inbox.msgs.recv() => self.on_msg(msg),
                Some(ev) = inbox.events.recv() => {
                    // Everything the instances reported meanwhile, then one plan.
                    dirty = self.on_event(ev);
                    for _ in 0..256 {
                        match inbox.events.try_recv() {
                            Ok(ev) => dirty |= self.on_event(ev),
                            Err(_) => break,
                        }
                    }
                }
                Some((req, reply)) = inbox.api.recv() => {
                    let resp = self.on_request(req);
                    let _ = reply.send(resp);
                }
                () = sleep_until(wake), if wake.is_some() => {}
            }
            if dirty {
                self.reconcile();
            }
            self.bake_ticks();
            if self.reexec_at.is_some_and(|t| t <= now()) {
                self.try_reexec();
            }
            if self.shutting_down && self.workloads.is_empty() {
                for tx in self.shutdown.drain(..) {
                    let _ = tx.send(());
                }
                return;
            }
        }
    }

    /// Tells the image store which images the manifests name (a broken file counts with its
    /// workload's last good spec): the roots of its garbage collection.
    fn publish_image_roots(&self) {
        let Some(store) = self.runtime.images() else {
            return;
        };
        let roots = self
            .desired
            .iter()
            .filter_map(|(name, e)| match &e.spec {
                Ok(spec) => workload::image_of(spec),
                Err(_) => self
                    .workloads
                    .get(name)
                    .and_then(|w| workload::image_of(&w.spec)),
            })
            .chain(
                self.rollouts
                    .iter()
                    .filter_map(|(_, t)| t.good.as_ref().and_then(|(s, _)| workload::image_of(s))),
            )
            .collect::<Vec<String>>();
        // At start and whenever the set changes: what the manifests stopped naming may go.
        if !self.desired_loaded || store.roots() != roots {
            store.request_gc();
        }
        store.set_roots(roots);
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Desired(d) => {
                if !self.shutting_down {
                    for (name, entry) in &d {
                        if let Err(e) = &entry.spec {
                            let changed = self
                                .desired
                                .get(name)
                                .map(|old| old.spec.as_ref().err() != Some(e))
                                .unwrap_or(true);
                            if changed {
                                tracing::error!(workload = %name, "invalid manifest (the workload keeps its last good spec):\n{e}");
                                self.events
                                    .emit(api::EventKind::Manifest, Some(name), |ev| {
                                        ev.message = Some(e.to_string());
                                    });
                            }
                        } else if self.desired.get(name).is_some_and(|old| old.spec.is_err()) {
                            self.events
                                .emit(api::EventKind::Manifest, Some(name), |ev| {
                                    ev.message = Some("the manifest is valid again".into());
                                });
                        }
                    }
                    self.desired = d;
                    self.publish_image_roots();
                    self.desired_loaded = true;
                }
            }
            Msg::Shutdown(reply) => {
                self.shutting_down = true;
                self.shutdown.push(reply);
            }
        }
    }

    /// Takes in what an instance reported; says whether the planner must run (a probe answer
    /// that changed no verdict only moves the next wake-up).
    fn on_event(&mut self, ev: Event) -> bool {
        self.quiet = false;
        self.take_event(ev);
        !self.quiet
    }

    fn take_event(&mut self, ev: Event) {
        match ev {
            Event::Started {
                name,
                gen,
                pid,
                init_pid,
                at,
            } => {
                let Some(w) = self.workloads.get_mut(&name) else {
                    return;
                };
                if w.instance.as_ref().map(|i| i.gen()) != Some(gen) {
                    return;
                }
                w.pid = Some(pid);
                w.init_pid = init_pid;
                w.started_wall = Some(at);
                w.started_mono = Some(now());
                w.start_error = None;
                if w.phase == Phase::Starting {
                    w.advance(Happened::Running);
                    announce(&self.events, &name, w, None);
                }
            }
            Event::LogFailing { name, gen, message } => {
                if let Some(w) = self.workloads.get_mut(&name) {
                    if w.instance.as_ref().map(|i| i.gen()) == Some(gen) {
                        w.notice = Some(format!(
                            "its log cannot be written, output is being dropped: {message}"
                        ));
                    }
                }
            }
            Event::Probed {
                name,
                gen,
                ok,
                output,
            } => {
                let Some(w) = self.workloads.get_mut(&name) else {
                    return;
                };
                if w.instance.as_ref().map(|i| i.gen()) != Some(gen) {
                    return;
                }
                let before = w.health_status();
                w.advance(Happened::Probed { ok });
                w.probe_output = Some(output);
                w.probe_wall = Some(SystemTime::now());
                let after = w.health_status();
                if after == before {
                    if let Phase::Running {
                        health: Some(h), ..
                    } = w.phase
                    {
                        self.wake_at =
                            Some(self.wake_at.map_or(h.next_probe, |t| t.min(h.next_probe)));
                        self.quiet = true;
                        return;
                    }
                }
                if after != before {
                    let said = w.probe_output.as_deref().unwrap_or_default();
                    if let Some(s) = after {
                        self.events.emit(api::EventKind::Health, Some(&name), |e| {
                            e.health = Some(s.as_str().to_string());
                            e.message = Some(said.to_string());
                        });
                    }
                    match after {
                        Some(reconcile::health::HealthStatus::Unhealthy) => {
                            tracing::warn!("{name} unhealthy: {said}");
                            let (spec, what) =
                                (Arc::clone(&w.spec), format!("it turned unhealthy: {said}"));
                            self.run_failed(&name, &spec, || what);
                        }
                        Some(s) => tracing::info!("{name} {}", s.as_str()),
                        None => {}
                    }
                }
            }
            Event::Ended {
                name,
                gen,
                end,
                reason,
                error,
            } => {
                let Some(w) = self.workloads.get_mut(&name) else {
                    return;
                };
                if w.instance.as_ref().map(|i| i.gen()) != Some(gen) {
                    return;
                }
                if w.instance
                    .take()
                    .is_some_and(|i| i.image_digest().is_some())
                {
                    // Its layers are no longer mounted: those nothing else needs may go.
                    if let Some(store) = self.runtime.images() {
                        store.request_gc();
                    }
                }
                w.pid = None;
                w.init_pid = None;
                let ran_for = w
                    .started_mono
                    .take()
                    .map(|s| now().saturating_duration_since(s))
                    .unwrap_or_default();
                let reason = if w.escalated {
                    crate::api::ExitReason::StopTimeout
                } else {
                    w.stop_cause.unwrap_or(reason)
                };
                w.escalated = false;
                w.stop_cause = None;
                let exit = last_exit(end, reason);
                // An end superd did not ask for fails a trial.
                let trial_end = matches!(w.phase, Phase::Running { .. } | Phase::Starting)
                    .then(|| (Arc::clone(&w.spec), describe_exit(&exit, error.as_deref())));
                self.events.exit(&name, &exit, error.clone());
                w.last_exit = Some(exit);
                if let Some(e) = &error {
                    tracing::error!(workload = %name, "start failed: {e}");
                }
                w.start_error = error;
                if w.advance(Happened::Ended { end, ran_for }) == Next::Removed {
                    announce(&self.events, &name, w, Some("removed"));
                    self.workloads.remove(&name);
                    self.forget_override(&name);
                } else if w.phase == Phase::Failed {
                    // Stopped for good by its health check.
                    announce(&self.events, &name, w, None);
                }
                if let Some((spec, what)) = trial_end {
                    self.run_failed(&name, &spec, || what);
                }
            }
        }
    }

    /// Asks the planner and executes its actions until nothing is left to do now.
    fn reconcile(&mut self) {
        for _ in 0..8 {
            let now = now();
            let mut desired: BTreeMap<String, Option<Arc<Spec>>> = if self.shutting_down {
                BTreeMap::new()
            } else if !self.desired_loaded {
                return;
            } else {
                let network = self.runtime.network().map(|n| &**n);
                match self.fallbacks() {
                    None => self.net.admit(network, &self.desired, &self.workloads),
                    Some(d) => self.net.admit(network, &d, &self.workloads),
                }
            };
            self.aim(&mut desired);
            let observed: BTreeMap<String, Observed> = self
                .workloads
                .iter()
                .map(|(k, w)| {
                    (
                        k.clone(),
                        Observed {
                            spec: w.spec.clone(),
                            phase: w.phase,
                            failures: w.failures,
                        },
                    )
                })
                .collect();
            // A running workload whose changed spec needs an image the store lacks keeps
            // running while the image is fetched.
            let mut unready = std::collections::BTreeSet::new();
            for (name, w) in &mut self.workloads {
                let waiting = matches!(w.phase, Phase::Running { .. } | Phase::Starting)
                    && desired.get(name).and_then(|d| d.as_ref()).is_some_and(|s| {
                        // Cheap tests first: this runs for every workload on every pass.
                        matches!(s.rootfs, crate::manifest::Rootfs::Image { .. })
                            && !Arc::ptr_eq(s, &w.spec)
                            && **s != *w.spec
                            && !self.runtime.image_ready(s)
                    });
                if waiting {
                    unready.insert(name.clone());
                } else {
                    w.pending_image = None;
                }
            }
            let gates = reconcile::Gates {
                unready: &unready,
                held: self.overrides.held(),
            };
            let plan = reconcile::plan_with(&desired, &observed, &gates, now);
            self.wake_at = plan.wake_at;
            for (name, deps) in &plan.waiting {
                if self.waiting.get(name) != Some(deps) {
                    let text = format!("waiting for {}", deps.join(", "));
                    tracing::info!("{name} {text}");
                    self.events.emit(api::EventKind::State, Some(name), |e| {
                        e.state = Some(State::Waiting);
                        e.message = Some(text);
                    });
                }
            }
            self.waiting = plan.waiting;
            if plan.actions.is_empty() {
                return;
            }
            for action in plan.actions {
                self.execute(action, now);
            }
        }
    }

    /// The desired spec, if valid and admitted.
    fn desired_spec(&self, name: &str) -> Option<Arc<Spec>> {
        if self.net.rejection(name).is_some() {
            return None;
        }
        self.desired
            .get(name)
            .and_then(|e| e.spec.as_ref().ok().cloned())
    }

    fn execute(&mut self, action: Action, now: Instant) {
        match action {
            Action::Start { name, spec } => self.start(&name, spec),
            Action::Probe { name } => {
                let Some(w) = self.workloads.get_mut(&name) else {
                    return;
                };
                let (Some(check), Some(inst)) = (w.spec.health.clone(), &w.instance) else {
                    return;
                };
                inst.probe(&name, &check, self.events_tx.clone());
                w.advance(Happened::ProbeSent);
            }
            Action::Stop { name, then } => self.stop(&name, then),
            Action::UpdateLive { name } => self.update_live(&name),
            Action::Kill { name } => self.kill(&name),
            Action::Prepare { name } => {
                let Some(spec) = self.desired_spec(&name) else {
                    return;
                };
                let why = self.runtime.prepare_image(&spec);
                if let Some(w) = self.workloads.get_mut(&name) {
                    let text = format!(
                        "the changed manifest's image {} is not in the store yet ({why}); \
                         the running instance stays until it is",
                        workload::image_of(&spec).unwrap_or_default()
                    );
                    if w.pending_image.is_none() {
                        tracing::info!(workload = %name, "{text}");
                        self.events.emit(api::EventKind::Image, Some(&name), |e| {
                            e.message = Some(text.clone());
                        });
                    }
                    w.pending_image = Some(text);
                }
            }
            Action::ScheduleRestart { name, at, failures } => {
                if let Some(w) = self.workloads.get_mut(&name) {
                    w.advance(Happened::BackoffScheduled { until: at });
                    w.failures = failures;
                    w.next_restart_wall =
                        Some(SystemTime::now() + at.saturating_duration_since(now));
                    announce(&self.events, &name, w, None);
                }
            }
            Action::Finish { name, failed } => {
                if let Some(w) = self.workloads.get_mut(&name) {
                    w.advance(Happened::Finished { failed });
                    if failed {
                        w.start_error.get_or_insert_with(|| {
                            format!(
                                "gave up after {} failed restarts",
                                w.spec.restart.max_retries
                            )
                        });
                    }
                    announce(&self.events, &name, w, None);
                }
            }
            Action::Hold { name } => {
                if let Some(w) = self.workloads.get_mut(&name) {
                    w.advance(Happened::Held);
                    announce(&self.events, &name, w, None);
                }
            }
            Action::Forget { name } => {
                self.workloads.remove(&name);
                self.forget_override(&name);
                self.rollouts.forget(&name);
                tracing::info!("{name} removed");
            }
        }
    }

    fn start(&mut self, name: &str, spec: Arc<Spec>) {
        let address = match (self.desired_spec(name), self.workloads.get(name)) {
            (Some(_), _) => self.net.address(name),
            (None, Some(w)) => w.address,
            // A last good spec standing in for a broken manifest (see `fallbacks`).
            (None, None) => self.net.address(name),
        };
        let address = address.filter(|_| spec.network.mode == NetworkMode::Bridge);
        let gen = self.next_gen;
        self.next_gen += 1;
        let w = self
            .workloads
            .entry(name.to_string())
            .or_insert_with(|| Workload::new(spec.clone()));
        if *w.spec != *spec {
            w.failures = 0;
        }
        if w.ever_started {
            w.restarts += 1;
        }
        w.ever_started = true;
        w.spec = spec.clone();
        w.address = address;
        w.next_restart_wall = None;
        match self
            .runtime
            .start(&spec, gen, w.restarts, address, self.events_tx.clone())
        {
            Ok(inst) => {
                w.instance = Some(inst);
                w.advance(Happened::Spawned);
                announce(&self.events, name, w, None);
                // Trials only where rollback is on (or one is open): no hash, no track else.
                let bake = spec.rollout.bake.unwrap_or(self.default_bake);
                let open = self.rollouts.get(name).is_some_and(|t| t.trial.is_some());
                if !bake.is_zero() || open {
                    let track = self.rollouts.track(name);
                    let before = track.trial.clone();
                    track.started(&spec.hash(), bake, now());
                    if track.trial != before {
                        self.rollouts.save(name);
                    }
                }
            }
            Err(e) => {
                tracing::error!(workload = %name, "start failed: {e}");
                w.start_error = Some(e.to_string());
                w.last_exit = Some(last_exit(
                    RunEnd::StartFailed,
                    crate::api::ExitReason::StartFailed,
                ));
                w.advance(Happened::SpawnFailed);
                self.run_failed(name, &spec, || format!("it could not start: {e}"));
            }
        }
    }

    fn stop(&mut self, name: &str, then: AfterStop) {
        let Some(w) = self.workloads.get_mut(name) else {
            return;
        };
        let already = matches!(w.phase, Phase::Stopping { .. });
        let starting = w.phase == Phase::Starting;
        // The planner kills what is left at the stop timeout (a starting one is killed now,
        // and again then if anything remains).
        let timeout = w.spec.stop.timeout;
        w.advance(Happened::StopBegun { then, timeout });
        w.stop_cause = match then {
            AfterStop::Unhealthy | AfterStop::GiveUp => Some(crate::api::ExitReason::Unhealthy),
            AfterStop::Await => Some(crate::api::ExitReason::DependencyDown),
            AfterStop::Remove | AfterStop::Start | AfterStop::Hold => None,
        };
        if already {
            return;
        }
        if then == AfterStop::Unhealthy || then == AfterStop::GiveUp {
            let said = w.probe_output.as_deref().unwrap_or("no answer");
            let text = format!("stopped as unhealthy; the last probe said: {said}");
            tracing::warn!(workload = %name, "{text}");
            w.notice = Some(text);
        } else if then == AfterStop::Await {
            tracing::info!(workload = %name, "stopping until its dependencies are back");
        }
        announce(&self.events, name, w, None);
        let Some(inst) = &w.instance else { return };
        if starting {
            // The container is not built yet: nothing to shut down gracefully.
            let _ = inst.kill_all();
        } else {
            let sig = w
                .spec
                .stop
                .signal
                .or(inst.image_stop_signal())
                .unwrap_or_else(crate::manifest::Signal::term);
            inst.signal(sig.number);
        }
    }

    /// The stop timeout passed: every process of the instance is killed.
    fn kill(&mut self, name: &str) {
        let Some(w) = self.workloads.get_mut(name) else {
            return;
        };
        if !matches!(w.phase, Phase::Stopping { .. }) {
            return;
        }
        w.advance(Happened::Killed);
        let Some(inst) = &w.instance else { return };
        tracing::warn!(workload = %name, "did not stop within {:?}; killing every process in its cgroup", w.spec.stop.timeout);
        w.escalated = true;
        if let Err(e) = inst.kill_all() {
            tracing::error!(workload = %name, "killing: {e}");
        }
    }

    fn update_live(&mut self, name: &str) {
        let Some(new) = self.desired_spec(name) else {
            return;
        };
        let Some(w) = self.workloads.get_mut(name) else {
            return;
        };
        let result = match &w.instance {
            Some(inst) => inst.update(&new.resources),
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                tracing::info!(workload = %name, "applied [resources], [restart] and [stop] live");
                w.notice = None;
                // A change applied live is taken as it is: no trial, and it is the good spec
                // now if the one it changed was.
                let digest = w.instance.as_ref().and_then(|i| i.image_digest());
                let track = self.rollouts.track(name);
                if track.trial.is_none() && track.good.is_some() {
                    track.good = Some((rollouts::pinned(&new, digest.as_deref()), new.hash()));
                    self.rollouts.save(name);
                }
                w.spec = new;
            }
            Err(e) => {
                // The kernel keeps the old limit (v1 refuses to lower memory below usage):
                // the new spec can only take effect in a new instance. Say so, everywhere.
                let usage = w
                    .instance
                    .as_ref()
                    .and_then(|i| i.memory_bytes())
                    .map(|b| format!(" (the workload used {} MiB)", b >> 20))
                    .unwrap_or_default();
                let msg = format!(
                    "live update refused{usage}: {e}; restarted it to apply the new manifest"
                );
                tracing::error!(workload = %name, "{msg}");
                w.notice = Some(msg);
                self.stop(name, AfterStop::Start);
            }
        }
    }
}

/// The supervisor's clock: tokio's, so that a test's paused clock drives backoffs, stop
/// timeouts and uptimes (the planner takes it as `now`).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// "exited with code 1", "was killed by SIGSEGV", "could not start: …", for rollback notices.
fn describe_exit(exit: &LastExit, error: Option<&str>) -> String {
    match (exit.code, &exit.signal, error) {
        (_, _, Some(e)) => format!("it could not start: {e}"),
        (Some(c), _, _) => format!("it exited with code {c}"),
        (_, Some(s), _) => format!("it was killed by {s}"),
        _ => format!("it ended ({})", exit.reason.as_str()),
    }
}

fn last_exit(end: RunEnd, reason: crate::api::ExitReason) -> LastExit {
    match end {
        RunEnd::Exited(code) => LastExit {
            code: Some(code),
            signal: None,
            reason,
        },
        RunEnd::Signaled(sig) => LastExit {
            code: None,
            signal: Some(
                Signal::from_number(sig)
                    .map(|s| s.name.to_string())
                    .unwrap_or_else(|| format!("SIG{sig}")),
            ),
            reason,
        },
        RunEnd::StartFailed | RunEnd::Unhealthy | RunEnd::Lost => LastExit {
            code: None,
            signal: None,
            reason,
        },
    }
}

/// One log line per state change: `<name> <state> [code=<n>] [signal=<NAME>] [reason=<r>]`
/// (on the console of PID-1 mode, `superd: ` precedes every line).
fn announce(events: &events::EventHub, name: &str, w: &Workload, state: Option<&str>) {
    match state {
        None => events.state(name, w.state()),
        Some(word) => events.emit(api::EventKind::State, Some(name), |e| {
            e.message = Some(word.to_string());
        }),
    }
    let mut line = format!("{name} {}", state.unwrap_or(w.state().as_str()));
    if matches!(w.phase, Phase::Done | Phase::Failed | Phase::Backoff { .. }) || state.is_some() {
        if let Some(le) = &w.last_exit {
            if let Some(c) = le.code {
                line.push_str(&format!(" code={c}"));
            }
            if let Some(s) = &le.signal {
                line.push_str(&format!(" signal={s}"));
            }
            line.push_str(&format!(" reason={}", le.reason.as_str()));
        }
    }
    tracing::info!("{line}");
}
