//! Every side effect of running a workload: cgroups, bridge networking (`net`), the spawn path,
//! the in-container init shim, rootfs construction and the single reaper.
//!
//! The supervisor calls [`Runtime::start`] and receives [`Event`]s from a small per-instance
//! driver task; it never blocks on the kernel itself.

// The runtime is where superd calls the kernel: syscalls without safe wrappers, the spawn
// path, fds handed between processes. Every unsafe block says why it is sound.
#![allow(unsafe_code)]

mod adopt;
pub mod cgroups;
pub mod cgstats;
pub mod devices;
pub mod devices_bpf;
mod driver;
pub mod exec;
pub mod logfmt;
pub mod net;
pub mod probe;
pub mod reaper;
pub mod reexec;
pub mod seccomp;
pub mod shim;
pub mod spawn;
pub mod state;
pub mod sync;
pub mod sys;
pub mod volumes;

use crate::api::ExitReason;
use crate::manifest::{
    IdOrName, NetworkMode, Resources, RlimitKind, RlimitSetting, Rootfs, Seccomp, Spec, Writable,
};
use crate::reconcile::RunEnd;
pub use adopt::{Adopted, Run as AdoptedRun};
use cgroups::{CgroupError, CgroupManager, WorkloadCgroup};
use driver::{Driver, NetAttach};
use reaper::Reaper;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use sync::{IdOrNameCfg, MountCfg, ShimConfig, UserCfg};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// Paths and handles the runtime needs; built once at daemon start.
#[derive(Debug)]
pub struct Runtime {
    memfd: Arc<OwnedFd>,
    reaper: Reaper,
    cgroups: CgroupManager,
    log_dir: PathBuf,
    scratch_dir: PathBuf,
    network: Option<Arc<net::Network>>,
    state: state::StateDir,
    records: state::Records,
    /// The default seccomp profile, compiled once.
    default_seccomp: Arc<Vec<seccomp::WireProgram>>,
    /// Host paths a host-root workload must not see (see [`Runtime::hide`]).
    hidden: Vec<String>,
    /// The log bounds of workloads whose manifest sets none.
    log_limits: sync::LogCfg,
    /// The log directory, handed to every shim (it rotates through it).
    log_dir_fd: OwnedFd,
    /// The image store, for `[rootfs] image` workloads.
    images: Option<Arc<crate::images::store::Store>>,
    /// Pulls missing images (`pull = "missing"`).
    #[cfg(feature = "registry")]
    puller: Option<Arc<crate::images::pull::Puller>>,
    /// Verified instances a predecessor left running, until the supervisor adopts them.
    adoptable: std::sync::Mutex<Vec<adopt::Adoptable>>,
    /// Instances that ended while no superd ran, for the supervisor's restart policy.
    ended: std::sync::Mutex<Vec<adopt::EndedRun>>,
    /// This boot's id, recorded with every instance.
    boot_id: String,
}

/// Default bounds of a workload's log: 3 files of 10 MiB (`--log-max-size`, `--log-max-files`).
pub const DEFAULT_LOG_LIMITS: sync::LogCfg = sync::LogCfg {
    max_size: 10 << 20,
    max_files: 3,
};

/// What a workload on the host root never sees unless a bind mount brings it back (systemd's
/// ProtectHome, and the password hashes).
pub const HOST_SECRETS: &[&str] = &[
    "/root",
    "/home",
    "/run/user",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
];

/// An image workload's config, layer directories (top first) and the hold on its layers.
type ResolvedImage = (
    Option<crate::images::image::RunConfig>,
    Vec<String>,
    Option<crate::images::gc::Hold>,
    Option<String>,
);

