//! Parent side of the spawn path (safety-critical; DESIGN.md "The spawn path").
//!
//! superd is multithreaded, so the child created by `clone` may only make async-signal-safe
//! system calls: everything it uses (fds, argv, envp) is prepared before the fork, and it does
//! nothing but
//! 1. write `0` to the workload's `cgroup.procs` files (so the shim and all it starts are charged
//!    and limited from the start),
//! 2. arrange stdin (/dev/null), stdout/stderr (the log), fd 3 (sync socket), fd 4 (the memfd),
//!    fd 5 (the log directory), fd 6 (the exit file), close every other fd,
//! 3. `execveat` the sealed memfd copy of superd in its init-shim role.
//!
//! All container setup then happens in that fresh single-threaded process (`runtime::shim`).

use super::reaper::{RawStatus, Reaper};
use super::sync::{
    EARLY_FAILURE, EXIT_FD, LOG_DIR_FD, SHIM_ARGV0_PREFIX, SHIM_SYNC_FD, STEP_CGROUP, STEP_EXEC,
    STEP_FDS,
};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use tokio::sync::oneshot;

/// Errors before the shim runs.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A preparation step failed.
    #[error("{step}: {source}")]
    Prepare {
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

fn prep(step: &'static str) -> impl FnOnce(io::Error) -> SpawnError {
    move |source| SpawnError::Prepare { step, source }
}

/// What the spawner needs for one container.
#[derive(Debug)]
pub struct SpawnArgs<'a> {
    /// Workload name (argv[0] becomes `superd-init: <name>`).
    pub name: &'a str,
    /// `cgroup.procs` files to join before exec.
    pub cgroup_procs: &'a [std::path::PathBuf],
    /// The log file for stdout and stderr.
    pub log: &'a File,
    /// The log directory (fd 5 of the shim, which rotates the log through it).
    pub log_dir: &'a OwnedFd,
    /// The instance's exit file (fd 6 of the shim, which writes the workload's status there);
    /// without one, fd 6 is /dev/null opened read-only and the write fails harmlessly.
    pub exit_file: Option<&'a OwnedFd>,
    /// Share the host network namespace instead of creating one.
    pub host_network: bool,
}

/// A started shim process.
#[derive(Debug)]
pub struct Spawned {
    /// Host PID of the shim.
    pub pid: i32,
    /// A pidfd for the shim, taken atomically by `clone(CLONE_PIDFD)`: signals sent through it
    /// can never reach a process that reused the PID after the reaper collected the shim.
    pub pidfd: OwnedFd,
    /// Parent end of the sync socket (non-blocking, close-on-exec).
    pub sock: OwnedFd,
    /// Resolves with the shim's raw wait status (from the single reaper).
    pub exit: oneshot::Receiver<RawStatus>,
}

fn open_cloexec(path: &Path, write: bool) -> io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open(path)?;
    Ok(OwnedFd::from(f))
}

/// Clones a child in new pid, mount, uts, ipc (and net) namespaces that executes the shim.
pub fn spawn_shim(
    memfd: &OwnedFd,
    reaper: &Reaper,
    args: &SpawnArgs<'_>,
) -> Result<Spawned, SpawnError> {
    let (parent_sock, child_sock) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
    )
    .map_err(|e| prep("creating the sync socket")(e.into()))?;
    // The child end must block.
    set_nonblocking(child_sock.as_raw_fd(), false).map_err(prep("configuring the sync socket"))?;
    nix::sys::socket::setsockopt(&parent_sock, nix::sys::socket::sockopt::PassCred, &true)
        .map_err(|e| prep("enabling SO_PASSCRED")(e.into()))?;

    let procs: Vec<OwnedFd> = args
        .cgroup_procs
        .iter()
        .map(|p| open_cloexec(p, true))
        .collect::<io::Result<_>>()
        .map_err(prep("opening cgroup.procs"))?;
    let procs_raw: Vec<RawFd> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let devnull = open_cloexec(Path::new("/dev/null"), false).map_err(prep("opening /dev/null"))?;

    let argv0 = CString::new(format!("{SHIM_ARGV0_PREFIX} {}", args.name))
        .map_err(|_| prep("building argv")(io::ErrorKind::InvalidInput.into()))?;
    let argv: [*const libc::c_char; 2] = [argv0.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];

    let mut flags =
        libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if !args.host_network {
        flags |= libc::CLONE_NEWNET;
    }
    let child = ChildFds {
        procs: &procs_raw,
        sync: child_sock.as_raw_fd(),
        log: args.log.as_raw_fd(),
        log_dir: args.log_dir.as_raw_fd(),
        exit_file: args
            .exit_file
            .map_or(devnull.as_raw_fd(), |f| f.as_raw_fd()),
        devnull: devnull.as_raw_fd(),
        memfd: memfd.as_raw_fd(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
    };

    let mut pidfd: libc::c_int = -1;
    let pidfd_ptr: *mut libc::c_int = &mut pidfd;
    let (pid, exit) = reaper.spawn_with(|| {
        // SAFETY: a fork-style clone (no new stack, no CLONE_VM): the child gets a copy of the
        // address space and only runs `child_main`, which makes async-signal-safe syscalls on
        // data prepared above and never returns. With CLONE_PIDFD the kernel stores a pidfd
        // at `pidfd_ptr` (the parent_tid argument), which points to a live local.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::CLONE_PIDFD | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                pidfd_ptr,
                0usize,
                0usize,
            )
        };
        if ret == 0 {
            // SAFETY: we are the freshly cloned child; see `child_main`.
            unsafe { child_main(&child) }
        }
        if ret < 0 {
            return Err(prep("clone")(io::Error::last_os_error()));
        }
        Ok(ret as i32)
    })?;
    drop(child_sock);
    drop(procs);
    drop(devnull);
    if pidfd < 0 {
        return Err(prep("clone returned no pidfd")(
            io::ErrorKind::Unsupported.into(),
        ));
    }
    // SAFETY: the kernel just created this fd for us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Spawned {
        pid,
        pidfd,
        sock: parent_sock,
        exit,
    })
}

