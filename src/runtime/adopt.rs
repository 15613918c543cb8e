//! Re-adoption: a superd that starts after its predecessor ended (a crash, SIGKILL, the
//! re-exec of an upgrade) takes over the instances it left running instead of restarting them.
//!
//! Each instance record is judged from what the kernel shows now (`state::judge`): the shim's
//! PID with its recorded start time, the shim inside every one of its recorded cgroup
//! directories, the spec it was started with read back to the same hash. What passes keeps
//! running untouched — processes, cgroup, veth, addresses, port rules, log — and is watched
//! through a pidfd; its workload's exit status comes from the exit file its shim writes.
//! Whatever cannot be verified is killed and cleaned up, never left beside a duplicate.

use super::driver::{self, Cleanup, NetAttach};
use super::state::{self, InstanceRecord, Records};
use super::{cgroups, describe_status, exec, net, pidfd_signal, sys, Event, Instance, Runtime};
use crate::api::ExitReason;
use crate::manifest::{NetworkMode, Rootfs, Spec};
use crate::reconcile::RunEnd;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicI32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// A verified instance a predecessor left running, waiting for the supervisor to take it.
#[derive(Debug)]
pub(super) struct Adoptable {
    rec: InstanceRecord,
    spec: Spec,
    /// Opened before the start time was compared: it names the recorded shim for good.
    pidfd: OwnedFd,
}

/// An instance a predecessor started, taken over: still running, or ended while no superd
/// ran.
#[derive(Debug)]
pub struct Adopted {
    /// The spec it was started with.
    pub spec: Arc<Spec>,
    /// Restarts of the workload before this instance.
    pub restarts: u32,
    /// When the workload started running.
    pub started: SystemTime,
    /// Its bridge address.
    pub address: Option<Ipv4Addr>,
    /// Whether it runs.
    pub run: Run,
}

/// What became of an adopted instance.
#[derive(Debug)]
pub enum Run {
    /// It runs, watched by its driver from now on.
    Running {
        /// The handle on it.
        instance: Instance,
        /// Host PID of the workload.
        pid: u32,
        /// Host PID of its init shim (None with `init = false`).
        init_pid: Option<u32>,
    },
    /// It ended while no superd ran (everything it held is cleaned up already).
    Ended {
        /// Its generation.
        gen: u64,
        /// How.
        end: RunEnd,
        /// The reason shown.
        reason: ExitReason,
    },
}

/// A recorded instance that ended while no superd ran, for the supervisor's restart policy.
#[derive(Debug)]
pub(super) struct EndedRun {
    rec: InstanceRecord,
    spec: Spec,
    end: RunEnd,
    reason: ExitReason,
}

/// Sorts the records of `records` into instances to adopt and instances that are gone or
/// cannot be verified; the latter are killed (if running) and cleaned up. Returns the
/// adoptable ones and `name.gen` of each record cleared.
pub(super) fn triage(
    records: &Records,
    cgroups: &cgroups::CgroupManager,
) -> (Vec<Adoptable>, Vec<EndedRun>, Vec<String>) {
    let (recs, problems) = records.load();
    for p in problems {
        tracing::warn!("{p}");
    }
    let mut adoptable = Vec::new();
    let mut ended = Vec::new();
    let mut cleared = Vec::new();
    let boot = state::boot_id();
    for r in recs {
        if !r.boot_id.is_empty() && r.boot_id != boot {
            // The machine restarted: a cold start, not runs that ended by themselves. Its PID
            // and start time may belong to another process of this boot: never signalled.
            tracing::info!(workload = %r.name, generation = r.gen, "started before the machine restarted; cleaning up its record");
            if clear(records, &r) {
                cleared.push(format!("{}.{}", r.name, r.gen));
            }
            continue;
        }
        // The pidfd first, then the start time: a PID reused after that check cannot be hit.
        let pidfd = sys::pidfd_open(r.shim_pid);
        let start_now = pidfd
            .as_ref()
            .and_then(|_| state::process_start_time(r.shim_pid));
        let found = state::judge(&r, start_now, records.exit_status(&r.name, r.gen));
        if let state::Found::Ended(status) = found {
            // How it ended counts for its restart policy, if its spec can be read back.
            if let Ok(spec) = recorded_spec(&r) {
                let oom = cgroups
                    .open(&r.name, &r.cgroup_dirs)
                    .and_then(|c| c.oom_kills())
                    .unwrap_or(0)
                    > 0;
                let (end, reason) = match status {
                    Some(st) => driver::run_end(st, oom),
                    None => (RunEnd::Lost, ExitReason::Unknown),
                };
                ended.push(EndedRun {
                    rec: r.clone(),
                    spec,
                    end,
                    reason,
                });
            }
        }
        match found {
            state::Found::Running => match (verify(&r, cgroups), pidfd) {
                (Ok(spec), Some(pidfd)) => {
                    adoptable.push(Adoptable {
                        rec: r,
                        spec,
                        pidfd,
                    });
                    continue;
                }
                (Err(why), pidfd) => {
                    tracing::warn!(workload = %r.name, generation = r.gen, "left running by a superd that ended, but {why}: stopping it");
                    if let Some(fd) = &pidfd {
                        pidfd_signal(fd, libc::SIGKILL);
                    }
                }
                (Ok(_), None) => {}
            },
            state::Found::Ended(Some(status)) => tracing::warn!(
                workload = %r.name,
                generation = r.gen,
                "ended while no superd was running: {}",
                describe_status(status)
            ),
            state::Found::Ended(None) => tracing::warn!(
                workload = %r.name,
                generation = r.gen,
                "ended while no superd was running; it left no exit status"
            ),
        }
        if clear(records, &r) {
            cleared.push(format!("{}.{}", r.name, r.gen));
        }
    }
    (adoptable, ended, cleared)
}