/// A start that failed before the shim ran.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Creating or limiting the cgroup failed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    /// Opening the log file failed.
    #[error("opening log file {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Cloning the container process failed.
    #[error("{0}")]
    Spawn(#[from] spawn::SpawnError),
    /// Registering the sync socket with tokio failed.
    #[error("registering the sync socket: {0}")]
    Register(std::io::Error),
    /// A device the manifest names is missing or not a device.
    #[error("{0}")]
    Devices(String),
    /// The seccomp profile could not be read or compiled.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// A bridged workload without bridge networking or an address.
    #[error("bridge networking is not available: {0}")]
    Network(String),
    /// The image is missing, or its config does not make a runnable process.
    #[error("image: {0}")]
    Image(String),
    /// A named volume could not be created.
    #[error("preparing the volumes: {0}")]
    Volume(std::io::Error),
}

/// Something that happened to a running instance.
#[derive(Debug)]
pub enum Event {
    /// The workload's main process runs.
    Started {
        /// Workload name.
        name: String,
        /// Instance generation.
        gen: u64,
        /// Host PID of the workload.
        pid: u32,
        /// Host PID of the shim (None with `init = false`).
        init_pid: Option<u32>,
        /// When (as recorded for a successor).
        at: std::time::SystemTime,
    },
    /// The workload's log cannot be written (a full disk): its output is being dropped.
    LogFailing {
        /// Workload name.
        name: String,
        /// Instance generation.
        gen: u64,
        /// Why.
        message: String,
    },
    /// A health probe answered.
    Probed {
        /// Workload name.
        name: String,
        /// Instance generation.
        gen: u64,
        /// The probe passed.
        ok: bool,
        /// What it said (bounded).
        output: String,
    },
    /// The instance is gone and its cgroup removed.
    Ended {
        /// Workload name.
        name: String,
        /// Instance generation.
        gen: u64,
        /// How it ended.
        end: RunEnd,
        /// The reason shown to operators (before any stop-timeout override).
        reason: ExitReason,
        /// The start error, if any.
        error: Option<String>,
    },
}

/// A handle on one running instance, owned by the supervisor.
#[derive(Debug)]
pub struct Instance {
    /// Instance generation (increases with every start of the workload).
    pub gen: u64,
    /// Host PID of the shim (== the workload's with `init = false`).
    pub shim_pid: i32,
    pidfd: OwnedFd,
    cgroup: Arc<WorkloadCgroup>,
    workload_pid: Arc<AtomicI32>,
    /// The image's StopSignal, used when the manifest names none.
    pub image_stop_signal: Option<crate::manifest::Signal>,
    /// The manifest digest of the image it runs (what a tag resolved to at its start).
    pub image_digest: Option<String>,
    /// It has a network namespace of its own (not `network.mode = "host"`).
    own_netns: bool,
    /// What `superctl exec` starts from (or why an adopted instance has nothing).
    exec_base: Result<Arc<exec::ExecBase>, String>,
    /// Keeps the image's layers from garbage collection while the instance lives.
    _layers: Option<crate::images::gc::Hold>,
}

impl Instance {
    /// Sends `sig` to the container's PID 1 (the shim forwards it to the workload).
    pub fn signal(&self, sig: i32) {
        pidfd_signal(&self.pidfd, sig);
    }

