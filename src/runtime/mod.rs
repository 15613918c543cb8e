//! Every side effect of running a workload: cgroups, the spawn path, the in-container init shim,
//! rootfs construction and the single reaper.
//!
//! The supervisor calls [`Runtime::start`] and receives [`Event`]s from a small per-instance
//! driver task; it never blocks on the kernel itself.

pub mod cgroups;
pub mod net;
pub mod reaper;
pub mod shim;
pub mod spawn;
pub mod sync;
pub mod sys;

use crate::api::ExitReason;
use crate::manifest::{IdOrName, NetworkMode, PortMapping, Resources, Rootfs, Spec, Writable};
use crate::reconcile::RunEnd;
use cgroups::{CgroupError, CgroupManager, WorkloadCgroup};
use reaper::Reaper;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use sync::{
    FromShim, IdOrNameCfg, MountCfg, ShimConfig, ToShim, UserCfg, EARLY_FAILURE, MAX_REPORT,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// How long container setup may take before the shim is killed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Paths and handles the runtime needs; built once at daemon start.
#[derive(Debug)]
pub struct Runtime {
    memfd: OwnedFd,
    reaper: Reaper,
    cgroups: CgroupManager,
    log_dir: PathBuf,
    scratch_dir: PathBuf,
    network: Option<Arc<net::Network>>,
}

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
    /// A bridged workload without bridge networking or an address.
    #[error("bridge networking is not available: {0}")]
    Network(String),
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

fn id_cfg(i: &IdOrName) -> IdOrNameCfg {
    match i {
        IdOrName::Id(n) => IdOrNameCfg::Id(*n),
        IdOrName::Name(s) => IdOrNameCfg::Name(s.clone()),
    }
}

impl Runtime {
    /// Prepares the runtime: seals a memfd copy of our binary once (copying per start is slow),
    /// creates the state directories and removes what a crashed predecessor left in the cgroup
    /// root.
    pub fn new(
        reaper: Reaper,
        cgroups: CgroupManager,
        state_dir: PathBuf,
        log_dir: PathBuf,
    ) -> std::io::Result<Runtime> {
        use std::os::unix::fs::DirBuilderExt;
        let scratch_dir = state_dir.join("mnt");
        for d in [&state_dir, &scratch_dir, &log_dir] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)?;
        }
        let memfd = sys::sealed_self_copy()?;
        let stale = cgroups.remove_stale();
        if !stale.is_empty() {
            tracing::warn!(?stale, "removed cgroups left behind by a previous superd");
        }
        Ok(Runtime {
            memfd,
            reaper,
            cgroups,
            log_dir,
            scratch_dir,
            network: None,
        })
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

    fn shim_config(&self, spec: &Spec) -> ShimConfig {
        let (rootfs, writable) = match &spec.rootfs {
            Rootfs::Host => (None, false),
            Rootfs::Dir { path, writable } => {
                (Some(path.to_string()), *writable == Writable::Tmpfs)
            }
        };
        ShimConfig {
            name: spec.name.to_string(),
            argv: spec.command.clone(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            workdir: spec.workdir.to_string(),
            user: UserCfg {
                user: id_cfg(&spec.user.user),
                group: spec.user.group.as_ref().map(id_cfg),
            },
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
        let cgroup = Arc::new(self.cgroups.create(&name, &spec.resources)?);
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
        let spawned = spawn::spawn_shim(
            &self.memfd,
            &self.reaper,
            &spawn::SpawnArgs {
                name: &name,
                cgroup_procs: &procs,
                log: &log,
                host_network: spec.network.mode == NetworkMode::Host,
            },
        );
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
        let driver = Driver {
            pidfd: driver_pidfd,
            name,
            gen,
            init: spec.init,
            shim_pid,
            cfg: self.shim_config(spec),
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
        })
    }
}

/// What the driver connects a bridged workload with.
struct NetAttach {
    network: Arc<net::Network>,
    address: Ipv4Addr,
    ports: Vec<PortMapping>,
}

/// The per-instance task: speaks the sync protocol, waits for the exit, cleans the cgroup up.
struct Driver {
    pidfd: OwnedFd,
    name: String,
    gen: u64,
    init: bool,
    shim_pid: i32,
    cfg: ShimConfig,
    net: Option<NetAttach>,
    cgroup: Arc<WorkloadCgroup>,
    workload_pid: Arc<AtomicI32>,
    events: mpsc::UnboundedSender<Event>,
}

/// One packet from the shim.
enum Packet {
    Msg(FromShim, Option<i32>),
    Early(String),
    Eof,
}

async fn send_packet(sock: &AsyncFd<OwnedFd>, msg: &ToShim) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    loop {
        let mut guard = sock.writable().await?;
        match guard.try_io(|s| {
            nix::sys::socket::send(
                s.get_ref().as_raw_fd(),
                &bytes,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        }) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

async fn recv_packet(sock: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<Packet> {
    loop {
        let mut guard = sock.readable().await?;
        let res = guard.try_io(|s| {
            let mut cmsg = nix::cmsg_space!(libc::ucred);
            let mut iov = [std::io::IoSliceMut::new(buf)];
            let msg = nix::sys::socket::recvmsg::<()>(
                s.get_ref().as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                nix::sys::socket::MsgFlags::empty(),
            )
            .map_err(std::io::Error::from)?;
            let mut pid = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let nix::sys::socket::ControlMessageOwned::ScmCredentials(cr) = c {
                        pid = Some(cr.pid());
                    }
                }
            }
            Ok((msg.bytes, pid))
        });
        let (n, pid) = match res {
            Ok(r) => r?,
            Err(_would_block) => continue,
        };
        if n == 0 {
            return Ok(Packet::Eof);
        }
        if buf[0] == EARLY_FAILURE {
            return Ok(Packet::Early(sync::describe_early_failure(&buf[..n])));
        }
        return match serde_json::from_slice(&buf[..n]) {
            Ok(m) => Ok(Packet::Msg(m, pid)),
            Err(e) => Ok(Packet::Early(format!(
                "undecodable message from the shim: {e}"
            ))),
        };
    }
}

impl Driver {
    async fn run(
        self,
        sock: AsyncFd<OwnedFd>,
        exit: tokio::sync::oneshot::Receiver<reaper::RawStatus>,
    ) {
        let mut error: Option<String> = None;
        let mut started = false;
        let mut workload_status: Option<i32> = None;
        let mut buf = vec![0u8; MAX_REPORT];
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let mut timed_out = false;
        let mut ports_added = false;
        if let Err(e) = send_packet(&sock, &ToShim::Config(Box::new(self.cfg.clone()))).await {
            error = Some(format!("sending the config to the init shim: {e}"));
        }
        loop {
            let packet = if started || timed_out {
                recv_packet(&sock, &mut buf).await
            } else {
                match tokio::time::timeout_at(deadline, recv_packet(&sock, &mut buf)).await {
                    Ok(p) => p,
                    Err(_) => {
                        timed_out = true;
                        error = Some(format!(
                            "container setup did not finish within {}s",
                            SETUP_TIMEOUT.as_secs()
                        ));
                        let _ = kill_instance(&self.pidfd, &self.cgroup);
                        continue;
                    }
                }
            };
            match packet {
                Err(e) => {
                    error.get_or_insert_with(|| format!("talking to the init shim: {e}"));
                    break;
                }
                Ok(Packet::Eof) => break,
                Ok(Packet::Early(e)) => error = Some(e),
                Ok(Packet::Msg(FromShim::SetupDone, _)) => {
                    // The namespaces exist and the shim waits: connect it before it runs.
                    if let Some(n) = &self.net {
                        let t0 = std::time::Instant::now();
                        match n
                            .network
                            .attach(&self.name, &self.pidfd, n.address, &n.ports)
                            .await
                        {
                            Ok(()) => {
                                ports_added = !n.ports.is_empty();
                                tracing::debug!(workload = %self.name, address = %n.address, micros = t0.elapsed().as_micros() as u64, "network attached");
                            }
                            Err(e) => {
                                error = Some(format!("network setup: {e}"));
                                let _ = kill_instance(&self.pidfd, &self.cgroup);
                                continue;
                            }
                        }
                    }
                    if let Err(e) = send_packet(&sock, &ToShim::Go).await {
                        error = Some(format!("telling the init shim to go: {e}"));
                    }
                }
                Ok(Packet::Msg(FromShim::Started, pid)) => {
                    started = true;
                    let pid = if self.init {
                        pid.unwrap_or(0)
                    } else {
                        self.shim_pid
                    };
                    self.workload_pid.store(pid, Ordering::Relaxed);
                    let _ = self.events.send(Event::Started {
                        name: self.name.clone(),
                        gen: self.gen,
                        pid: pid.max(0) as u32,
                        init_pid: self.init.then_some(self.shim_pid as u32),
                    });
                }
                Ok(Packet::Msg(FromShim::Failed { step, message }, _)) => {
                    error = Some(format!("{step}: {message}"));
                }
                Ok(Packet::Msg(FromShim::Exited { status }, _)) => workload_status = Some(status),
            }
        }
        drop(sock);
        let shim_status = exit.await.unwrap_or(libc::SIGKILL);
        let oom = self.cgroup.oom_kills().unwrap_or(0) > 0;
        let (end, reason) = if error.is_some() {
            (RunEnd::StartFailed, ExitReason::StartFailed)
        } else if !started {
            error = Some(format!(
                "the init shim exited during setup ({})",
                describe_status(shim_status)
            ));
            (RunEnd::StartFailed, ExitReason::StartFailed)
        } else {
            let status = workload_status.unwrap_or(shim_status);
            let end = match reaper::decode(status) {
                (Some(code), _) => RunEnd::Exited(code),
                (_, Some(sig)) => RunEnd::Signaled(sig),
                _ => RunEnd::Exited(0),
            };
            let reason = if oom {
                ExitReason::OomKilled
            } else if matches!(end, RunEnd::Signaled(_)) {
                ExitReason::Signaled
            } else {
                ExitReason::Exited
            };
            (end, reason)
        };
        if let Some(n) = &self.net {
            n.network
                .detach(&self.name, &n.ports, n.address, ports_added)
                .await;
        }
        let cgroup = self.cgroup.clone();
        let removed =
            tokio::task::spawn_blocking(move || cgroup.remove(Duration::from_secs(5))).await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(workload = %self.name, "removing cgroup: {e}"),
            Err(e) => tracing::warn!(workload = %self.name, "cgroup removal task: {e}"),
        }
        let _ = self.events.send(Event::Ended {
            name: self.name,
            gen: self.gen,
            end,
            reason,
            error,
        });
    }
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
