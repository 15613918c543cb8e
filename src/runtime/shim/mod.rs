//! The init shim: superd's own binary, executed from a sealed memfd as PID 1 of a new container.
//!
//! It is single-threaded (it runs before any tokio runtime exists), so it may do what the forked
//! child of the multithreaded daemon may not: read its config, build the rootfs, pivot_root, and
//! then either stay as PID 1 (reaping every zombie and forwarding every catchable signal to the
//! workload, exiting with the workload's status) or exec the workload itself (`init = false`).

mod cgroupfs;
mod dev;
pub mod exec;
mod hostroot;
pub mod logs;
pub mod process;
pub mod rootfs;
mod volumes;

use crate::runtime::logfmt::{LineSplitter, Stream};
use crate::runtime::sync::{self, FromShim, Reassembly, ShimConfig, ToShim, CHUNK, SHIM_SYNC_FD};
use rootfs::StepError;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::fd::{BorrowedFd, RawFd};

fn send(msg: &FromShim, creds_pid: Option<i32>) {
    let Ok(bytes) = serde_json::to_vec(msg) else {
        return;
    };
    let iov = [IoSlice::new(&bytes)];
    let res = match creds_pid {
        Some(pid) => {
            let creds = nix::sys::socket::UnixCredentials::from(libc::ucred {
                pid,
                uid: 0,
                gid: 0,
            });
            let cmsg = [nix::sys::socket::ControlMessage::ScmCredentials(&creds)];
            nix::sys::socket::sendmsg::<()>(
                SHIM_SYNC_FD,
                &iov,
                &cmsg,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                None,
            )
        }
        // No SIGPIPE when superd is gone: PID 1 would forward it to the workload.
        None => nix::sys::socket::sendmsg::<()>(
            SHIM_SYNC_FD,
            &iov,
            &[],
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            None,
        ),
    };
    if let Err(e) = res {
        logs::shim_message(&format!("reporting to superd failed: {e}"));
    }
}