/// Raw fds and pointers the child uses; all prepared before the clone.
struct ChildFds<'a> {
    procs: &'a [RawFd],
    sync: RawFd,
    log: RawFd,
    log_dir: RawFd,
    exit_file: RawFd,
    devnull: RawFd,
    memfd: RawFd,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
}

/// Reports a failed step on the sync socket and exits. Async-signal-safe.
///
/// # Safety
/// Only for the freshly cloned child (see [`child_main`]).
unsafe fn child_fail(sync: RawFd, step: u8) -> ! {
    // SAFETY: errno is thread-local and always readable; the packet is a local buffer; write
    // and _exit are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let e = errno.to_ne_bytes();
        let packet = [EARLY_FAILURE, step, e[0], e[1], e[2], e[3]];
        libc::write(sync, packet.as_ptr().cast(), packet.len());
        libc::_exit(127)
    }
}

/// The cloned child. Only async-signal-safe syscalls; no allocation, no locks, no panics.
///
/// # Safety
/// Only in the child of the clone in [`spawn_shim`], with `c` prepared before it.
unsafe fn child_main(c: &ChildFds<'_>) -> ! {
    // SAFETY: we are the freshly cloned child of a fork-style clone: every fd and pointer in
    // `c` was prepared before the clone and stays valid in our copy of the address space, and
    // only async-signal-safe calls follow (no allocation, locks or panics).
    unsafe {
        // 1. Join the workload cgroup in every hierarchy before anything is allocated.
        for &fd in c.procs {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                child_fail(c.sync, STEP_CGROUP);
            }
        }
        // 2. Move the fds we keep out of the way, then into place: 0 1 2 stdio, 3 sync, 4 memfd.
        let hi = |fd: RawFd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
        let (sync, log, null, mem) = (hi(c.sync), hi(c.log), hi(c.devnull), hi(c.memfd));
        let (dir, exit) = (hi(c.log_dir), hi(c.exit_file));
        if sync < 0 || log < 0 || null < 0 || mem < 0 || dir < 0 || exit < 0 {
            child_fail(c.sync, STEP_FDS);
        }
        if libc::dup2(null, 0) < 0
            || libc::dup2(log, 1) < 0
            || libc::dup2(log, 2) < 0
            || libc::dup2(sync, SHIM_SYNC_FD) < 0
            || libc::dup2(mem, 4) < 0
            || libc::dup2(dir, LOG_DIR_FD) < 0
            || libc::dup2(exit, EXIT_FD) < 0
        {
            child_fail(sync, STEP_FDS);
        }
        // The memfd only needs to live until execveat; the sync socket, the log directory
        // and the exit file must survive it (the shim closes them before the workload runs).
        libc::fcntl(4, libc::F_SETFD, libc::FD_CLOEXEC);
        // Close everything else (CVE-2024-21626: no stray fd reaches the container).
        if libc::syscall(libc::SYS_close_range, (EXIT_FD + 1) as u32, u32::MAX, 0u32) < 0 {
            child_fail(SHIM_SYNC_FD, STEP_FDS);
        }
        // Signal mask from the forking thread must not leak into the shim.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // 3. Execute the sealed copy of superd.
        libc::syscall(
            libc::SYS_execveat,
            4,
            c"".as_ptr(),
            c.argv,
            c.envp,
            libc::AT_EMPTY_PATH,
        );
        child_fail(SHIM_SYNC_FD, STEP_EXEC)
    }
}

/// Sets or clears O_NONBLOCK.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a caller-owned fd.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
