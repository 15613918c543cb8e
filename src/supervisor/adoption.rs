//! Taking over what a predecessor left (adopted instances, see `runtime::adopt`) and
//! handing over to a successor (`superctl reexec`).

use super::{announce, last_exit, now, seam, Supervisor, Workload};
use crate::api::{self, State};
use crate::reconcile::lifecycle::Happened;
use crate::reconcile::Phase;
use std::time::SystemTime;

impl Supervisor {
    /// Re-executes superd once no workload is starting or stopping (an instance caught in
    /// either would be stopped and started again by the successor, or lose its restart).
    /// Returns only if the exec failed.
    pub(super) fn try_reexec(&mut self) {
        let busy = self
            .workloads
            .values()
            .any(|w| matches!(w.phase, Phase::Starting | Phase::Stopping { .. }));
        let Some(exe) = &self.reexec else { return };
        if self.shutting_down {
            self.reexec_at = None;
            return;
        }
        if busy {
            // Looked at again after the next event or in a moment.
            self.reexec_at = Some(now() + std::time::Duration::from_millis(100));
            return;
        }
        self.reexec_at = None;
        tracing::info!(
            "re-executing {} in place; {} workloads keep running",
            exe.display(),
            self.workloads
                .values()
                .filter(|w| w.instance.is_some())
                .count()
        );
        if let Err(e) = crate::notify::notify("RELOADING=1\nSTATUS=re-executing") {
            tracing::warn!("telling the service manager we re-execute: {e}");
        }
        let why = crate::runtime::reexec::exec_self(exe);
        tracing::error!("re-executing {}: {why}; this superd goes on", exe.display());
        let _ = crate::notify::notify("READY=1\nSTATUS=supervising workloads");
        self.events.emit(api::EventKind::State, None, |e| {
            e.message = Some(format!("re-exec failed: {why}"));
        });
    }

    /// Takes over an instance a predecessor left running: it runs on as it was (PID, restart
    /// count, uptime) until the plan against the manifests says otherwise.
    pub(super) fn take_over(&mut self, a: seam::Adopted) {
        let name = a.spec.name.to_string();
        let mut w = Workload::new(a.spec);
        let up = SystemTime::now()
            .duration_since(a.started)
            .unwrap_or_default();
        w.restarts = a.restarts;
        w.ever_started = true;
        w.address = a.address;
        match a.run {
            seam::AdoptedRun::Running {
                instance,
                pid,
                init_pid,
            } => {
                self.next_gen = self.next_gen.max(instance.gen() + 1);
                w.instance = Some(instance);
                w.pid = Some(pid);
                w.init_pid = init_pid;
                w.started_wall = Some(a.started);
                w.started_mono = Some(now().checked_sub(up).unwrap_or_else(now));
                w.phase = Phase::Starting;
                w.advance(Happened::Running);
                self.events.emit(api::EventKind::State, Some(&name), |e| {
                    e.state = Some(State::Running);
                    e.message = Some(format!("adopted (running for {}s)", up.as_secs()));
                });
                tracing::info!(
                    "{name} adopted pid={pid} restarts={} uptime={}s",
                    w.restarts,
                    up.as_secs()
                );
            }
            seam::AdoptedRun::Ended { gen, end, reason } => {
                // Its restart policy decides, as if this superd had seen it end.
                self.next_gen = self.next_gen.max(gen + 1);
                let exit = last_exit(end, reason);
                self.events.exit(&name, &exit, None);
                w.last_exit = Some(exit);
                w.phase = Phase::Ended { end, ran_for: up };
                announce(&self.events, &name, &w, Some("ended while no superd ran"));
            }
        }
        self.workloads.insert(name, w);
    }
}