fn recv() -> Result<ToShim, StepError> {
    let mut buf = vec![0u8; CHUNK + 1];
    let mut message = Reassembly::default();
    // SAFETY: SHIM_SYNC_FD was placed by the spawner and stays open for our whole life.
    let fd = unsafe { BorrowedFd::borrow_raw(SHIM_SYNC_FD) };
    let bytes = loop {
        let n = match nix::sys::socket::recv(
            fd.as_fd_raw(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(0) => return Err(fail("reading from superd", "superd closed the sync socket")),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(fail("reading from superd", e)),
        };
        match message.push(&buf[..n]) {
            Ok(Some(bytes)) => break bytes,
            Ok(None) => {}
            Err(e) => return Err(fail("reading from superd", e)),
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| fail("decoding superd's message", e))
}

trait AsFdRaw {
    fn as_fd_raw(&self) -> RawFd;
}
impl AsFdRaw for BorrowedFd<'_> {
    fn as_fd_raw(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.as_raw_fd()
    }
}

fn fail(step: impl Into<String>, e: impl std::fmt::Display) -> StepError {
    StepError {
        step: step.into(),
        message: e.to_string(),
    }
}

fn report_and_exit(mut e: StepError) -> ! {
    logs::shim_message(&format!("{}: {}", e.step, e.message));
    crate::runtime::sync::truncate(&mut e.step, 1024);
    crate::runtime::sync::truncate(&mut e.message, 4096);
    send(
        &FromShim::Failed {
            step: e.step,
            message: e.message,
        },
        None,
    );
    std::process::exit(127)
}

/// Entry point of the shim role. Never returns.
pub fn main() -> ! {
    let cfg = match recv() {
        Ok(ToShim::Config(cfg)) => cfg,
        Ok(other) => report_and_exit(fail("reading the config", format!("unexpected {other:?}"))),
        Err(e) => report_and_exit(e),
    };
    if let Err(e) = setup(&cfg) {
        report_and_exit(e);
    }
    send(&FromShim::SetupDone, None);
    match recv() {
        Ok(ToShim::Go) => {}
        Ok(other) => report_and_exit(fail("waiting for go", format!("unexpected {other:?}"))),
        Err(e) => report_and_exit(e),
    }
    let prepared = match process::prepare(&cfg) {
        Ok(p) => p,
        Err(e) => report_and_exit(e),
    };
    if let Err(e) = volumes::chown_fresh(prepared.uid, prepared.gid) {
        report_and_exit(e);
    }
    if cfg.init {
        run_init(&prepared, &cfg.logs, &cfg.name)
    } else {
        if let Err(e) = start_logger(&cfg.logs, &cfg.name) {
            report_and_exit(e);
        }
        send(&FromShim::Started, None);
        report_and_exit(process::exec(&prepared))
    }
}

/// Everything before the workload may run.
fn setup(cfg: &ShimConfig) -> Result<(), StepError> {
    let _ = nix::sys::prctl::set_name(c"superd-init");
    // Its own session and process group, whatever the init mode: a workload's `kill(0, sig)`
    // (or a shell's job control) must reach only the container, never superd's group.
    nix::unistd::setsid().map_err(|e| fail("creating a session", e))?;
    // CLONE_NEWCGROUP roots the namespace where we are now: already inside the workload cgroup
    // (the spawner's child joined it before exec), so /proc/self/cgroup reads `0::/`.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| fail("creating the cgroup namespace", e))?;
    // The workload must not be able to ptrace us or open our fds (CVE-2016-9962).
    nix::sys::prctl::set_dumpable(false).map_err(|e| fail("making the shim non-dumpable", e))?;
    if let Err(e) = reset_oom_score_adj() {
        // Not fatal: the workload runs, merely as protected as superd (told in its log).
        logs::shim_message(&format!("resetting oom_score_adj to 0: {e}"));
    }
    if cfg.own_netns {
        // As Docker does: in its own network namespace a non-root workload may bind any port
        // (written before /proc/sys becomes read-only; the sysctl is per namespace).
        unprivileged_ports_from_zero()
            .map_err(|e| fail("setting net.ipv4.ip_unprivileged_port_start", e))?;
    }
    rootfs::build(cfg)?;
    if cfg.own_netns {
        loopback_up().map_err(|e| fail("bringing lo up", e))?;
    }
    Ok(())
}

/// Workloads do not inherit superd's protection from the OOM killer: the systemd unit gives
/// superd `OOMScoreAdjust=-900`, and a runaway workload that inherited it would make the OOM
/// killer pick the host's services first. A negative value is raised to the kernel's default
/// 0 (raising needs no privilege); a positive one (superd itself run as a likely victim,
/// e.g. in a BestEffort pod) is kept, since lowering it may need CAP_SYS_RESOURCE. Written
/// through a handle checked to be a real procfs.
fn reset_oom_score_adj() -> std::io::Result<()> {
    use std::io::{Read, Seek, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/oom_score_adj")?;
    if nix::sys::statfs::fstatfs(&f)?.filesystem_type().0 != rootfs::PROC_SUPER_MAGIC {
        return Err(std::io::Error::other("/proc is not a procfs"));
    }
    let mut now = String::new();
    f.read_to_string(&mut now)?;
    let now: i32 = now
        .trim()
        .parse()
        .map_err(|e| std::io::Error::other(format!("reading {now:?}: {e}")))?;
    match workload_oom_score_adj(now) {
        None => Ok(()),
        Some(v) => {
            f.rewind()?;
            f.write_all(v.to_string().as_bytes())
        }
    }
}

/// `net.ipv4.ip_unprivileged_port_start = 0` in the shim's (new) network namespace, through a
/// handle checked to be a real procfs.
fn unprivileged_ports_from_zero() -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/net/ipv4/ip_unprivileged_port_start")?;
    if nix::sys::statfs::fstatfs(&f)?.filesystem_type().0 != rootfs::PROC_SUPER_MAGIC {
        return Err(std::io::Error::other("/proc is not a procfs"));
    }
    f.write_all(b"0")
}

/// The value to write for a workload that inherited `inherited`, if any (see
/// [`reset_oom_score_adj`]).
fn workload_oom_score_adj(inherited: i32) -> Option<i32> {
    (inherited < 0).then_some(0)
}

/// `ip link set lo up` through an ioctl (we are inside the new network namespace).
pub(crate) fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq with a NUL-terminated name.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(s);
        if r < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Writes the workload's wait status into the exit file (fd [`sync::EXIT_FD`]) before it is
/// reported, for a superd that starts after the one that started us died. Best effort: with
/// no exit file the status still goes over the sync socket.
fn record_exit(status: i32) {
    let text = crate::runtime::state::format_exit(status);
    // SAFETY: EXIT_FD was placed by the spawner and stays open for our whole life; pwrite at
    // offset 0 on it touches nothing else.
    let _ = unsafe { libc::pwrite(sync::EXIT_FD, text.as_ptr().cast(), text.len(), 0) };
}

/// PID 1 duty: fork the workload, write its output to the log, forward signals, reap
/// everything, exit with its status.
fn run_init(p: &process::Prepared, logs: &sync::LogCfg, name: &str) -> ! {
    // Drop what neither we nor the workload needs before it exists.
    if let Err(e) = process::restrict_bounding(process::is_root(p)) {
        report_and_exit(e);
    }
    // Block every signal: we take them from a signalfd, beside the output pipes.
    // SAFETY: sigset manipulation on a local set.
    let all = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        set
    };
    // SAFETY: signalfd(2) on a valid, filled set; a new fd or -1.
    let sfd = unsafe { libc::signalfd(-1, &all, libc::SFD_CLOEXEC) };
    if sfd < 0 {
        report_and_exit(fail(
            "creating the signalfd",
            std::io::Error::last_os_error(),
        ));
    }
    let out = match logs::pipes() {
        Ok(o) => o,
        Err(e) => report_and_exit(fail("creating the output pipes", e)),
    };
    // A close-on-exec pipe tells us whether exec succeeded (EOF) or failed (a message).
    let (rd, wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => report_and_exit(fail("creating the exec pipe", e)),
    };
    // SAFETY: we are single-threaded, so fork is unrestricted here.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(rd);
            let _ = nix::unistd::setsid();
            let e = into_pipes(&out).map_or_else(|e| e, |()| process::exec(p));
            let msg = format!("{}: {}", e.step, e.message);
            let _ = nix::unistd::write(&wr, msg.as_bytes());
            // SAFETY: terminate the failed child without running destructors twice.
            unsafe { libc::_exit(127) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child.as_raw(),
        Err(e) => report_and_exit(fail("forking the workload", e)),
    };
    drop(wr);
    let logs::Outputs { read, write } = out;
    drop(write);
    let mut buf = [0u8; 4096];
    let n = loop {
        match nix::unistd::read(&rd, &mut buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(n) => break n,
            Err(_) => break 0,
        }
    };
    if n > 0 {
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (step, message) = msg
            .split_once(": ")
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or((msg.clone(), String::new()));
        report_and_exit(StepError { step, message });
    }
    drop(rd);
    send(&FromShim::Started, Some(child));
    // From here on we only write; the workload cannot reach the socket (it was close-on-exec,
    // and we are non-dumpable).
    let _ = nix::sys::socket::shutdown(SHIM_SYNC_FD, nix::sys::socket::Shutdown::Read);

    let mut log = logs::LogWriter::new(name, logs);
    let mut split = [LineSplitter::default(), LineSplitter::default()];
    let streams = [Stream::Stdout, Stream::Stderr];
    let mut open = [true, true];
    let mut status: Option<i32> = None;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open[0] { read[0].as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open[1] { read[1].as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll(2) on a local array of pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            continue;
        }
        for i in 0..2 {
            if open[i] && fds[i + 1].revents != 0 {
                open[i] = logs::pump(read[i].as_raw_fd(), streams[i], &mut split[i], &mut log);
            }
        }
        if let (Some(why), false) = (log.failing(), log.reported) {
            send(
                &FromShim::LogFailing {
                    message: why.to_string(),
                },
                None,
            );
            log.reported = true;
        }
        if fds[0].revents != 0 {
            // SAFETY: reading one signalfd_siginfo from our signalfd.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            // SAFETY: as above; the size is the struct's.
            let n = unsafe {
                libc::read(
                    sfd,
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if n > 0 {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    status = status.or_else(|| reap_all(child));
                } else {
                    // Forward everything else to the workload.
                    // SAFETY: kill(2) on our child's PID.
                    unsafe { libc::kill(child, sig) };
                }
            }
        }
        // The workload is gone and everything it wrote is in the log (or its pipes were
        // passed to something that outlives it: then stop at its exit).
        if let Some(status) = status {
            if !open[0] && !open[1] || status_pipes_idle(&read, &open) {
                record_exit(status);
                send(&FromShim::Exited { status }, None);
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                std::process::exit(code);
            }
        }
    }
}

/// Reaps every child that has exited; the workload's raw status if it was among them.
fn reap_all(workload: i32) -> Option<i32> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: valid out-pointer; WNOHANG.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == workload {
            found = Some(status);
        }
    }
}

