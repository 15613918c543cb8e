//! The per-instance driver task: speaks the sync protocol with the init shim, connects a
//! bridged workload's network while the shim waits, reports `Started`/`Ended`, and cleans up
//! (network, cgroup) after the exit.

use super::cgroups::WorkloadCgroup;
use super::sync::{self, FromShim, ShimConfig, ToShim, EARLY_FAILURE, MAX_REPORT};
use super::{describe_status, kill_instance, net, reaper, Event};
use crate::api::ExitReason;
use crate::manifest::PortMapping;
use crate::reconcile::RunEnd;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// How long container setup may take before the shim is killed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the driver connects a bridged workload with.
pub(super) struct NetAttach {
    pub(super) network: Arc<net::Network>,
    pub(super) address: Ipv4Addr,
    pub(super) ports: Vec<PortMapping>,
}

/// The per-instance task: speaks the sync protocol, waits for the exit, cleans the cgroup up.
pub(super) struct Driver {
    pub(super) records: super::state::Records,
    /// Written (durably, off the supervisor's task) before the shim gets its config.
    pub(super) record: super::state::InstanceRecord,
    pub(super) pidfd: OwnedFd,
    pub(super) name: String,
    pub(super) gen: u64,
    pub(super) init: bool,
    pub(super) shim_pid: i32,
    pub(super) cfg: std::sync::Arc<ShimConfig>,
    pub(super) net: Option<NetAttach>,
    pub(super) cgroup: Arc<WorkloadCgroup>,
    pub(super) workload_pid: Arc<AtomicI32>,
    pub(super) events: mpsc::UnboundedSender<Event>,
}

/// One packet from the shim.
enum Packet {
    Msg(FromShim, Option<i32>),
    Early(String),
    Eof,
}

/// Sends `msg` as [`sync::frame`]d packets, each waiting for room in the socket buffer.
async fn send_msg(sock: &AsyncFd<OwnedFd>, msg: &ToShim) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    for packet in sync::frame(&bytes) {
        send_packet(sock, &packet).await?;
    }
    Ok(())
}

