//! One workload as the supervisor tracks it, and its conversion to the operator's view.

use crate::api::{LastExit, State, WorkloadStatus};
use crate::manifest::Spec;
use crate::reconcile::health::HealthStatus;
use crate::reconcile::lifecycle::{self, Happened, Next};
use crate::reconcile::{Phase, RunEnd};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Everything the supervisor knows about one workload. Only the supervisor task touches it.
#[derive(Debug)]
pub struct Workload {
    /// The spec being run (or last run).
    pub spec: Arc<Spec>,
    /// Lifecycle phase, as the planner sees it.
    pub phase: Phase,
    /// Consecutive runs that counted toward backoff.
    pub failures: u32,
    /// Restarts since the workload was first started.
    pub restarts: u32,
    /// The running instance, if any.
    pub instance: Option<Box<dyn super::seam::InstanceHandle>>,
    /// Host PID of the workload's main process.
    pub pid: Option<u32>,
    /// Host PID of the shim.
    pub init_pid: Option<u32>,
    /// When the current run started (wall clock, for status).
    pub started_wall: Option<SystemTime>,
    /// When the current run started (monotonic, for reset_after).
    pub started_mono: Option<Instant>,
    /// How the last run ended.
    pub last_exit: Option<LastExit>,
    /// The last start error (cleared once a run starts).
    pub start_error: Option<String>,
    /// The stop timeout fired and everything was SIGKILLed.
    pub escalated: bool,
    /// What superd last did on its own account (a refused live update turned into a
    /// restart), kept until the manifest changes again.
    pub notice: Option<String>,
    /// The changed manifest's image is being fetched; the running instance stays until it is
    /// there (shown as the notice).
    pub pending_image: Option<String>,
    /// When the next restart is due (wall clock, for status).
    pub next_restart_wall: Option<SystemTime>,
    /// At least one start was attempted (later starts count as restarts).
    pub ever_started: bool,
    /// The bridge address this workload holds (kept across restarts).
    pub address: Option<std::net::Ipv4Addr>,
    /// Why superd is stopping it on its own account (health, a dependency), for the exit
    /// reason.
    pub stop_cause: Option<crate::api::ExitReason>,
    /// What the last health probe said.
    pub probe_output: Option<String>,
    /// When the last health probe answered (wall clock, for status).
    pub probe_wall: Option<SystemTime>,
}

impl Workload {
    /// A workload that has not been started yet.
    pub fn new(spec: Arc<Spec>) -> Self {
        Workload {
            spec,
            phase: Phase::Ended {
                end: RunEnd::Exited(0),
                ran_for: std::time::Duration::ZERO,
            },
            failures: 0,
            restarts: 0,
            instance: None,
            pid: None,
            init_pid: None,
            started_wall: None,
            started_mono: None,
            last_exit: None,
            start_error: None,
            escalated: false,
            notice: None,
            pending_image: None,
            next_restart_wall: None,
            ever_started: false,
            address: None,
            stop_cause: None,
            probe_output: None,
            probe_wall: None,
        }
    }

    /// Moves the phase on by what happened (see [`lifecycle::next`]); says whether it was
    /// removed.
    pub fn advance(&mut self, what: Happened) -> Next {
        let next = lifecycle::next(self.phase, what, self.spec.health.as_ref(), super::now());
        if what == Happened::Spawned {
            self.probe_output = None;
            self.probe_wall = None;
        }
        if let Next::Phase(p) = next {
            self.phase = p;
        }
        next
    }

    /// The health verdict of the running instance, when it is checked.
    pub fn health_status(&self) -> Option<HealthStatus> {
        match self.phase {
            Phase::Running {
                health: Some(h), ..
            } => Some(h.status),
            _ => None,
        }
    }

    /// The state shown to operators.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Starting => State::Starting,
            Phase::Running { .. } => State::Running,
            Phase::Stopping { .. } => State::Stopping,
            Phase::Ended { .. } | Phase::Backoff { .. } => State::Backoff,
            Phase::Done => State::Exited,
            Phase::Failed => State::Failed,
            Phase::Held => State::Stopped,
        }
    }

    /// Builds the status row; `manifest_error` wins over a start error.
    pub fn status(
        &self,
        name: &str,
        manifest: Option<String>,
        manifest_error: Option<String>,
        waiting_for: Vec<String>,
    ) -> WorkloadStatus {
        let running = matches!(self.phase, Phase::Running { .. } | Phase::Stopping { .. });
        let now = SystemTime::now();
        WorkloadStatus {
            invalid_manifest: manifest_error.is_some(),
            name: name.to_string(),
            state: if waiting_for.is_empty() {
                self.state()
            } else {
                State::Waiting
            },
            pid: self.pid,
            init_pid: self.init_pid,
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            error: manifest_error.or_else(|| self.start_error.clone()),
            memory_bytes: self.instance.as_ref().and_then(|i| i.memory_bytes()),
            spec_hash: Some(self.spec.hash()),
            notice: self.pending_image.clone().or_else(|| self.notice.clone()),
            next_restart_at: match self.phase {
                Phase::Backoff { .. } => self.next_restart_wall.map(rfc3339),
                _ => None,
            },
            started_at: if running {
                self.started_wall.map(rfc3339)
            } else {
                None
            },
            uptime_seconds: if running {
                self.started_wall
                    .and_then(|s| now.duration_since(s).ok())
                    .map(|d| d.as_secs())
            } else {
                None
            },
            manifest,
            address: self.address.map(|a| a.to_string()),
            ports: self
                .spec
                .network
                .ports
                .iter()
                .map(|p| p.to_string())
                .collect(),
            image: image_of(&self.spec),
            image_digest: self.instance.as_ref().and_then(|i| i.image_digest()),
            volumes: self.spec.volumes.iter().map(|v| v.name.clone()).collect(),
            health: self.health_view(),
            waiting_for,
        }
    }
}

impl Workload {
    fn health_view(&self) -> Option<crate::api::HealthView> {
        let check = self.spec.health.as_ref()?;
        let Phase::Running {
            health: Some(h), ..
        } = self.phase
        else {
            return None;
        };
        let next = (!h.probing)
            .then(|| SystemTime::now() + h.next_probe.saturating_duration_since(super::now()));
        Some(crate::api::HealthView {
            status: h.status.as_str().to_string(),
            failures: h.failures,
            probe: check.probe.describe(),
            last_output: self.probe_output.clone(),
            last_probe_at: self.probe_wall.map(rfc3339),
            next_probe_at: next.map(rfc3339),
        })
    }
}

/// `[rootfs] image` as written, for an image workload.
pub fn image_of(spec: &crate::manifest::Spec) -> Option<String> {
    match &spec.rootfs {
        crate::manifest::Rootfs::Image { image, .. } => Some(image.written.clone()),
        _ => None,
    }
}

/// RFC 3339 UTC with millisecond precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