/// After the workload exited: true when nothing more is waiting in its output pipes (a
/// process it left behind may hold them open; its output is not waited for).
fn status_pipes_idle(read: &[OwnedFd; 2], open: &[bool; 2]) -> bool {
    let mut fds: Vec<libc::pollfd> = read
        .iter()
        .zip(open)
        .filter(|(_, o)| **o)
        .map(|(fd, _)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll(2) with a zero timeout on a local array.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    n == 0
}

/// In the workload's process: its stdout and stderr become the pipes' write ends.
fn into_pipes(out: &logs::Outputs) -> Result<(), StepError> {
    for (fd, target) in out.write.iter().zip([1, 2]) {
        // SAFETY: dup2(2) of an fd we own onto stdout/stderr (dup2 clears close-on-exec).
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return Err(fail(
                "connecting the output pipes",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// With `init = false`: fork the logger that writes the workload's output (it outlives
/// nothing: when the workload, PID 1, exits, the kernel ends it too), then connect the pipes.
fn start_logger(logs: &sync::LogCfg, name: &str) -> Result<(), StepError> {
    let out = logs::pipes().map_err(|e| fail("creating the output pipes", e))?;
    // The workload may not run before the logger is out of its reach: the logger says so
    // on this pipe once it has its own session and ignores every catchable signal (else a
    // workload's first `kill(0, SIGTERM)` could end it, and its output with it).
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("creating a pipe", e))?;
    // SAFETY: single-threaded, so fork is unrestricted.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(ready_r);
            let _ = nix::unistd::setsid(); // out of the workload's kill(0, …)
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP && sig != libc::SIGCHLD {
                    // SAFETY: ignoring a signal is always valid.
                    unsafe { libc::signal(sig, libc::SIG_IGN) };
                }
            }
            let _ = nix::unistd::write(&ready_w, b"1");
            drop(ready_w);
            let _ = nix::sys::prctl::set_name(c"superd-log");
            // SAFETY: closing the sync socket, which the logger must not hold.
            unsafe { libc::close(SHIM_SYNC_FD) };
            let logs::Outputs { read, write } = out;
            drop(write);
            let mut log = logs::LogWriter::new(name, logs);
            let mut split = [LineSplitter::default(), LineSplitter::default()];
            let streams = [Stream::Stdout, Stream::Stderr];
            let mut open = [true, true];
            while open[0] || open[1] {
                let mut fds: Vec<libc::pollfd> = (0..2)
                    .map(|i| libc::pollfd {
                        fd: if open[i] { read[i].as_raw_fd() } else { -1 },
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                // SAFETY: poll(2) on a local array.
                if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                    continue;
                }
                for i in 0..2 {
                    if open[i] && fds[i].revents != 0 {
                        open[i] =
                            logs::pump(read[i].as_raw_fd(), streams[i], &mut split[i], &mut log);
                    }
                }
            }
            // SAFETY: leave without running the shim's destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(ready_w);
            let mut b = [0u8; 1];
            loop {
                match nix::unistd::read(&ready_r, &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(1) => break,
                    _ => return Err(fail("starting the logger", "it exited at once")),
                }
            }
            into_pipes(&out)?;
            Ok(())
        }
        Err(e) => Err(fail("forking the logger", e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_protection_is_dropped() {
        use super::workload_oom_score_adj as adj;
        assert_eq!(adj(-900), Some(0));
        assert_eq!(adj(-1000), Some(0));
        assert_eq!(adj(0), None);
        assert_eq!(adj(500), None);
    }
}