    /// SIGKILLs the shim (through its pidfd, in case it has not joined its cgroup yet) and
    /// every process in the workload's cgroup.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        kill_instance(&self.pidfd, &self.cgroup)
    }

    /// Applies new limits to the running instance.
    pub fn update(&self, res: &Resources) -> Result<(), CgroupError> {
        self.cgroup.apply(res)
    }

    /// Current memory usage.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.cgroup.memory_bytes()
    }

    /// What its cgroup reports.
    pub fn stats(&self) -> crate::api::CgroupStats {
        self.cgroup.stats()
    }

    /// Starts `req` inside the instance (see [`exec`]): its namespaces, cgroup, rootfs, user,
    /// capabilities, rlimits, `no_new_privs` and seccomp filter.
    pub fn exec(
        &self,
        name: &str,
        req: &exec::ExecRequest,
        stdio: [OwnedFd; 3],
        console: Option<OwnedFd>,
    ) -> Result<exec::Running, String> {
        exec::spawn(
            self.exec_base.as_ref().map_err(Clone::clone)?,
            name,
            &self.pidfd,
            self.own_netns,
            req,
            stdio,
            console,
        )
    }

    /// Runs `check`'s probe in the background from inside the instance's network namespace;
    /// the answer arrives on `events` as [`Event::Probed`] for `name`.
    pub fn probe(
        &self,
        name: &str,
        check: &crate::manifest::HealthCheck,
        events: tokio::sync::mpsc::UnboundedSender<Event>,
    ) {
        if let crate::manifest::Probe::Exec { argv } = &check.probe {
            let (name, gen, timeout) = (name.to_string(), self.gen, check.timeout);
            let req = exec::ExecRequest {
                argv: argv.clone(),
                ..exec::ExecRequest::default()
            };
            let started = (|| -> Result<_, String> {
                let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| format!("a pipe: {e}"))?;
                let null = std::fs::File::open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| format!("opening /dev/null: {e}"))?;
                let w2 = w.try_clone().map_err(|e| format!("dup: {e}"))?;
                let run = exec::spawn(
                    self.exec_base.as_ref().map_err(Clone::clone)?,
                    &name,
                    &self.pidfd,
                    self.own_netns,
                    &req,
                    [null, w, w2],
                    None,
                )?;
                Ok((run, r))
            })();
            tokio::spawn(async move {
                let (ok, output) = match started {
                    Ok((run, out)) => probe::run_exec(run, out, timeout).await,
                    Err(e) => (false, format!("starting the probe: {e}")),
                };
                let _ = events.send(Event::Probed {
                    name,
                    gen,
                    ok,
                    output,
                });
            });
            return;
        }
        let netns = if self.own_netns {
            match self.pidfd.try_clone() {
                Ok(fd) => Some(fd),
                Err(e) => {
                    let _ = events.send(Event::Probed {
                        name: name.to_string(),
                        gen: self.gen,
                        ok: false,
                        output: format!("duplicating the instance's pidfd: {e}"),
                    });
                    return;
                }
            }
        } else {
            None
        };
        let (probe, timeout, name, gen) = (
            check.probe.clone(),
            check.timeout,
            name.to_string(),
            self.gen,
        );
        tokio::spawn(async move {
            let (ok, output) = probe::run(&probe, netns, timeout).await;
            let _ = events.send(Event::Probed {
                name,
                gen,
                ok,
                output,
            });
        });
    }

    /// The workload's host PID once known.
    pub fn workload_pid(&self) -> Option<u32> {
        match self.workload_pid.load(Ordering::Relaxed) {
            p if p > 0 => Some(p as u32),
            _ => None,
        }
    }
}

/// Sends `sig` through a pidfd: an already exited (and reaped) process yields ESRCH, never a
/// signal to an unrelated process that reused the PID.
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: i32) {
    // SAFETY: pidfd_send_signal on an fd we own, with no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
}

/// SIGKILLs a shim through its pidfd and then everything in its cgroup.
fn kill_instance(pidfd: &OwnedFd, cgroup: &WorkloadCgroup) -> Result<(), CgroupError> {
    pidfd_signal(pidfd, libc::SIGKILL);
    cgroup.kill_all()
}

