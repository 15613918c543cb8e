//! The exec helper (`superd-exec: <name>`): superd's own sealed binary, started by the daemon
//! for `superctl exec`. Single-threaded, before any runtime: it joins the workload's cgroup and
//! namespaces, forks the command into its PID namespace, and turns that child into the
//! workload's user with the workload's capabilities, rlimits, `no_new_privs` and seccomp
//! filter through the same code the shim uses ([`super::process`]), so an exec is never more
//! privileged than the workload. It waits for the child, forwards signals to it and exits
//! with its status.
//!
//! fds: 0–2 the command's stdio (pipes the client made, never a host terminal), 3 the config
//! (JSON, read to EOF), 4 a pidfd of the instance's init, 5 (with a tty) the client's console
//! socket, over which the child sends the master of a pty it opened inside the container.

use super::process;
use crate::runtime::exec::{ExecConfig, CONFIG_FD, CONSOLE_FD, NS_FD};
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The largest config read.
const MAX_CONFIG: u64 = 4 << 20;

fn die(code: i32, what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("superd exec: {what}: {e}");
    std::process::exit(code);
}

/// The helper's entry point.
pub fn main() -> ! {
    // SAFETY: fd 3 was placed by superd for this process and is read once, here.
    let file = unsafe { std::fs::File::from_raw_fd(CONFIG_FD) };
    let mut text = Vec::new();
    if let Err(e) = file.take(MAX_CONFIG).read_to_end(&mut text) {
        die(126, "reading the exec config", e);
    }
    let cfg: ExecConfig = match serde_json::from_slice(&text) {
        Ok(c) => c,
        Err(e) => die(126, "decoding the exec config", e),
    };
    // Nothing in the container may open this process (or the child before its exec) through
    // /proc while it still is superd's binary (CVE-2019-5736).
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    for procs in &cfg.cgroup_procs {
        if let Err(e) = std::fs::write(procs, "0") {
            die(126, &format!("joining the workload's cgroup ({procs})"), e);
        }
    }
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWCGROUP;
    if cfg.own_netns {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: setns on the pidfd superd passed as fd 4, joining every namespace at once.
    if unsafe { libc::setns(NS_FD, flags) } != 0 {
        die(
            126,
            "joining the workload's namespaces",
            std::io::Error::last_os_error(),
        );
    }
    // SAFETY: single-threaded (no runtime, no threads started): fork is safe.
    match unsafe { nix::unistd::fork() } {
        Err(e) => die(126, "forking the command", e),
        Ok(nix::unistd::ForkResult::Child) => child(&cfg),
        Ok(nix::unistd::ForkResult::Parent { child }) => parent(child.as_raw()),
    }
}

/// Forwards signals to the command and exits with its status.
fn parent(child: i32) -> ! {
    use nix::sys::signal::{SigSet, Signal};
    let forwarded = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ];
    let mut set = SigSet::empty();
    for s in forwarded {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    if let Err(e) = set.thread_block() {
        die(126, "blocking signals", e);
    }
    // The console socket and the pidfd are the child's business.
    // SAFETY: closing fds this process owns and no longer uses.
    unsafe {
        libc::close(CONSOLE_FD);
        libc::close(NS_FD);
    }
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            if libc::WIFEXITED(status) {
                std::process::exit(libc::WEXITSTATUS(status));
            }
            std::process::exit(128 + libc::WTERMSIG(status));
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), sig);
            }
        }
    }
}

/// The command, in the container's PID namespace: its terminal, then the workload's identity
/// and restrictions, then `execve`.
fn child(cfg: &ExecConfig) -> ! {
    if cfg.tty {
        if let Err(e) = attach_pty() {
            die(126, "setting up the terminal", e);
        }
    } else {
        // SAFETY: closing the unused console slot.
        unsafe { libc::close(CONSOLE_FD) };
    }
    let prepared = match process::prepare(&cfg.process) {
        Ok(p) => p,
        Err(e) => {
            let code = if e.step == "resolving the command" {
                127
            } else {
                126
            };
            die(code, &e.step, &e.message);
        }
    };
    // Never more privileged than the workload: root (and its capabilities) only in a root
    // workload.
    if process::is_root(&prepared) {
        match process::resolve_uid(&cfg.workload_user) {
            Ok(0) => {}
            Ok(uid) => die(
                126,
                "choosing the user",
                format!(
                    "the workload runs as uid {uid}: a command as root would be more \
                     privileged than the workload"
                ),
            ),
            Err(e) => die(126, &e.step, &e.message),
        }
    }
    let e = process::exec(&prepared);
    let code = if e.message.contains("No such file") {
        127
    } else {
        126
    };
    die(code, &e.step, &e.message)
}

/// Opens a pty inside the container (its own devpts), sends the master to the client over
/// the console socket and makes the slave this process's controlling terminal and stdio.
fn attach_pty() -> std::io::Result<()> {
    let err = std::io::Error::last_os_error;
    // SAFETY: open(2) of a constant path.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if master < 0 {
        return Err(err());
    }
    // SAFETY: the fd was just opened and is owned here.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK with a pointer to an int on a ptmx fd.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(err());
    }
    // The peer is opened through the master, never by a path the container could swap.
    // SAFETY: TIOCGPTPEER with open flags on a ptmx fd; returns a new fd or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        )
    };
    if slave < 0 {
        return Err(err());
    }
    // SAFETY: the fd was just returned by the kernel and is owned here.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    send_fd(CONSOLE_FD, &master)?;
    drop(master);
    // SAFETY: closing the console socket once the master is sent.
    unsafe { libc::close(CONSOLE_FD) };
    nix::unistd::setsid().map_err(std::io::Error::from)?;
    // SAFETY: TIOCSCTTY on the slave, which this new session leader owns.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(err());
    }
    for target in 0..3 {
        // SAFETY: dup2 onto stdio of this process.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(err());
        }
    }
    Ok(())
}

fn send_fd(socket: RawFd, fd: &OwnedFd) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"pty")];
    // SAFETY: fd 5 is the console socket superd passed; it stays open until closed above.
    let sock = unsafe { BorrowedFd::borrow_raw(socket) };
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}