/// The spec `r` records, read back to the same hash.
fn recorded_spec(r: &InstanceRecord) -> Result<Spec, String> {
    let json = r
        .spec
        .clone()
        .ok_or("its record holds no spec (an older superd wrote it)")?;
    let spec: Spec = serde_json::from_value(json)
        .map_err(|e| format!("its recorded spec is unreadable: {e}"))?;
    if spec.hash() != r.spec_hash {
        return Err("its recorded spec does not read back the same".into());
    }
    Ok(spec)
}

/// Why the running instance of `r` cannot be adopted, or the spec it runs.
fn verify(r: &InstanceRecord, cgroups: &cgroups::CgroupManager) -> Result<Spec, String> {
    if r.cgroup_v2 != cgroups.is_v2() {
        return Err("it was started on the other cgroup version".into());
    }
    if cgroups.open(&r.name, &r.cgroup_dirs).is_none() {
        return Err(format!(
            "its cgroup {} is not where this superd keeps {}",
            r.cgroup_dirs
                .first()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            r.name
        ));
    }
    for d in &r.cgroup_dirs {
        if !cgroups::pids_in(d).contains(&r.shim_pid) {
            return Err(format!(
                "its init (PID {}) is not in its cgroup {}",
                r.shim_pid,
                d.display()
            ));
        }
    }
    if r.workload_pid <= 0 || r.started_unix_ms == 0 {
        return Err("it had not finished starting".into());
    }
    recorded_spec(r)
}

/// Kills what is left in the cgroup directories of `r`, removes them and the record; says
/// whether the record is gone.
fn clear(records: &Records, r: &InstanceRecord) -> bool {
    match cgroups::remove_dirs(&r.cgroup_dirs, r.cgroup_v2, Duration::from_secs(5)) {
        Ok(()) => {
            let _ = records.remove(&r.name, r.gen);
            true
        }
        Err(e) => {
            tracing::warn!(workload = %r.name, "stopping what a previous superd left running: {e}");
            false
        }
    }
}

impl Runtime {
    /// The workloads whose adopted instances hold cgroups (kept by the stale sweep).
    pub(super) fn adoptable_names(list: &[Adoptable]) -> std::collections::BTreeSet<String> {
        list.iter().map(|a| a.rec.name.clone()).collect()
    }

