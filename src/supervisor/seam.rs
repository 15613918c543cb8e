//! The seam under the supervisor: what it needs from whatever runs workloads. The real
//! [`runtime::Runtime`](crate::runtime::Runtime) implements it against the kernel; the tests'
//! fake implements it in memory, so lifecycle logic runs without root, in milliseconds, on a
//! paused tokio clock.

use crate::manifest::{HealthCheck, Resources, Signal, Spec};
use crate::runtime::Event;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Starts workload instances and answers the supervisor's questions about images.
pub trait WorkloadRuntime: Send + Sync {
    /// Starts `spec` as instance `gen` (after `restarts` restarts of the workload); the
    /// instance reports `Started`, `LogFailing` and `Ended` on `events`. An error is a start
    /// that failed before anything ran.
    fn start(
        &self,
        spec: &Arc<Spec>,
        gen: u64,
        restarts: u32,
        address: Option<Ipv4Addr>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Box<dyn InstanceHandle>, String>;

    /// Takes over the instances a predecessor left running (once, at the supervisor's start);
    /// each reports its end on `events` like a started one.
    fn adopt(&self, _events: &mpsc::UnboundedSender<Event>) -> Vec<Adopted> {
        Vec::new()
    }

    /// Bridge networking, when configured.
    fn network(&self) -> Option<&Arc<crate::runtime::net::Network>> {
        None
    }

    /// The image store, when configured.
    fn images(&self) -> Option<&Arc<crate::images::store::Store>> {
        None
    }

    /// Whether `spec` could start now as far as its image goes.
    fn image_ready(&self, _spec: &Spec) -> bool {
        true
    }

    /// Starts fetching `spec`'s image; says how that goes.
    fn prepare_image(&self, _spec: &Spec) -> String {
        String::new()
    }
}

/// An instance a predecessor started, taken over.
#[derive(Debug)]
pub struct Adopted {
    /// The spec it runs.
    pub spec: Arc<Spec>,
    /// Restarts of the workload before it.
    pub restarts: u32,
    /// When it started running.
    pub started: std::time::SystemTime,
    /// Its bridge address.
    pub address: Option<Ipv4Addr>,
    /// Whether it still runs.
    pub run: AdoptedRun,
}

/// What became of an adopted instance.
#[derive(Debug)]
pub enum AdoptedRun {
    /// It runs.
    Running {
        /// The handle on it.
        instance: Box<dyn InstanceHandle>,
        /// Host PID of the workload.
        pid: u32,
        /// Host PID of its init shim.
        init_pid: Option<u32>,
    },
    /// It ended while no superd ran.
    Ended {
        /// Its generation.
        gen: u64,
        /// How.
        end: crate::reconcile::RunEnd,
        /// The reason shown.
        reason: crate::api::ExitReason,
    },
}

/// One running instance, owned by the supervisor; dropping it releases what it holds (the
/// process keeps running until it is stopped).
pub trait InstanceHandle: Send + Sync + std::fmt::Debug {
    /// Its generation.
    fn gen(&self) -> u64;
    /// Sends `sig` to the workload (through its init when it has one).
    fn signal(&self, sig: i32);
    /// Kills every process of the instance.
    fn kill_all(&self) -> Result<(), String>;
    /// Applies new `[resources]` to the running instance.
    fn update(&self, resources: &Resources) -> Result<(), String>;
    /// Memory in use now.
    fn memory_bytes(&self) -> Option<u64>;
    /// What its cgroup reports.
    fn stats(&self) -> Option<crate::api::CgroupStats> {
        None
    }
    /// Starts `req` inside the instance.
    fn exec(
        &self,
        _name: &str,
        _req: &crate::runtime::exec::ExecRequest,
        _fds: crate::api::ExecFds,
    ) -> Result<crate::runtime::exec::Running, String> {
        Err("this runtime cannot exec".into())
    }
    /// Starts `check`'s probe; its answer arrives on `events` as `Event::Probed` for `name`.
    fn probe(&self, name: &str, check: &HealthCheck, events: mpsc::UnboundedSender<Event>);
    /// The image's StopSignal, used when the manifest names none.
    fn image_stop_signal(&self) -> Option<Signal> {
        None
    }
    /// The manifest digest its image resolved to.
    fn image_digest(&self) -> Option<String> {
        None
    }
}

impl WorkloadRuntime for crate::runtime::Runtime {
    fn start(
        &self,
        spec: &Arc<Spec>,
        gen: u64,
        restarts: u32,
        address: Option<Ipv4Addr>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Box<dyn InstanceHandle>, String> {
        let spec: &Spec = spec;
        crate::runtime::Runtime::start(self, spec, gen, restarts, address, events)
            .map(|i| Box::new(i) as Box<dyn InstanceHandle>)
            .map_err(|e| e.to_string())
    }

    fn network(&self) -> Option<&Arc<crate::runtime::net::Network>> {
        crate::runtime::Runtime::network(self)
    }

    fn adopt(&self, events: &mpsc::UnboundedSender<Event>) -> Vec<Adopted> {
        crate::runtime::Runtime::adopt(self, events)
            .into_iter()
            .map(|a| Adopted {
                spec: a.spec,
                restarts: a.restarts,
                started: a.started,
                address: a.address,
                run: match a.run {
                    crate::runtime::AdoptedRun::Running {
                        instance,
                        pid,
                        init_pid,
                    } => AdoptedRun::Running {
                        instance: Box::new(instance),
                        pid,
                        init_pid,
                    },
                    crate::runtime::AdoptedRun::Ended { gen, end, reason } => {
                        AdoptedRun::Ended { gen, end, reason }
                    }
                },
            })
            .collect()
    }

    fn images(&self) -> Option<&Arc<crate::images::store::Store>> {
        crate::runtime::Runtime::images(self)
    }

    fn image_ready(&self, spec: &Spec) -> bool {
        crate::runtime::Runtime::image_ready(self, spec)
    }

    fn prepare_image(&self, spec: &Spec) -> String {
        crate::runtime::Runtime::prepare_image(self, spec)
    }
}

impl InstanceHandle for crate::runtime::Instance {
    fn gen(&self) -> u64 {
        self.gen
    }
    fn signal(&self, sig: i32) {
        crate::runtime::Instance::signal(self, sig);
    }
    fn kill_all(&self) -> Result<(), String> {
        crate::runtime::Instance::kill_all(self).map_err(|e| e.to_string())
    }
    fn update(&self, resources: &Resources) -> Result<(), String> {
        crate::runtime::Instance::update(self, resources).map_err(|e| e.to_string())
    }
    fn memory_bytes(&self) -> Option<u64> {
        crate::runtime::Instance::memory_bytes(self)
    }
    fn probe(&self, name: &str, check: &HealthCheck, events: mpsc::UnboundedSender<Event>) {
        crate::runtime::Instance::probe(self, name, check, events);
    }
    fn stats(&self) -> Option<crate::api::CgroupStats> {
        Some(crate::runtime::Instance::stats(self))
    }
    fn exec(
        &self,
        name: &str,
        req: &crate::runtime::exec::ExecRequest,
        fds: crate::api::ExecFds,
    ) -> Result<crate::runtime::exec::Running, String> {
        crate::runtime::Instance::exec(self, name, req, fds.stdio, fds.console)
    }
    fn image_stop_signal(&self) -> Option<Signal> {
        self.image_stop_signal
    }
    fn image_digest(&self) -> Option<String> {
        self.image_digest.clone()
    }
}
