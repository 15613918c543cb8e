//! The init shim: superd's own binary, executed from a sealed memfd as PID 1 of a new container.
//!
//! It is single-threaded (it runs before any tokio runtime exists), so it may do what the forked
//! child of the multithreaded daemon may not: read its config, build the rootfs, pivot_root, and
//! then either stay as PID 1 (reaping every zombie and forwarding every catchable signal to the
//! workload, exiting with the workload's status) or exec the workload itself (`init = false`).

mod cgroupfs;
mod dev;
pub mod process;
pub mod rootfs;

use crate::runtime::sync::{FromShim, Reassembly, ShimConfig, ToShim, CHUNK, SHIM_SYNC_FD};
use rootfs::StepError;
use std::io::IoSlice;
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
                nix::sys::socket::MsgFlags::empty(),
                None,
            )
        }
        None => nix::sys::socket::sendmsg::<()>(
            SHIM_SYNC_FD,
            &iov,
            &[],
            nix::sys::socket::MsgFlags::empty(),
            None,
        ),
    };
    if let Err(e) = res {
        eprintln!("superd-init: reporting to superd failed: {e}");
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
    eprintln!("superd-init: {}: {}", e.step, e.message);
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
    if cfg.init {
        run_init(&prepared)
    } else {
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
        eprintln!("superd-init: resetting oom_score_adj to 0: {e}");
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

/// PID 1 duty: fork the workload, forward signals, reap everything, exit with its status.
fn run_init(p: &process::Prepared) -> ! {
    // Drop what neither we nor the workload needs before it exists.
    if let Err(e) = process::restrict_bounding(process::is_root(p)) {
        report_and_exit(e);
    }
    // Block every signal: we take them synchronously with sigwaitinfo.
    // SAFETY: sigset manipulation on a local set.
    let all = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        set
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
            let e = process::exec(p);
            let msg = format!("{}: {}", e.step, e.message);
            let _ = nix::unistd::write(&wr, msg.as_bytes());
            // SAFETY: terminate the failed child without running destructors twice.
            unsafe { libc::_exit(127) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child.as_raw(),
        Err(e) => report_and_exit(fail("forking the workload", e)),
    };
    drop(wr);
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

    loop {
        // SAFETY: `info` is an out-parameter; `all` is a valid set.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: valid out-pointer; WNOHANG.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    send(&FromShim::Exited { status }, None);
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    std::process::exit(code);
                }
            }
        } else {
            // Forward everything else to the workload.
            // SAFETY: kill(2) on our child's PID.
            unsafe { libc::kill(child, sig) };
        }
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