    /// The veths, addresses and published ports of the bridged instances to adopt, which
    /// the network must keep (see [`net::Network::new`]).
    pub fn adoptable_links(&self) -> Vec<net::Kept> {
        self.adoptable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|a| a.spec.network.mode == NetworkMode::Bridge)
            .filter_map(|a| {
                Some(net::Kept {
                    workload: a.rec.name.clone(),
                    address: a.rec.address?,
                    ports: a.spec.network.ports.clone(),
                })
            })
            .collect()
    }

    /// Stops and cleans up the instances to adopt whose network is gone (`lost`, from
    /// [`net::Network::new`]): a workload cut off from its bridge is not kept.
    pub fn give_up(&self, lost: &[String]) {
        let mut list = self.adoptable.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|a| {
            if !lost.contains(&a.rec.name) {
                return true;
            }
            tracing::warn!(workload = %a.rec.name, generation = a.rec.gen, "left running by a superd that ended, but its veth is gone: stopping it");
            pidfd_signal(&a.pidfd, libc::SIGKILL);
            clear(&self.records, &a.rec);
            false
        });
    }

    /// Takes over every verified instance: its driver watches it from now on and reports its
    /// end on `events` like any other. Must be called inside a tokio runtime.
    pub fn adopt(&self, events: &mpsc::UnboundedSender<Event>) -> Vec<Adopted> {
        let list = std::mem::take(&mut *self.adoptable.lock().unwrap_or_else(|p| p.into_inner()));
        let ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|p| p.into_inner()));
        let mut adopted: Vec<Adopted> = ended
            .into_iter()
            .map(|e| Adopted {
                restarts: e.rec.restarts,
                started: SystemTime::UNIX_EPOCH + Duration::from_millis(e.rec.started_unix_ms),
                address: e.rec.address,
                spec: Arc::new(e.spec),
                run: Run::Ended {
                    gen: e.rec.gen,
                    end: e.end,
                    reason: e.reason,
                },
            })
            .collect();
        for a in list {
            match self.adopt_one(a, events) {
                Ok(x) => adopted.push(x),
                Err(refused) => {
                    let (rec, pidfd, why) = *refused;
                    tracing::warn!(workload = %rec.name, generation = rec.gen, "not adopted: {why}; stopping it");
                    pidfd_signal(&pidfd, libc::SIGKILL);
                    clear(&self.records, &rec);
                }
            }
        }
        adopted
    }

    /// Takes over one instance, or hands it back with why it cannot be.
    fn adopt_one(
        &self,
        a: Adoptable,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<Adopted, Box<(InstanceRecord, OwnedFd, String)>> {
        let Adoptable { rec, spec, pidfd } = a;
        let name = rec.name.clone();
        let Some(cgroup) = self.cgroups.open(&name, &rec.cgroup_dirs) else {
            return Err(Box::new((rec, pidfd, "its cgroup moved".into())));
        };
        let cgroup = Arc::new(cgroup);
        let bridged = spec.network.mode == NetworkMode::Bridge;
        let net = match (bridged, &self.network, rec.address) {
            (false, _, _) => None,
            (true, Some(network), Some(address)) => Some(NetAttach {
                network: network.clone(),
                address,
                ports: spec.network.ports.clone(),
            }),
            (true, _, _) => {
                return Err(Box::new((
                    rec,
                    pidfd,
                    "it is bridged and this superd has no bridge".into(),
                )))
            }
        };
        // Its network namespace, for the drain at its end. Opened by PID, so checked again:
        // the recorded shim still has that PID.
        let netns = if bridged {
            let ns = std::fs::File::open(format!("/proc/{}/ns/net", rec.shim_pid)).ok();
            if state::process_start_time(rec.shim_pid) != Some(rec.shim_start) {
                return Err(Box::new((
                    rec,
                    pidfd,
                    "it ended while it was being adopted".into(),
                )));
            }
            ns.map(OwnedFd::from)
        } else {
            None
        };
        let driver_pidfd = match pidfd.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                return Err(Box::new((
                    rec,
                    pidfd,
                    format!("duplicating its pidfd: {e}"),
                )))
            }
        };
        let layers: Vec<crate::images::digest::Digest> = rec
            .layers
            .iter()
            .filter_map(|l| crate::images::digest::Digest::parse(l).ok())
            .collect();
        let hold = self.images.as_ref().map(|s| s.hold(&layers));
        let exec_base = self.exec_base_for(&spec, &cgroup);
        if let Err(e) = &exec_base {
            tracing::warn!(workload = %name, "adopted without exec: {e}");
        }
        let cleanup = Cleanup {
            records: self.records.clone(),
            name: name.clone(),
            gen: rec.gen,
            ports_added: net.as_ref().is_some_and(|n| !n.ports.is_empty()),
            net,
            netns,
            cgroup: cgroup.clone(),
            events: events.clone(),
        };
        // After a re-exec its shim is still this process's child: the reaper has its status.
        let reaped = self.reaper.watch_child(rec.shim_pid);
        tokio::spawn(watch(
            driver_pidfd,
            reaped,
            cleanup,
            rec.shim_pid,
            rec.shim_start,
        ));
        let started = SystemTime::UNIX_EPOCH + Duration::from_millis(rec.started_unix_ms);
        let instance = Instance {
            gen: rec.gen,
            shim_pid: rec.shim_pid,
            pidfd,
            cgroup,
            workload_pid: Arc::new(AtomicI32::new(rec.workload_pid)),
            image_stop_signal: rec
                .image_stop_signal
                .and_then(crate::manifest::Signal::from_number),
            image_digest: rec.image_digest.clone(),
            own_netns: spec.network.mode != NetworkMode::Host,
            exec_base,
            _layers: hold,
        };
        tracing::info!(
            workload = %name,
            generation = rec.gen,
            pid = rec.workload_pid,
            "adopted the running instance a previous superd started"
        );
        Ok(Adopted {
            run: Run::Running {
                init_pid: spec.init.then_some(rec.shim_pid as u32),
                instance,
                pid: rec.workload_pid.max(0) as u32,
            },
            spec: Arc::new(spec),
            restarts: rec.restarts,
            started,
            address: rec.address,
        })
    }

    /// What `superctl exec` into an adopted instance starts from: the shim config its start
    /// made, made again (its image must still be in the store).
    fn exec_base_for(
        &self,
        spec: &Spec,
        cgroup: &cgroups::WorkloadCgroup,
    ) -> Result<Arc<exec::ExecBase>, String> {
        if matches!(spec.rootfs, Rootfs::Image { .. }) && !self.image_ready(spec) {
            return Err("its image is no longer in the store".into());
        }
        let (image, layers, _hold, _) = self.resolve_image(spec).map_err(|e| e.to_string())?;
        let run =
            crate::images::merge::run_plan(spec, image.as_ref()).map_err(|e| e.to_string())?;
        let seccomp = self
            .seccomp_for(spec, &run.user)
            .map_err(|e| e.to_string())?;
        let volumes = super::volumes::prepare(self.state.path(), &spec.volumes)
            .map_err(|e| format!("its volumes: {e}"))?;
        let own_devices = super::devices::resolve(&spec.security.devices)?;
        let cfg = self.shim_config(spec, run, layers, volumes, seccomp, &own_devices);
        Ok(Arc::new(exec::ExecBase {
            shim: Arc::new(cfg),
            memfd: Arc::clone(&self.memfd),
            reaper: self.reaper.clone(),
            cgroup_procs: cgroup
                .procs_files()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        }))
    }
}