async fn send_packet(sock: &AsyncFd<OwnedFd>, bytes: &[u8]) -> std::io::Result<()> {
    loop {
        let mut guard = sock.writable().await?;
        match guard.try_io(|s| {
            nix::sys::socket::send(
                s.get_ref().as_raw_fd(),
                bytes,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        }) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

/// Receives one packet. The buffer exists only while a packet is read: an instance waits
/// for its few packets for as long as it runs, and a hundred idle 8 KiB buffers would be most
/// of superd's heap.
async fn recv_packet(sock: &AsyncFd<OwnedFd>) -> std::io::Result<Packet> {
    loop {
        let mut guard = sock.readable().await?;
        let mut buf = vec![0u8; MAX_REPORT];
        let res = guard.try_io(|s| {
            let mut cmsg = nix::cmsg_space!(libc::ucred);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
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
    pub(super) async fn run(
        self,
        sock: AsyncFd<OwnedFd>,
        exit: tokio::sync::oneshot::Receiver<reaper::RawStatus>,
    ) {
        // The record's fsyncs run on the blocking pool, not on the supervisor's task: a
        // hundred starts at once must not wait for each other's disk.
        let (records, record) = (self.records.clone(), self.record.clone());
        match tokio::task::spawn_blocking(move || records.write(&record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(workload = %self.name, "recording the instance: {e}; a successor could not stop it after a crash")
            }
            Err(e) => tracing::warn!(workload = %self.name, "recording the instance: {e}"),
        }
        let mut error: Option<String> = None;
        let mut started = false;
        let mut workload_status: Option<i32> = None;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let mut timed_out = false;
        let mut ports_added = false;
        let mut netns = None;
        if let Err(e) = send_msg(&sock, &ToShim::Config(Box::new((*self.cfg).clone()))).await {
            // The shim waits for a config that will not come: stop it now, and keep this
            // as the cause (not a setup timeout a minute later).
            error = Some(format!("sending the config to the init shim: {e}"));
            let _ = kill_instance(&self.pidfd, &self.cgroup);
        }
        loop {
            let packet = if started || timed_out {
                recv_packet(&sock).await
            } else {
                match tokio::time::timeout_at(deadline, recv_packet(&sock)).await {
                    Ok(p) => p,
                    Err(_) => {
                        timed_out = true;
                        error.get_or_insert_with(|| {
                            format!(
                                "container setup did not finish within {}s",
                                SETUP_TIMEOUT.as_secs()
                            )
                        });
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
                Ok(Packet::Early(e)) => {
                    error.get_or_insert(e);
                }
                Ok(Packet::Msg(FromShim::SetupDone, _)) => {
                    // The namespaces exist and the shim waits: connect it before it runs.
                    if let Some(n) = &self.net {
                        let t0 = std::time::Instant::now();
                        let attach = n
                            .network
                            .attach(&self.name, &self.pidfd, n.address, &n.ports);
                        let attached = tokio::time::timeout_at(deadline, attach)
                            .await
                            .unwrap_or_else(|_| {
                                Err(net::NetError::Timeout(format!(
                                    "network setup did not finish within {}s",
                                    SETUP_TIMEOUT.as_secs()
                                )))
                            });
                        match attached {
                            Ok(ns) => {
                                netns = Some(ns);
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
                    if let Err(e) = send_msg(&sock, &ToShim::Go).await {
                        error.get_or_insert(format!("telling the init shim to go: {e}"));
                        let _ = kill_instance(&self.pidfd, &self.cgroup);
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
                    // What a successor adopts it by: the workload runs, since now.
                    let mut rec = self.record.clone();
                    rec.workload_pid = pid;
                    let at = std::time::SystemTime::now();
                    rec.started_unix_ms = at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                    let records = self.records.clone();
                    let name = self.name.clone();
                    // Awaited, so that the removal after its end cannot come first.
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Err(e) = records.write(&rec) {
                            tracing::warn!(workload = %name, "recording that the instance runs: {e}; a successor would stop it rather than adopt it");
                        }
                    })
                    .await;
                    let _ = self.events.send(Event::Started {
                        name: self.name.clone(),
                        gen: self.gen,
                        pid: pid.max(0) as u32,
                        init_pid: self.init.then_some(self.shim_pid as u32),
                        at,
                    });
                }
                Ok(Packet::Msg(FromShim::Failed { step, message }, _)) => {
                    error.get_or_insert(format!("{step}: {message}"));
                }
                Ok(Packet::Msg(FromShim::Exited { status }, _)) => workload_status = Some(status),
                Ok(Packet::Msg(FromShim::LogFailing { message }, _)) => {
                    tracing::error!(workload = %self.name, "its log cannot be written, output is dropped: {message}");
                    let _ = self.events.send(Event::LogFailing {
                        name: self.name.clone(),
                        gen: self.gen,
                        message,
                    });
                }
            }
        }
        drop(sock);
        let shim_status = exit.await.unwrap_or(libc::SIGKILL);
        let oom = self.cgroup.oom_kills().unwrap_or(0) > 0;
        let (end, reason) = if !started && oom {
            // Whatever the shim last managed to say, the kernel's OOM killer is the cause.
            let limit = self
                .cgroup
                .memory_limit()
                .map_or_else(String::new, |b| format!(" of {} MiB", b >> 20));
            error = Some(format!(
                "killed by the OOM killer while the container was set up: the memory \
                 limit{limit} is too low for the init shim and the workload to start{}",
                error.map(|e| format!(" (last: {e})")).unwrap_or_default()
            ));
            (RunEnd::StartFailed, ExitReason::OomKilled)
        } else if error.is_some() {
            (RunEnd::StartFailed, ExitReason::StartFailed)
        } else if !started {
            error = Some(format!(
                "the init shim exited during setup ({})",
                describe_status(shim_status)
            ));
            (RunEnd::StartFailed, ExitReason::StartFailed)
        } else {
            run_end(workload_status.unwrap_or(shim_status), oom)
        };
        Cleanup {
            records: self.records,
            name: self.name,
            gen: self.gen,
            net: self.net,
            ports_added,
            netns,
            cgroup: self.cgroup,
            events: self.events,
        }
        .finish(end, reason, error)
        .await;
    }
}

/// How a run that started ended, from the workload's raw wait status and whether the OOM
/// killer struck in its cgroup.
pub(super) fn run_end(status: reaper::RawStatus, oom: bool) -> (RunEnd, ExitReason) {
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
}

/// What is left to undo once an instance has ended: its network, its cgroup, its record.
pub(super) struct Cleanup {
    pub(super) records: super::state::Records,
    pub(super) name: String,
    pub(super) gen: u64,
    pub(super) net: Option<NetAttach>,
    /// Its port elements were added (and must go).
    pub(super) ports_added: bool,
    /// Its network namespace, kept open so that its closed connections can drain.
    pub(super) netns: Option<OwnedFd>,
    pub(super) cgroup: Arc<WorkloadCgroup>,
    pub(super) events: mpsc::UnboundedSender<Event>,
}

impl Cleanup {
    /// Detaches the network, removes the cgroup and then the record, and reports `Ended`.
    pub(super) async fn finish(self, end: RunEnd, reason: ExitReason, error: Option<String>) {
        if let Some(n) = &self.net {
            n.network
                .detach(
                    &self.name,
                    &n.ports,
                    n.address,
                    self.ports_added,
                    self.netns,
                )
                .await;
        }
        let cgroup = self.cgroup.clone();
        let removed =
            tokio::task::spawn_blocking(move || cgroup.remove(Duration::from_secs(5))).await;
        match removed {
            Ok(Ok(())) => {
                // Gone for good: nothing is left for a successor to stop.
                if let Err(e) = self.records.remove(&self.name, self.gen) {
                    tracing::warn!(workload = %self.name, "removing the instance record: {e}");
                }
            }
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