/// The kernel's number and values for one rlimit of a spec.
fn rlimit_cfg(kind: RlimitKind, set: &RlimitSetting) -> sync::RlimitCfg {
    let resource = match kind {
        RlimitKind::Core => libc::RLIMIT_CORE,
        RlimitKind::Cpu => libc::RLIMIT_CPU,
        RlimitKind::Data => libc::RLIMIT_DATA,
        RlimitKind::Fsize => libc::RLIMIT_FSIZE,
        RlimitKind::Locks => libc::RLIMIT_LOCKS,
        RlimitKind::Memlock => libc::RLIMIT_MEMLOCK,
        RlimitKind::Msgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitKind::Nice => libc::RLIMIT_NICE,
        RlimitKind::Nofile => libc::RLIMIT_NOFILE,
        RlimitKind::Nproc => libc::RLIMIT_NPROC,
        RlimitKind::Rss => libc::RLIMIT_RSS,
        RlimitKind::Rtprio => libc::RLIMIT_RTPRIO,
        RlimitKind::Rttime => libc::RLIMIT_RTTIME,
        RlimitKind::Sigpending => libc::RLIMIT_SIGPENDING,
        RlimitKind::Stack => libc::RLIMIT_STACK,
    };
    sync::RlimitCfg {
        name: kind.name().to_string(),
        resource,
        soft: set.limit.soft.unwrap_or(libc::RLIM_INFINITY),
        hard: set.limit.hard.unwrap_or(libc::RLIM_INFINITY),
        explicit: set.explicit,
    }
}

fn id_cfg(i: &IdOrName) -> IdOrNameCfg {
    match i {
        IdOrName::Id(n) => IdOrNameCfg::Id(*n),
        IdOrName::Name(s) => IdOrNameCfg::Name(s.clone()),
    }
}

/// A manifest's `user` as the shim resolves it.
pub(crate) fn user_cfg(u: &crate::manifest::User) -> UserCfg {
    UserCfg {
        user: id_cfg(&u.user),
        group: u.group.as_ref().map(id_cfg),
    }
}