/// Waits for an adopted instance's shim to end (its pidfd turns readable; no `waitpid`: it
/// is another process's child unless superd re-executed itself), then reports how its
/// workload ended, from the exit file (or, for a child, the status the reaper got), and
/// cleans up like any instance.
async fn watch(
    pidfd: OwnedFd,
    reaped: Option<tokio::sync::oneshot::Receiver<super::reaper::RawStatus>>,
    cleanup: Cleanup,
    pid: i32,
    start: u64,
) {
    // SAFETY: the AsyncFd owns the pidfd and keeps it open until it is dropped.
    match unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) } {
        Ok(fd) => {
            let _ = fd.readable().await;
        }
        Err(e) => {
            tracing::warn!(workload = %cleanup.name, "watching the adopted instance's pidfd: {e}; polling its PID");
            while state::process_start_time(pid) == Some(start) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let records = cleanup.records.clone();
    let (name, gen) = (cleanup.name.clone(), cleanup.gen);
    let mut status = tokio::task::spawn_blocking(move || records.exit_status(&name, gen))
        .await
        .ok()
        .flatten();
    if let (None, Some(rx)) = (status, reaped) {
        // A child's exit is reaped within moments of its pidfd turning readable.
        status = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .ok()
            .and_then(Result::ok);
    }
    let oom = cleanup.cgroup.oom_kills().unwrap_or(0) > 0;
    let (end, reason, error) = match status {
        Some(st) => {
            let (end, reason) = driver::run_end(st, oom);
            (end, reason, None)
        }
        None => {
            tracing::warn!(workload = %cleanup.name, "the adopted instance ended without leaving its exit status (without superd's init, a workload's status goes only to the process that started it)");
            (RunEnd::Lost, ExitReason::Unknown, None)
        }
    };
    cleanup.finish(end, reason, error).await;
}