impl Runtime {
    /// Prepares the runtime in the locked state directory: seals a memfd copy of our binary
    /// once (copying per start is slow), creates the directories, sorts the instances a
    /// predecessor recorded into those to adopt (see [`Runtime::adopt`]) and those gone or
    /// unverifiable (stopped and removed), and removes whatever else is left in the cgroup
    /// root.
    pub fn new(
        reaper: Reaper,
        cgroups: CgroupManager,
        state: state::StateDir,
        log_dir: PathBuf,
    ) -> std::io::Result<Runtime> {
        use std::os::unix::fs::DirBuilderExt;
        let scratch_dir = state.path().join("mnt");
        for d in [&scratch_dir, &log_dir] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)?;
        }
        let memfd = sys::sealed_self_copy()?;
        let log_dir_fd: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&log_dir)?
            .into();
        let default_seccomp = seccomp::compile(&seccomp::default_profile())
            .map(|p| seccomp::to_wire(&p))
            .map_err(std::io::Error::other)?;
        let records = state.records();
        let (adoptable, ended, stopped) = adopt::triage(&records, &cgroups);
        if !stopped.is_empty() {
            tracing::warn!(
                ?stopped,
                "cleaned up the instances a previous superd recorded"
            );
        }
        let stale = cgroups.remove_stale(&Runtime::adoptable_names(&adoptable));
        if !stale.is_empty() {
            tracing::warn!(?stale, "removed cgroups left behind by a previous superd");
        }
        Ok(Runtime {
            memfd: Arc::new(memfd),
            reaper,
            cgroups,
            log_dir,
            scratch_dir,
            network: None,
            state,
            records,
            default_seccomp: Arc::new(default_seccomp),
            hidden: HOST_SECRETS.iter().map(|s| s.to_string()).collect(),
            log_limits: DEFAULT_LOG_LIMITS,
            log_dir_fd,
            images: None,
            #[cfg(feature = "registry")]
            puller: None,
            adoptable: std::sync::Mutex::new(adoptable),
            ended: std::sync::Mutex::new(ended),
            boot_id: state::boot_id(),
        })
    }

    /// Runs `[rootfs] image` workloads from `store`.
    pub fn with_images(mut self, store: Arc<crate::images::store::Store>) -> Runtime {
        self.images = Some(store);
        self
    }

    /// Pulls images that `pull = "missing"` workloads lack.
    #[cfg(feature = "registry")]
    pub fn with_puller(mut self, puller: Arc<crate::images::pull::Puller>) -> Runtime {
        self.puller = Some(puller);
        self
    }

    /// The puller, if any.
    #[cfg(feature = "registry")]
    pub fn puller(&self) -> Option<&Arc<crate::images::pull::Puller>> {
        self.puller.as_ref()
    }

    /// The image store, if any.
    pub fn images(&self) -> Option<&Arc<crate::images::store::Store>> {
        self.images.as_ref()
    }

    /// The log bounds for workloads whose manifest sets none.
    pub fn with_log_limits(mut self, limits: sync::LogCfg) -> Runtime {
        self.log_limits = limits;
        self
    }

    /// Also hides `paths` (superd's state, log and socket directories, the manifests) from
    /// workloads on the host root.
    pub fn hide(mut self, paths: &[&std::path::Path]) -> Runtime {
        for p in paths {
            // The shim resolves these inside the container's root; only absolute paths mean
            // anything there.
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let s = abs.to_string_lossy().into_owned();
            if s != "/" && !self.hidden.contains(&s) {
                self.hidden.push(s);
            }
        }
        self
    }

    /// The locked state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        self.state.path()
    }

    /// Enables bridge networking (before the runtime is shared).
    pub fn with_network(mut self, network: Arc<net::Network>) -> Runtime {
        self.network = Some(network);
        self
    }

    /// Bridge networking, when enabled.
    pub fn network(&self) -> Option<&Arc<net::Network>> {
        self.network.as_ref()
    }

    /// The cgroup manager (for shutdown cleanup).
    pub fn cgroups(&self) -> &CgroupManager {
        &self.cgroups
    }

    /// The filters for `spec`'s `[security] seccomp`.
    fn seccomp_for(
        &self,
        spec: &Spec,
        user: &crate::manifest::User,
    ) -> Result<Arc<Vec<seccomp::WireProgram>>, StartError> {
        let path = match &spec.security.seccomp {
            Seccomp::Default => return Ok(Arc::clone(&self.default_seccomp)),
            Seccomp::Unconfined => return Ok(Arc::new(Vec::new())),
            Seccomp::Profile(path) => path,
        };
        let fail = |e: String| StartError::Seccomp(format!("profile {path}: {e}"));
        let json = read_bounded(path.as_str(), seccomp::MAX_PROFILE_BYTES)
            .map_err(|e| fail(e.to_string()))?;
        // A root workload holds the default capabilities (its uid is known for sure only
        // inside the container, so a user named other than `root` counts as non-root).
        let root = matches!(&user.user, IdOrName::Id(0))
            || matches!(&user.user, IdOrName::Name(n) if n == "root");
        let caps: Vec<String> = if root {
            shim::process::DEFAULT_CAPS
                .iter()
                .map(|c| c.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let profile = seccomp::parse_profile(&json, &caps, &kernel).map_err(fail)?;
        let progs = seccomp::compile(&profile).map_err(|e| fail(e.to_string()))?;
        Ok(Arc::new(seccomp::to_wire(&progs)))
    }

    #[allow(clippy::too_many_arguments)]
    fn shim_config(
        &self,
        spec: &Spec,
        run: crate::images::merge::RunPlan,
        layers: Vec<String>,
        volumes: Vec<sync::VolumeCfg>,
        seccomp: Arc<Vec<seccomp::WireProgram>>,
        own_devices: &[devices::HostDevice],
    ) -> ShimConfig {
        let (rootfs, writable) = match &spec.rootfs {
            Rootfs::Host { writable } => (None, *writable == Writable::Tmpfs),
            Rootfs::Dir { path, writable } => {
                (Some(path.to_string()), *writable == Writable::Tmpfs)
            }
            Rootfs::Image { writable, .. } => (None, *writable == Writable::Tmpfs),
        };
        ShimConfig {
            name: spec.name.to_string(),
            argv: run.argv,
            env: run.env,
            workdir: run.workdir,
            user: user_cfg(&run.user),
            layers,
            volumes,
            tmpfs_mounts: spec
                .tmpfs_mounts
                .iter()
                .map(|t| sync::TmpfsMountCfg {
                    target: t.target.to_string(),
                    size: t.size,
                })
                .collect(),
            hostname: spec.hostname.clone(),
            init: spec.init,
            rootfs,
            writable,
            mounts: spec
                .mounts
                .iter()
                .map(|m| MountCfg {
                    source: m.source.to_string(),
                    target: m.target.to_string(),
                    readonly: m.readonly,
                    optional: false,
                })
                .chain(self.network_files(spec))
                .collect(),
            own_netns: spec.network.mode != NetworkMode::Host,
            scratch_dir: self.scratch_dir.to_string_lossy().into_owned(),
            rlimits: spec
                .rlimits
                .iter()
                .map(|(kind, set)| rlimit_cfg(*kind, set))
                .collect(),
            tmpfs: sync::TmpfsCfg {
                tmp: spec.tmpfs.tmp,
                run: spec.tmpfs.run,
                shm: spec.tmpfs.shm,
                root: spec.tmpfs.root,
            },
            seccomp,
            logs: sync::LogCfg {
                max_size: spec.logs.max_size.unwrap_or(self.log_limits.max_size),
                max_files: spec.logs.max_files.unwrap_or(self.log_limits.max_files),
            },
            devices: own_devices
                .iter()
                .map(|d| sync::DeviceNodeCfg {
                    rel: d.rel.clone(),
                    block: d.allow.kind == devices::Kind::Block,
                    major: d.allow.major.unwrap_or(0),
                    minor: d.allow.minor.unwrap_or(0),
                    mode: d.mode,
                })
                .collect(),
            cgroupfs: self.cgroups.container_mounts(),
            hide: match spec.rootfs {
                Rootfs::Host { .. } => self.hidden.clone(),
                Rootfs::Dir { .. } | Rootfs::Image { .. } => Vec::new(),
            },
        }
    }

    /// superd's `/etc/hosts` and `/etc/resolv.conf` for a bridged workload (mounted after the
    /// operator's mounts, so they win over a mount of `/etc`).
    fn network_files(&self, spec: &Spec) -> Vec<MountCfg> {
        let Some(net) = self
            .network
            .as_ref()
            .filter(|_| spec.network.mode == NetworkMode::Bridge)
        else {
            return Vec::new();
        };
        [
            (net.hosts_path(), "/etc/hosts"),
            (net.resolv_path(), "/etc/resolv.conf"),
        ]
        .into_iter()
        .map(|(src, target)| MountCfg {
            source: src.to_string_lossy().into_owned(),
            target: target.to_string(),
            readonly: true,
            optional: true,
        })
        .collect()
    }

    /// Creates the cgroup, clones the shim into new namespaces and starts the driver task that
    /// reports [`Event`]s. A bridged workload needs its `address` (from `network::admit`).
    /// Must be called inside a tokio runtime.
    pub fn start(
        &self,
        spec: &Spec,
        gen: u64,
        restarts: u32,
        address: Option<Ipv4Addr>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Instance, StartError> {
        let name = spec.name.to_string();
        let net = match spec.network.mode {
            NetworkMode::Bridge => {
                let (Some(network), Some(address)) = (&self.network, address) else {
                    return Err(StartError::Network(format!(
                        "no address assigned to {name}"
                    )));
                };
                if let Err(e) = network.refresh_resolv() {
                    tracing::warn!(workload = %name, "refreshing resolv.conf: {e}");
                }
                Some(NetAttach {
                    network: network.clone(),
                    address,
                    ports: spec.network.ports.clone(),
                })
            }
            NetworkMode::None | NetworkMode::Host => None,
        };
        let (image, layers, hold, image_digest) = self.resolve_image(spec)?;
        let run =
            crate::images::merge::run_plan(spec, image.as_ref()).map_err(StartError::Image)?;
        let image_stop_signal = run.stop_signal;
        let seccomp = self.seccomp_for(spec, &run.user)?;
        let volumes =
            volumes::prepare(self.state.path(), &spec.volumes).map_err(StartError::Volume)?;
        let own_devices = devices::resolve(&spec.security.devices).map_err(StartError::Devices)?;
        let cgroup = Arc::new(self.cgroups.create(
            &name,
            &spec.resources,
            Some(&devices::allowlist(&own_devices)),
        )?);
        let log_path = self.log_dir.join(format!("{name}.log"));
        let log = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&log_path)
        };
        let log = match log {
            Ok(f) => f,
            Err(source) => {
                let _ = cgroup.remove(Duration::from_secs(1));
                return Err(StartError::Log {
                    path: log_path,
                    source,
                });
            }
        };
        let procs = cgroup.procs_files();
        // Where the shim leaves the workload's status for a successor of this superd. Without
        // one (the state directory refuses a file) the workload still runs; only a successor
        // would not learn how it ended.
        let exit_file = self
            .records
            .create_exit(&name, gen)
            .map_err(|e| tracing::warn!(workload = %name, "creating the exit file: {e}"))
            .ok();
        let spawned = spawn::spawn_shim(
            &self.memfd,
            &self.reaper,
            &spawn::SpawnArgs {
                name: &name,
                cgroup_procs: &procs,
                log: &log,
                log_dir: &self.log_dir_fd,
                exit_file: exit_file.as_ref(),
                host_network: spec.network.mode == NetworkMode::Host,
            },
        );
        drop(exit_file);
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                let _ = cgroup.remove(Duration::from_secs(1));
                return Err(e.into());
            }
        };
        let shim_pid = spawned.pid;
        let pidfd = spawned.pidfd;
        // SAFETY: the fd is owned by the AsyncFd and stays open until it is dropped.
        let sock = match unsafe { AsyncFd::register(spawned.sock) } {
            Ok(s) => s,
            Err(e) => {
                let e = std::io::Error::other(e.to_string());
                let _ = kill_instance(&pidfd, &cgroup);
                return Err(StartError::Register(e));
            }
        };
        let workload_pid = Arc::new(AtomicI32::new(0));
        let driver_pidfd = match pidfd.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                let _ = kill_instance(&pidfd, &cgroup);
                return Err(StartError::Register(e));
            }
        };
        let record = state::InstanceRecord {
            name: name.clone(),
            gen,
            superd_pid: std::process::id(),
            shim_pid,
            shim_start: state::process_start_time(shim_pid).unwrap_or(0),
            cgroup_dirs: cgroup.dirs().to_vec(),
            cgroup_v2: self.cgroups.is_v2(),
            address,
            spec_hash: spec.hash(),
            spec: serde_json::to_value(spec).ok(),
            restarts,
            image_digest: image_digest.clone(),
            layers: hold
                .as_ref()
                .map(|h| h.layers().iter().map(|d| d.to_string()).collect())
                .unwrap_or_default(),
            image_stop_signal: image_stop_signal.map(|s| s.number),
            boot_id: self.boot_id.clone(),
            ..state::InstanceRecord::default()
        };
        let cfg = Arc::new(self.shim_config(spec, run, layers, volumes, seccomp, &own_devices));
        let exec_base = Arc::new(exec::ExecBase {
            shim: Arc::clone(&cfg),
            memfd: Arc::clone(&self.memfd),
            reaper: self.reaper.clone(),
            cgroup_procs: procs.iter().map(|p| p.display().to_string()).collect(),
        });
        let driver = Driver {
            records: self.records.clone(),
            record,
            pidfd: driver_pidfd,
            name,
            gen,
            init: spec.init,
            shim_pid,
            cfg,
            net,
            cgroup: cgroup.clone(),
            workload_pid: workload_pid.clone(),
            events,
        };
        tokio::spawn(driver.run(sock, spawned.exit));
        Ok(Instance {
            gen,
            shim_pid,
            pidfd,
            cgroup,
            workload_pid,
            image_stop_signal,
            image_digest,
            own_netns: spec.network.mode != NetworkMode::Host,
            exec_base: Ok(exec_base),
            _layers: hold,
        })
    }

    /// Starts (or reports) the pull of a missing image.
    #[cfg(feature = "registry")]
    fn pull_hint(&self, written: &str) -> String {
        match &self.puller {
            Some(p) => {
                let before = p.progress(written);
                p.ensure(written);
                match (before, p.progress(written)) {
                    // Failed a moment ago: not tried again yet.
                    (_, Some(now)) if now.error.is_some() => {
                        format!("{now}; trying again in a few seconds")
                    }
                    (Some(b), _) if b.error.is_some() => format!("{b}; pulling again"),
                    (_, now) => now.map_or_else(|| "pulling".to_string(), |pr| pr.to_string()),
                }
            }
            None => {
                "this superd does not pull: import it with `superctl image import FILE`".to_string()
            }
        }
    }

    #[cfg(not(feature = "registry"))]
    fn pull_hint(&self, _written: &str) -> String {
        "this build of superd cannot pull from a registry: import it with \
         `superctl image import FILE`"
            .to_string()
    }

    /// Whether `spec` could start now as far as its image goes (always, without an image).
    pub fn image_ready(&self, spec: &Spec) -> bool {
        let Rootfs::Image { image, .. } = &spec.rootfs else {
            return true;
        };
        let (Some(store), Ok(name)) = (
            self.images.as_ref(),
            crate::images::reference::ImageName::parse(&image.written),
        ) else {
            return false;
        };
        store.resolve(&name).is_ok()
    }

    /// Starts fetching `spec`'s image when it may be pulled; says how that goes (or what the
    /// operator must do).
    pub fn prepare_image(&self, spec: &Spec) -> String {
        match &spec.rootfs {
            Rootfs::Image {
                pull: crate::manifest::Pull::Never,
                ..
            } => "pull = \"never\": import it with `superctl image import FILE`".to_string(),
            Rootfs::Image { image, .. } => self.pull_hint(&image.written),
            _ => String::new(),
        }
    }

    /// For an image workload: its config and its layer directories, top first.
    fn resolve_image(&self, spec: &Spec) -> Result<ResolvedImage, StartError> {
        let Rootfs::Image { image, pull, .. } = &spec.rootfs else {
            return Ok((None, Vec::new(), None, None));
        };
        let store = self
            .images
            .as_ref()
            .ok_or_else(|| StartError::Image("superd runs without an image store".into()))?;
        let name = crate::images::reference::ImageName::parse(&image.written)
            .map_err(StartError::Image)?;
        match store.resolve(&name) {
            Ok(r) => Ok((
                Some(r.run),
                r.layer_dirs
                    .iter()
                    .rev()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
                Some(store.hold(&r.layers)),
                Some(r.manifest.to_string()),
            )),
            Err(crate::images::store::StoreError::Missing(what)) => {
                let hint = match pull {
                    crate::manifest::Pull::Never => {
                        "pull = \"never\": import it with `superctl image import FILE`".to_string()
                    }
                    crate::manifest::Pull::Missing => self.pull_hint(&image.written),
                };
                Err(StartError::Image(format!(
                    "{what} is not in the store; {hint}"
                )))
            }
            Err(e) => Err(StartError::Image(e.to_string())),
        }
    }
}

/// Reads a regular file of at most `max` bytes (see [`sys::read_regular`]); a larger one is
/// an error.
fn read_bounded(path: &str, max: usize) -> std::io::Result<Vec<u8>> {
    let buf = sys::read_regular(std::path::Path::new(path), max as u64 + 1, false)?;
    if buf.len() > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(buf)
}

/// "exit code 3" / "signal SIGKILL".
pub fn describe_status(status: i32) -> String {
    match reaper::decode(status) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(s)) => format!(
            "signal {}",
            crate::manifest::Signal::from_number(s)
                .map(|s| s.name.to_string())
                .unwrap_or_else(|| s.to_string())
        ),
        _ => format!("status {status:#x}"),
    }
}
